"""Accounts, roles, and the account manager's workspace."""

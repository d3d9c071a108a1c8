"""Deposits: files exchanged in a département space, with expiry, links and receipts."""

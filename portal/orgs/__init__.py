"""Organisations, départements and the isolation rule."""

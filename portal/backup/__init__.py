"""Backups of the database and the object store, restores and restore drills."""

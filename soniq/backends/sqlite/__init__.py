"""SQLite statements on the tables Django's migrations create."""

from soniq.backends.sqlite.statements import SQLiteDialect

__all__ = ["SQLiteDialect"]

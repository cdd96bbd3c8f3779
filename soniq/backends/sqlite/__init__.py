"""SQLite storage on the tables Django's migrations create."""

from soniq.backends.sqlite.backend import SQLiteBackend
from soniq.backends.sqlite.statements import SQLiteDialect

__all__ = ["SQLiteBackend", "SQLiteDialect"]

"""The PostgreSQL backend (psycopg 3). The only module in soniq that imports psycopg."""

from soniq.backends.postgres.backend import PostgresBackend
from soniq.backends.postgres.statements import NOTIFY_CHANNEL, PostgresDialect

__all__ = ["NOTIFY_CHANNEL", "PostgresBackend", "PostgresDialect"]

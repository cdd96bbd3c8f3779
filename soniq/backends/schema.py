"""A database without soniq's tables, told apart from other errors and explained.

Before ``migrate`` (or ``soniq setup``) the first statement of an enqueue, a worker or a
scheduler fails with PostgreSQL's ``undefined_table`` (SQLSTATE 42P01) or SQLite's
``no such table``. Raised as is, that says nothing about the fix; :func:`schema_missing` turns it
into :class:`~soniq.core.errors.SchemaMissingError`, naming the database and the command that
creates the tables.
"""

from __future__ import annotations

import re
import sys
from urllib.parse import quote

from soniq.core.errors import SchemaMissingError

UNDEFINED_TABLE = "42P01"
_POSTGRES_TABLE = re.compile(r'"(?:\w+\.)?(soniq_\w+)"')
_SQLITE_TABLE = re.compile(r"no such table: (?:\w+\.)?(soniq_\w+)")


def missing_table(error: BaseException) -> str | None:
    """The soniq table ``error`` says does not exist (``None``: another error).

    Looks at the error and at its ``__cause__`` (Django wraps the driver's error)."""
    # Only a process that imported sqlite3 can have an error of it; importing it here would
    # cost every PostgreSQL worker about 2 MiB.
    sqlite3 = sys.modules.get("sqlite3")
    for candidate in (error, error.__cause__):
        if candidate is None:
            continue
        found = None
        if getattr(candidate, "sqlstate", None) == UNDEFINED_TABLE:
            found = _POSTGRES_TABLE.search(str(candidate))
        elif sqlite3 is not None and isinstance(candidate, sqlite3.OperationalError):
            found = _SQLITE_TABLE.search(str(candidate))
        if found is not None:
            return found.group(1)
    return None


def postgres_url(
    *, dbname: str | None, user: str | None, host: str | None, port: str | int | None
) -> str:
    """A URL naming a PostgreSQL database, without any password."""
    auth = f"{quote(user, safe='')}@" if user else ""
    name = quote(dbname or "", safe="")
    if host and host.startswith("/"):  # a Unix socket directory
        suffix = f"&port={port}" if port else ""
        return f"postgresql://{auth}/{name}?host={quote(host, safe='/')}{suffix}"
    place = host or "localhost"
    if port:
        place += f":{port}"
    return f"postgresql://{auth}{place}/{name}"


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def schema_missing(
    table: str, database: str, *, django_alias: str | None = None
) -> SchemaMissingError:
    """The error for a database without soniq's tables.

    ``database`` names it (a URL without password); ``django_alias`` is the Django database
    alias it was reached through, when known: the fix is then ``manage.py migrate``."""
    if django_alias is not None:
        where = f"the database alias {django_alias!r} ({database})"
        option = "" if django_alias == "default" else f" --database={django_alias}"
        fix = (
            f"Run `python manage.py migrate{option}` to create them ('soniq' must be in "
            "INSTALLED_APPS)."
        )
    else:
        where = f"the database {database}"
        fix = (
            "Run `soniq setup` with SONIQ_DATABASE_URL set to this database to create them "
            "(in a Django project using this database: `python manage.py migrate`)."
        )
    return SchemaMissingError(
        f"soniq's tables are missing from {where}: table {table} does not exist. {fix}",
        database=database,
        table=table,
        alias=django_alias,
    )

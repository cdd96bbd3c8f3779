"""Building a psycopg conninfo from parts (a Django DATABASES entry, for instance)."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo


def build_conninfo(**params: Any) -> str:
    """``build_conninfo(dbname="app", host="db")``; empty and ``None`` values are left out."""
    return make_conninfo(**{key: value for key, value in params.items() if value not in ("", None)})


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """The parts of a URL or ``key=value`` conninfo (``dbname``, ``host``, ...)."""
    from psycopg.conninfo import conninfo_to_dict

    return {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}

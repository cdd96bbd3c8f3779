"""Building a psycopg conninfo from parts (a Django DATABASES entry, for instance)."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo


def build_conninfo(**params: Any) -> str:
    """``build_conninfo(dbname="app", host="db")``; empty and ``None`` values are left out."""
    return make_conninfo(**{key: value for key, value in params.items() if value not in ("", None)})

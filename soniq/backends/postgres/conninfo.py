"""Building a psycopg conninfo from parts (a Django DATABASES entry, for instance), and the
connection parameters that make a dead connection noticed in seconds."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from soniq.backends.base import Statement
from soniq.core.settings import SoniqSettings


def build_conninfo(**params: Any) -> str:
    """``build_conninfo(dbname="app", host="db")``; empty and ``None`` values are left out."""
    return make_conninfo(**{key: value for key, value in params.items() if value not in ("", None)})


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """The parts of a URL or ``key=value`` conninfo (``dbname``, ``host``, ...)."""
    return {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}


def network_options(settings: SoniqSettings, conninfo: str) -> dict[str, Any]:
    """libpq parameters for every connection soniq opens: TCP keepalives, ``tcp_user_timeout``
    and ``connect_timeout`` from the settings. Without them a connection whose peer vanished
    (a partition, a host gone) is noticed only after the system defaults: two hours of
    keepalive silence, or minutes of retransmissions. A parameter the URL sets itself wins."""
    options: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": settings.tcp_keepalives_idle,
        "keepalives_interval": settings.tcp_keepalives_interval,
        "keepalives_count": settings.tcp_keepalives_count,
        "connect_timeout": settings.connect_timeout,
    }
    if settings.tcp_user_timeout:
        options["tcp_user_timeout"] = round(settings.tcp_user_timeout * 1000)
    given = parse_conninfo(conninfo) if conninfo else {}
    return {key: value for key, value in options.items() if key not in given}


def server_keepalives(settings: SoniqSettings, *, local: bool) -> Statement:
    """The same limits on the server's side of a session (``local``: for the current
    transaction only), so that the server, too, drops a connection whose client vanished, and
    with it the locks the session held."""
    values = {
        "tcp_keepalives_idle": str(settings.tcp_keepalives_idle),
        "tcp_keepalives_interval": str(settings.tcp_keepalives_interval),
        "tcp_keepalives_count": str(settings.tcp_keepalives_count),
        "tcp_user_timeout": str(round(settings.tcp_user_timeout * 1000)),
    }
    calls = ", ".join("set_config(%s, %s, %s)" for _ in values)
    params: list[Any] = []
    for name, value in values.items():
        params.extend((name, value, local))
    return Statement(f"SELECT {calls}", tuple(params))

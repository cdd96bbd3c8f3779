"""A scratch PostgreSQL database for the benchmarks, migrated with the testproject."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    """``--url``: the server to make scratch databases on (SONIQ_TEST_DATABASE_URL, or the
    local one)."""
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "SONIQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"
        ),
    )


def database_url(base: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(base)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


def recreate(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(url: str) -> None:
    """Point the testproject at ``url`` and apply every migration."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    connections.close_all()

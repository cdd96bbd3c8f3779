"""The ``soniq`` command tree, shared by ``soniq <command>`` (standalone, on
``SONIQ_DATABASE_URL``) and ``manage.py soniq <command>`` (on ``SONIQ["DATABASE"]``): one
parser and one implementation for both.

A command is a module with ``HELP``, ``add_arguments(parser)`` and ``run(options, alias, out)
-> int`` (the exit status). It reads and acts through Django's connection to ``alias``; the
standalone entry point configures a minimal Django on the database URL first.

Models are imported when the command runs: the standalone ``soniq`` builds its parser
before it configures Django.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from soniq.commands import _output, dead_letters, healthcheck, jobs, prune, schedules, status

COMMANDS: dict[str, ModuleType] = {
    "status": status,
    "healthcheck": healthcheck,
    "jobs": jobs,
    "dead-letters": dead_letters,
    "schedules": schedules,
    "prune": prune,
}


def add_commands(subparsers: Any) -> None:
    """Add every shared command to ``subparsers`` (``parser.add_subparsers()``)."""
    for name, module in COMMANDS.items():
        parser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(parser)


def run(
    options: argparse.Namespace, alias: str, out: _output.Out, *, django_alias: str | None = None
) -> int:
    """Run the shared command ``options.command``; its exit status. A database without
    soniq's tables raises :class:`~soniq.SchemaMissingError`, saying how to create them
    (``django_alias``: the alias named in that advice, ``manage.py migrate``; else
    ``soniq setup``)."""
    from django.db import DatabaseError

    try:
        status_code: int = COMMANDS[options.command].run(options, alias, out)
    except DatabaseError as exc:
        missing = _schema_missing(exc, alias, django_alias)
        if missing is None:
            raise
        raise missing from exc
    return status_code


def _schema_missing(error: BaseException, alias: str, django_alias: str | None) -> Any:
    from django.db import connections

    from soniq.backends.schema import missing_table, postgres_url, schema_missing

    table = missing_table(error)
    if table is None:
        return None
    found = connections[alias].settings_dict
    where = str(found["NAME"])
    if connections[alias].vendor == "postgresql":
        where = postgres_url(
            dbname=found["NAME"], user=found["USER"], host=found["HOST"], port=found["PORT"]
        )
    return schema_missing(table, where, django_alias=django_alias)

"""``manage.py soniq <command>``: the command tree of ``soniq <command>``, on the database of
``SONIQ["DATABASE"]`` (:mod:`soniq.commands`)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from soniq import commands
from soniq.commands._settings import soniq_settings
from soniq.core.errors import SoniqError


class Command(BaseCommand):
    help = "Inspect and operate soniq: status, healthcheck, jobs, dead-letters, schedules, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        commands.add_commands(parser.add_subparsers(dest="command", required=True))

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            alias = soniq_settings().database
            status = commands.run(_namespace(options), alias, self.stdout, django_alias=alias)
        except (SoniqError, DatabaseError) as exc:
            raise CommandError(str(exc)) from exc
        if status:
            # An exit status of its own (healthcheck: 1 when unhealthy), not a CommandError's.
            self.stdout.flush()
            sys.exit(status)


def _namespace(options: dict[str, Any]) -> Any:
    import argparse

    return argparse.Namespace(**options)

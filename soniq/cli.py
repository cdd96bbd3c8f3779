"""The standalone ``soniq`` command: ``soniq setup``, ``soniq worker``, ``soniq scheduler`` and
the command tree it shares with ``manage.py soniq`` (:mod:`soniq.commands`), configured by
``SONIQ_*`` environment variables (``SONIQ_DATABASE_URL``, ``SONIQ_JOBS_MODULES``, ...)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from soniq import _discovery, _integration, _worker_cli
from soniq.core.errors import ConfigurationError, DatabaseUnavailableError, SoniqError
from soniq.core.settings import build_settings


def _configure_django(database_url: str) -> bool:
    """A minimal Django configuration on that database: soniq's migrations, the shared
    commands and a worker's queue gauges run through its connection ``"default"``. False
    when Django was configured already (by the jobs modules), and so is left as it is."""
    import django
    from django.conf import settings

    from soniq.backends.postgres.conninfo import parse_conninfo

    if settings.configured:
        return False
    if database_url.startswith("sqlite"):
        from soniq.backends.sqlite.backend import path_from_url

        sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": path_from_url(database_url)}
        settings.configure(INSTALLED_APPS=["soniq"], DATABASES={"default": sqlite}, USE_TZ=True)
        django.setup()
        _integration.configured_for_soniq_only = True
        return True
    params = parse_conninfo(database_url)
    named = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST"}
    database: dict[str, object] = {"ENGINE": "django.db.backends.postgresql"}
    database.update({key: params.pop(part, "") for part, key in named.items()})
    database["PORT"] = params.pop("port", "")
    # Everything else (sslmode, sslrootcert, options, ...) goes to psycopg as it was given.
    database["OPTIONS"] = params
    settings.configure(INSTALLED_APPS=["soniq"], DATABASES={"default": database}, USE_TZ=True)
    django.setup()
    _integration.configured_for_soniq_only = True
    return True


def _find_modules_in_working_directory() -> None:
    """Let the jobs modules be imported from the current directory, but only after installed
    packages: a file in the directory the command runs in (``psycopg_pool.py``, ``django.py``)
    must never stand in for a library soniq or the jobs import."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)


def setup(_: argparse.Namespace) -> int:
    """Create (or upgrade) soniq's tables in SONIQ_DATABASE_URL by applying its migrations."""
    url = build_settings().database_url
    if not url:
        raise ConfigurationError(
            "set SONIQ_DATABASE_URL to the database to set up (postgresql://... or sqlite:///...)"
        )
    _configure_django(url)
    from django.core.management import call_command

    call_command("migrate", "soniq", verbosity=1)
    return 0


def shared(options: argparse.Namespace) -> int:
    """A command of :mod:`soniq.commands`, on SONIQ_DATABASE_URL."""
    url = build_settings().database_url
    if not url or url.startswith("memory:"):
        raise ConfigurationError(
            f"set SONIQ_DATABASE_URL to the database to inspect (postgresql://... or "
            f"sqlite:///...) for `soniq {options.command}`"
        )
    if url.startswith("sqlite"):
        from soniq.backends.sqlite.backend import path_from_url

        path = path_from_url(url)
        if path != ":memory:" and not os.path.exists(path):
            # Opening it would create an empty file, and report an empty soniq.
            raise ConfigurationError(f"no SQLite database at {path} (SONIQ_DATABASE_URL)")
    _find_modules_in_working_directory()  # run-now imports the jobs modules, as a worker does
    _configure_django(url)
    from django.db import DatabaseError

    from soniq import commands

    try:
        return commands.run(options, "default", sys.stdout)
    except DatabaseError as exc:
        text = " ".join(str(exc).split())
        raise DatabaseUnavailableError(f"the database did not answer: {text}") from exc


def worker(options: argparse.Namespace) -> int:
    settings = build_settings()
    if not settings.jobs_modules and not options.app and not settings.app:
        raise ConfigurationError(
            "set SONIQ_JOBS_MODULES (comma-separated modules that define your jobs) or --app"
        )
    _find_modules_in_working_directory()
    _discovery.import_modules(settings.jobs_modules)
    app = _discovery.choose_app(options.app or settings.app)
    _worker_cli.configure_logging()
    queues = options.queues
    if queues is None:
        # Without --queues, `soniq worker` serves every queue: the QUEUES setting
        # (SONIQ_QUEUES, Soniq(queues=...)) is not its default. An empty list means every queue.
        queues = []
        if app.settings.queues:
            logging.getLogger("soniq.worker").warning(
                "the QUEUES setting (%s) does not apply to `soniq worker`, which serves every "
                "queue without --queues; pass --queues=%s to serve only those",
                ",".join(app.settings.queues),
                ",".join(app.settings.queues),
            )
    gauges = None
    url = app.settings.database_url or ""
    # The queue gauges are read as `soniq status` reads them, through Django's ORM: a minimal
    # configuration on the worker's database, made only for them (after the jobs modules,
    # which may configure Django themselves).
    wants_gauges = options.metrics_port is not None and not url.startswith("memory:")
    if url and wants_gauges and _configure_django(url):
        gauges = "default"
    _worker_cli.run(
        app, options.concurrency, queues, options.run_once, options.metrics_port, gauges
    )
    return 0


def scheduler(options: argparse.Namespace) -> int:
    settings = build_settings()
    if not settings.jobs_modules and not options.app and not settings.app:
        raise ConfigurationError(
            "set SONIQ_JOBS_MODULES (comma-separated modules that define your jobs) or --app"
        )
    if options.tick <= 0:
        raise ConfigurationError(f"--tick must be positive seconds, got {options.tick}")
    _find_modules_in_working_directory()
    _discovery.import_modules(settings.jobs_modules)
    app = _discovery.choose_app(options.app or settings.app)
    _worker_cli.configure_logging()
    asyncio.run(app.run_scheduler(tick=options.tick))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soniq", description="soniq background jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create soniq's tables in SONIQ_DATABASE_URL").set_defaults(
        handler=setup
    )
    worker_parser = commands.add_parser("worker", help="run a worker")
    _worker_cli.add_worker_arguments(worker_parser)
    worker_parser.set_defaults(handler=worker)
    scheduler_parser = commands.add_parser("scheduler", help="run a scheduler")
    scheduler_parser.add_argument(
        "--app", default=None, help="The Soniq app as 'module:attribute'."
    )
    scheduler_parser.add_argument("--tick", type=float, default=1.0, help="Seconds between ticks.")
    scheduler_parser.set_defaults(handler=scheduler)
    from soniq import commands as shared_commands

    shared_commands.add_commands(commands)
    for name in shared_commands.COMMANDS:
        commands.choices[name].set_defaults(handler=shared)
    options = parser.parse_args(argv)
    try:
        return int(options.handler(options))
    except SoniqError as exc:
        print(f"soniq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

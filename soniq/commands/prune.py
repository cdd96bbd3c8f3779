"""``soniq prune``: delete what ``RESULT_RETENTION`` no longer keeps, now rather than at the
workers' next cleanup (every ``CLEANUP_INTERVAL``): finished jobs older than the retention, the
rows of workers stopped or dead that long, and old schedule fires. Dead letters are kept
until deleted. It runs the workers' own statements, in batches of short transactions, on a
connection of its own to the same database."""

from __future__ import annotations

import argparse
import asyncio

from soniq.commands import _output

HELP = "delete finished jobs (and old worker rows) past RESULT_RETENTION now"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    from soniq.app import Soniq

    app = Soniq(database=alias)
    retention = app.settings.result_retention
    backend = app.worker_backend(1)

    async def prune() -> int:
        try:
            return await backend.prune(retention=retention)
        finally:
            await backend.close()

    removed = asyncio.run(prune())
    if options.json:
        _output.dump(out, {"deleted_jobs": removed, "retention_seconds": retention})
    else:
        out.write(f"deleted {removed} finished job(s) older than {retention:g} s\n")
    return 0

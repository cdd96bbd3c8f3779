"""``soniq jobs list|show|retry|cancel``: the jobs of ``soniq_jobs`` from a shell.

``list`` reads the newest first through the index on ``created_at`` and never reads the
arguments, results or errors; ``show`` prints one job (or dead letter) masked as the admin
shows it, every kept attempt's error included; ``retry`` and ``cancel`` are the admin's
actions, with each refused id and its reason. ``cancel --abort`` also stops running jobs (their
worker aborts them within about a second), recorded as asked by ``cli:user@host``.
"""

from __future__ import annotations

import argparse

from soniq.commands import _output, _records
from soniq.core.operations import requester

HELP = "list, show, retry and cancel jobs"

STATUSES = ("queued", "processing", "done", "cancelled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the newest jobs first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--queue")
    listing.add_argument("--task", help="the task name")
    listing.add_argument(
        "--limit", type=_records.positive_int, default=_records.LIMIT, help="default 50"
    )
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    show = actions.add_parser("show", help="one job, its arguments and every attempt's error")
    show.add_argument("id", type=_records.job_id)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    retry = actions.add_parser("retry", help="run now (a cancelled job goes back to the queue)")
    cancel = actions.add_parser(
        "cancel", help="cancel queued jobs (--abort: stop running ones too)"
    )
    cancel.add_argument(
        "--abort",
        action="store_true",
        help="also abort running jobs: their worker stops them and they end cancelled",
    )
    for action in (retry, cancel):
        action.add_argument("ids", nargs="+", type=_records.job_id, metavar="ID")
        action.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    from soniq.django_backend import DjangoBackend

    backend = DjangoBackend(alias)
    if options.action == "list":
        return _list(options, alias, out)
    if options.action == "show":
        return _records.show(out, alias, options.id, as_json=options.json, dead_letter=False)
    if options.action == "retry":
        return _records.report(out, "retried", backend.retry_jobs_sync(options.ids), options.json)
    if options.abort:
        result = backend.abort_jobs_sync(options.ids, requester(f"cli:{requester()}"))
        return _records.report(out, "cancelled or aborting", result, options.json)
    return _records.report(out, "cancelled", backend.cancel_jobs_sync(options.ids), options.json)


def _list(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    from soniq.models import Job

    jobs = Job.objects.using(alias).order_by("-created_at")
    for field in ("status", "queue"):
        if getattr(options, field):
            jobs = jobs.filter(**{field: getattr(options, field)})
    if options.task:
        jobs = jobs.filter(task_name=options.task)
    columns = ("id", "task_name", "status", "queue", "priority", "attempts", "max_attempts")
    times = ("created_at", "scheduled_at", "started_at", "finished_at")
    rows = list(jobs.values(*columns, *times)[: options.limit])
    if options.json:
        _output.dump(out, [{**row, "id": str(row["id"])} for row in rows])
        return 0
    if not rows:
        out.write("no jobs match\n")
        return 0
    _output.table(
        out,
        ["ID", "TASK", "STATUS", "QUEUE", "PRIORITY", "ATTEMPTS", "CREATED", "SCHEDULED"],
        [
            [
                str(row["id"]),
                row["task_name"],
                row["status"],
                row["queue"],
                row["priority"],
                f"{row['attempts']}/{row['max_attempts']}",
                _output.moment(row["created_at"]),
                _output.moment(row["scheduled_at"]),
            ]
            for row in rows
        ],
    )
    return 0

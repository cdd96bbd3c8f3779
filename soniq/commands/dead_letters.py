"""``soniq dead-letters list|show|requeue|delete|export``: the dead letters from a shell.

``requeue``, ``delete`` and ``export`` take ids, or ``--all`` with the filters of ``list``
(``--queue``, ``--task``, ``--reason``). ``export`` writes one JSON object per line (JSON
lines), masked as the admin shows a dead letter, oldest first. ``requeue`` and ``delete`` are
the admin's actions, with each refused id and its reason.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from soniq.commands import _output, _records
from soniq.commands._settings import soniq_settings
from soniq.core.status import DEAD_LETTER_REASONS

HELP = "list, show, requeue, delete and export dead letters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the newest dead letters first")
    _filters(listing)
    listing.add_argument(
        "--limit", type=_records.positive_int, default=_records.LIMIT, help="default 50"
    )
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    show = actions.add_parser("show", help="one dead letter and every attempt's error")
    show.add_argument("id", type=_records.job_id)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    for name, text in (
        ("requeue", "put them back in the queue, with their full attempts"),
        ("delete", "delete them for good"),
        ("export", "write them as JSON lines"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("ids", nargs="*", type=_records.job_id, metavar="ID")
        action.add_argument(
            "--all", action="store_true", help="every dead letter the filters match"
        )
        _filters(action)
        if name != "export":
            action.add_argument("--json", action="store_true", help="print JSON for scripts")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue")
    parser.add_argument("--task", help="the task name")
    parser.add_argument("--reason", choices=DEAD_LETTER_REASONS)


def _matching(options: argparse.Namespace, alias: str) -> Any:
    from soniq.models import DeadLetterJob

    found = DeadLetterJob.objects.using(alias)
    if options.queue:
        found = found.filter(queue=options.queue)
    if options.task:
        found = found.filter(task_name=options.task)
    if options.reason:
        found = found.filter(reason=options.reason)
    return found


def _chosen(options: argparse.Namespace, alias: str) -> list[str] | None:
    """The ids an action is for: those given, or with ``--all`` every match. ``None`` when
    the command line names neither (or both)."""
    filtered = options.queue or options.task or options.reason
    if options.all == bool(options.ids) or (options.ids and filtered):
        return None
    if options.ids:
        return list(options.ids)
    return [
        str(pk)
        for pk in _matching(options, alias)
        .order_by("dead_lettered_at")
        .values_list("id", flat=True)
    ]


def run(
    options: argparse.Namespace, alias: str, out: _output.Out, err: _output.Out | None = None
) -> int:
    err = err if err is not None else sys.stderr
    from soniq.django_backend import DjangoBackend

    backend = DjangoBackend(alias)
    if options.action == "list":
        return _list(options, alias, out)
    if options.action == "show":
        return _records.show(out, alias, options.id, as_json=options.json, dead_letter=True)
    ids = _chosen(options, alias)
    if ids is None:
        raise _records.UsageError(
            f"dead-letters {options.action}: give ids, or --all (with --queue, --task, "
            "--reason to narrow it), not both"
        )
    if options.action == "export":
        return _export(ids, backend, out, err)
    if options.action == "requeue":
        result = backend.requeue_dead_letters_sync(ids)
        return _records.report(out, "requeued", result, options.json)
    return _records.report(out, "deleted", backend.delete_dead_letters_sync(ids), options.json)


def _export(ids: list[str], backend: Any, out: _output.Out, err: _output.Out) -> int:
    """The dead letters on ``out``, one JSON object a line; each id that is none (a job, or
    requeued or deleted since it was listed) on ``err`` with why. 1 when none was written."""
    settings = soniq_settings()
    written = 0
    for job_id in ids:
        info = backend.get_job_sync(job_id)
        if info is None or info.dead_letter_reason is None:
            why = "no such job" if info is None else f"not a dead letter (it is {info.status})"
            err.write(f"refused: {job_id}: {why}\n")
            continue
        out.write(_output.compact(_records.shown(info, settings)) + "\n")
        written += 1
    if not ids:
        err.write("nothing matched\n")
    return 0 if written else 1


def _list(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    columns = ("id", "task_name", "queue", "reason", "attempts", "max_attempts")
    rows = list(
        _matching(options, alias)
        .order_by("-dead_lettered_at")
        .values(*columns, "created_at", "dead_lettered_at")[: options.limit]
    )
    if options.json:
        _output.dump(out, [{**row, "id": str(row["id"])} for row in rows])
        return 0
    if not rows:
        out.write("no dead letters match\n")
        return 0
    _output.table(
        out,
        ["ID", "TASK", "QUEUE", "REASON", "ATTEMPTS", "CREATED", "DEAD LETTERED"],
        [
            [
                str(row["id"]),
                row["task_name"],
                row["queue"],
                row["reason"],
                f"{row['attempts']}/{row['max_attempts']}",
                _output.moment(row["created_at"]),
                _output.moment(row["dead_lettered_at"]),
            ]
            for row in rows
        ],
    )
    return 0

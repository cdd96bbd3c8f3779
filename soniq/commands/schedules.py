"""``soniq schedules list|pause|resume|run-now``: the schedules from a shell.

The actions are ``app.scheduler``'s (:class:`soniq.schedule_service.SchedulerService`), as the
admin's are: ``pause`` stops a schedule firing, ``resume`` makes it fire again from its next
slot (the slots that fell while it was paused are not fired), ``run-now`` enqueues one job of
the schedule outside its timing, built by the app that registered its task, which the command
finds as the worker does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from datetime import UTC
from typing import Any

from asgiref.sync import async_to_sync

from soniq.commands import _output
from soniq.commands._settings import soniq_settings
from soniq.core.codec import one_line
from soniq.core.errors import SoniqError

HELP = "list, pause, resume and run schedules"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every schedule, with its next fire")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    for name, text in (
        ("pause", "stop firing"),
        ("resume", "fire again, from the next slot"),
        ("run-now", "enqueue one job of each now, outside their timing"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("names", nargs="+", metavar="NAME")
        action.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    from soniq.django_schedules import scheduler_service
    from soniq.schedule_service import SchedulerService

    if options.action == "list":
        return _list(options, scheduler_service(alias), out)
    app = _project_app() if options.action == "run-now" else None
    service: SchedulerService = scheduler_service(alias, app)
    calls: dict[str, Callable[[str], Coroutine[Any, Any, Any]]] = {
        "pause": service.pause,
        "resume": service.resume,
        "run-now": service.run_now,
    }
    done: dict[str, Any] = {}
    refused: dict[str, str] = {}

    async def each() -> None:
        for name in options.names:
            try:
                done[name] = await calls[options.action](name)
            except (SoniqError, LookupError) as exc:
                refused[name] = str(exc)

    async_to_sync(each)()
    if options.json:
        applied = done if options.action == "run-now" else list(done)
        _output.dump(out, {"applied": applied, "refused": refused})
    else:
        verb = {"pause": "paused", "resume": "resumed", "run-now": "enqueued"}[options.action]
        for name, value in done.items():
            suffix = f" (job {value})" if options.action == "run-now" else ""
            out.write(f"{verb}: {one_line(name)}{suffix}\n")
        for name, why in refused.items():
            out.write(f"refused: {one_line(name)}: {one_line(why)}\n")
    return 0 if done else 1


def _project_app() -> Any:
    """The app that registered the schedules' tasks, found as ``manage.py soniq_worker``
    finds it (``JOBS_MODULES``, installed apps' ``jobs`` modules, ``APP``)."""
    from soniq import django_worker

    settings = soniq_settings()
    django_worker.discover(settings.jobs_modules)
    return django_worker.project_app(settings.app)


def _list(options: argparse.Namespace, service: Any, out: _output.Out) -> int:
    schedules = async_to_sync(service.list)()
    rows = [
        {
            "name": schedule.name,
            "task": schedule.definition.task_name,
            "timing": schedule.definition.describe(),
            "paused": schedule.paused,
            "last_fired_at": schedule.last_fired_at,
            "next_fire_at": schedule.next_fire_at,
        }
        for schedule in schedules
    ]
    if options.json:
        _output.dump(out, rows)
        return 0
    if not rows:
        out.write("no schedules\n")
        return 0
    _output.table(
        out,
        ["NAME", "TASK", "TIMING", "PAUSED", "LAST FIRED", "NEXT FIRE"],
        [
            [
                row["name"],
                row["task"],
                row["timing"],
                "yes" if row["paused"] else "no",
                _output.moment(_utc(row["last_fired_at"])),
                _output.moment(_utc(row["next_fire_at"])),
            ]
            for row in rows
        ],
    )
    return 0


def _utc(value: Any) -> Any:
    return None if value is None else value.astimezone(UTC)

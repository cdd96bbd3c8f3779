"""``soniq status``: the queues, the workers, the limits and the schedules, read in eight
queries (two more with limits).

Per queue: jobs due and scheduled (``queued``, by ``scheduled_at``), processing, done and
dead-lettered in the last hour, dead letters, and the age of the oldest due job. Each figure
comes from an index: the partial indexes on queued and processing rows, the one on finished
rows (``finished_at``) and the one on ``dead_lettered_at``. Only the count of dead letters
per queue reads that whole (small) table.

Per limit (of a task, declared by its ``@app.job``, or of a queue, in ``QUEUE_LIMITS``): the
jobs running against it and the starts within its rate's window (see
:mod:`soniq.commands._limits`). The jobs modules are imported to know the tasks' limits.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q

from soniq.commands import _output
from soniq.commands._limits import discovered_task_limits, format_window, limit_usage
from soniq.commands._settings import soniq_settings
from soniq.core.ages import format_age
from soniq.core.limits import Limit
from soniq.core.settings import SoniqSettings

HELP = "the queues, workers, limits and schedules, at a glance"

LIVE_WORKER_STATUSES = ("running", "stopping")
WORKER_COLUMNS = (
    "ID",
    "STATE",
    "HOST",
    "PID",
    "QUEUES",
    "TASKS",
    "RUNNING",
    "SLOTS",
    "HELD",
    "HEARTBEAT",
)


@dataclass
class QueueStatus:
    queue: str
    due: int = 0
    scheduled: int = 0
    processing: int = 0
    done_last_hour: int = 0
    failed_last_hour: int = 0
    dead_letters: int = 0
    oldest_due_age_seconds: float | None = None


@dataclass
class WorkerStatus:
    id: str
    state: str  # alive, stopping or stale (heartbeat older than HEARTBEAT_TIMEOUT)
    hostname: str
    pid: int
    queues: list[str] | None  # None: every queue
    tasks: list[str]
    concurrency: int
    running: int  # jobs it started and has not finished: at most its concurrency
    held: int  # every job it holds: running, and claimed ahead to start next
    last_heartbeat_at: datetime


@dataclass
class ScheduleStatus:
    name: str
    task: str
    next_fire_at: datetime | None
    paused: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def queues(alias: str, now: datetime) -> list[QueueStatus]:
    from soniq.models import DeadLetterJob, Job, finished_rows

    hour_ago = now - timedelta(hours=1)
    found: dict[str, QueueStatus] = {}

    def of(queue: str) -> QueueStatus:
        return found.setdefault(queue, QueueStatus(queue))

    jobs = Job.objects.using(alias).order_by()
    queued = (
        jobs.filter(status="queued")
        .values("queue")
        .annotate(
            due=Count("id", filter=Q(scheduled_at__lte=now)),
            scheduled=Count("id", filter=Q(scheduled_at__gt=now)),
            oldest=Min("scheduled_at", filter=Q(scheduled_at__lte=now)),
        )
    )
    for row in queued:
        entry = of(row["queue"])
        entry.due, entry.scheduled = row["due"], row["scheduled"]
        if row["oldest"] is not None:
            waited = _output.aware(now) - _output.aware(row["oldest"])
            age = max(waited.total_seconds(), 0.0)
            entry.oldest_due_age_seconds = round(age, 3)
    for queue, n in _per_queue(jobs.filter(status="processing")):
        of(queue).processing = n
    done = jobs.filter(finished_rows()).filter(status="done", finished_at__gte=hour_ago)
    for queue, n in _per_queue(done):
        of(queue).done_last_hour = n
    dead = DeadLetterJob.objects.using(alias).order_by()
    for queue, n in _per_queue(dead.filter(dead_lettered_at__gte=hour_ago)):
        of(queue).failed_last_hour = n
    for queue, n in _per_queue(dead):
        of(queue).dead_letters = n
    return [found[name] for name in sorted(found)]


def _per_queue(rows: Any) -> list[tuple[str, int]]:
    return list(rows.values("queue").annotate(n=Count("id")).values_list("queue", "n"))


def workers(alias: str, now: datetime, heartbeat_timeout: float) -> list[WorkerStatus]:
    from soniq.models import Job, Worker

    cutoff = _output.aware(now) - timedelta(seconds=heartbeat_timeout)
    # A worker claims ahead what it will start within 50 ms: with short jobs it holds many
    # more jobs than it runs, so both are shown. started_at is set when a job starts.
    holding = {
        worker_id: (held, started)
        for worker_id, held, started in Job.objects.using(alias)
        .filter(status="processing")
        .order_by()
        .values("worker_id")
        .annotate(held=Count("id"), started=Count("id", filter=Q(started_at__isnull=False)))
        .values_list("worker_id", "held", "started")
    }
    live = (
        Worker.objects.using(alias)
        .filter(status__in=LIVE_WORKER_STATUSES)
        .order_by("hostname", "pid", "started_at")
    )
    found = []
    for worker in live:
        heartbeat = _output.aware(worker.last_heartbeat_at)
        state = (
            "stale"
            if heartbeat < cutoff
            else ("alive" if worker.status == "running" else "stopping")
        )
        found.append(
            WorkerStatus(
                id=str(worker.id),
                state=state,
                hostname=worker.hostname,
                pid=worker.pid,
                queues=worker.queues,
                tasks=sorted(worker.task_names or []),
                concurrency=worker.concurrency,
                running=holding.get(worker.id, (0, 0))[1],
                held=holding.get(worker.id, (0, 0))[0],
                last_heartbeat_at=heartbeat,
            )
        )
    return found


def schedules(alias: str) -> list[ScheduleStatus]:
    from soniq.models import Schedule

    return [
        ScheduleStatus(
            name=schedule.name,
            task=schedule.task_name,
            next_fire_at=None
            if schedule.next_fire_at is None
            else _output.aware(schedule.next_fire_at),
            paused=schedule.status == "paused",
        )
        for schedule in Schedule.objects.using(alias).order_by("name")
    ]


def collect(
    alias: str,
    settings: SoniqSettings,
    now: datetime | None = None,
    task_limits: Mapping[str, Limit] | None = None,
) -> dict[str, Any]:
    """Everything ``status`` prints, as JSON-ready data. ``task_limits``: the tasks' limits,
    by default those of the tasks the jobs modules register (imported here, as a worker
    imports them); the queues' come from ``settings.queue_limits``."""
    now = now or _output.now()
    if task_limits is None:
        task_limits = discovered_task_limits(settings.jobs_modules)
    return {
        "now": _output.aware(now),
        "queues": [asdict(entry) for entry in queues(alias, now)],
        "workers": [asdict(entry) for entry in workers(alias, now, settings.heartbeat_timeout)],
        "limits": [
            asdict(entry) for entry in limit_usage(alias, task_limits, settings.queue_limits, now)
        ],
        "schedules": [asdict(entry) for entry in schedules(alias)],
    }


def run(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    data = collect(alias, soniq_settings())
    if options.json:
        _output.dump(out, data)
        return 0
    now: datetime = data["now"]
    out.write(f"Queues at {_output.moment(now)}\n")
    if data["queues"]:
        _output.table(
            out,
            [
                "QUEUE",
                "DUE",
                "SCHEDULED",
                "PROCESSING",
                "DONE 1H",
                "FAILED 1H",
                "DEAD",
                "OLDEST DUE",
            ],
            [
                [
                    q["queue"],
                    q["due"],
                    q["scheduled"],
                    q["processing"],
                    q["done_last_hour"],
                    q["failed_last_hour"],
                    q["dead_letters"],
                    _age(q["oldest_due_age_seconds"]),
                ]
                for q in data["queues"]
            ],
        )
    else:
        out.write("no jobs\n")
    states = [w["state"] for w in data["workers"]]
    out.write(
        f"\nWorkers: {states.count('alive')} alive, {states.count('stopping')} stopping, "
        f"{states.count('stale')} stale\n"
    )
    if data["workers"]:
        _output.table(
            out,
            WORKER_COLUMNS,
            [
                [
                    w["id"][:8],
                    w["state"],
                    w["hostname"],
                    w["pid"],
                    "all" if w["queues"] is None else ",".join(w["queues"]),
                    len(w["tasks"]),
                    w["running"],
                    w["concurrency"],
                    w["held"],
                    format_age(now - w["last_heartbeat_at"]) + " ago",
                ]
                for w in data["workers"]
            ],
        )
    out.write(f"\nLimits: {len(data['limits'])}\n")
    if data["limits"]:
        _output.table(
            out,
            ["KIND", "NAME", "RUNNING", "RATE", "STARTED"],
            [
                [
                    limit["kind"],
                    limit["name"],
                    _running(limit),
                    limit["rate_limit"] or "-",
                    _started(limit),
                ]
                for limit in data["limits"]
            ],
        )
    out.write(f"\nSchedules: {len(data['schedules'])}\n")
    if data["schedules"]:
        _output.table(
            out,
            ["NAME", "TASK", "NEXT FIRE", "PAUSED"],
            [
                [
                    s["name"],
                    s["task"],
                    _output.moment(s["next_fire_at"]),
                    "yes" if s["paused"] else "no",
                ]
                for s in data["schedules"]
            ],
        )
    return 0


def _running(limit: dict[str, Any]) -> str:
    """``"2/3"``: running against a concurrency limit of 3; ``"2"``: no such limit."""
    if limit["concurrency_limit"] is None:
        return str(limit["running"])
    return f"{limit['running']}/{limit['concurrency_limit']}"


def _started(limit: dict[str, Any]) -> str:
    """``"14 in the last 1 s"``: starts within the rate's window; ``"-"``: no rate limit."""
    if limit["window_seconds"] is None:
        return "-"
    return f"{limit['started']} in the last {format_window(limit['window_seconds'])}"


def _age(seconds: float | None) -> str:
    return format_age(None if seconds is None else timedelta(seconds=seconds))

"""``soniq healthcheck``: exit 0 when healthy, 1 when not, for Kubernetes and systemd probes.

One line per check: the database answers; soniq's migrations are all applied; with
``--worker``, a live worker (running, heartbeat within ``HEARTBEAT_TIMEOUT``) serves the queue
(``--queue``) or any queue; with ``--max-latency``, the oldest due job of that queue (or of
any) has waited less than that many seconds. A check that cannot run because an earlier one
failed is reported as skipped. Every query reads an index or a small table, so the answer
takes milliseconds whatever the number of finished jobs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.db.models import Min

from soniq.commands import _output
from soniq.commands._settings import soniq_settings
from soniq.core.ages import format_age
from soniq.core.settings import QUEUE_NAME_RULE, is_valid_queue_name

HELP = "exit 0 if soniq is healthy, 1 if not (for liveness and readiness probes)"


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-latency",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="fail when the oldest due job has waited this long or longer",
    )
    parser.add_argument(
        "--queue", type=_queue, default=None, help="check this queue only (workers and latency)"
    )
    parser.add_argument(
        "--worker", action="store_true", help="fail unless a live worker serves the queue"
    )


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _queue(text: str) -> str:
    if not is_valid_queue_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid queue name ({QUEUE_NAME_RULE})")
    return text


def database(alias: str) -> Check:
    started = time.monotonic()
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__  # on one line
        return Check("database", False, f"unreachable: {text}")
    took = (time.monotonic() - started) * 1000
    return Check("database", True, f"reachable ({took:.0f} ms)")


def migrations(alias: str) -> Check:
    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    wanted = {key for key in loader.disk_migrations if key[0] == "soniq"}
    missing = sorted(name for app, name in wanted - loader.applied_migrations.keys())
    if missing:
        return Check("migrations", False, f"not applied: {', '.join(missing)}")
    return Check("migrations", True, f"{len(wanted)} applied")


def worker(alias: str, queue: str | None, heartbeat_timeout: float) -> Check:
    from soniq.models import Worker

    cutoff = _output.now() - timedelta(seconds=heartbeat_timeout)
    live = Worker.objects.using(alias).filter(status="running", last_heartbeat_at__gte=cutoff)
    serving = [w for w in live if queue is None or w.queues is None or queue in w.queues]
    where = f"queue {queue}" if queue else "any queue"
    if not serving:
        return Check("worker", False, f"no live worker serves {where}")
    return Check("worker", True, f"{len(serving)} live worker(s) serve {where}")


def latency(alias: str, queue: str | None, limit: float) -> Check:
    from soniq.models import Job

    now = _output.now()
    due = Job.objects.using(alias).filter(status="queued", scheduled_at__lte=now)
    if queue is not None:
        due = due.filter(queue=queue)
    oldest = due.order_by().aggregate(oldest=Min("scheduled_at"))["oldest"]
    where = f"in queue {queue}" if queue else "in any queue"
    if oldest is None:
        return Check("latency", True, f"no job due {where}")
    waited = max(_output.aware(now) - _output.aware(oldest), timedelta(0))
    text = f"the oldest due job {where} has waited {format_age(waited)}"
    if waited.total_seconds() >= limit:
        return Check("latency", False, f"{text}, the limit is {limit:g} s")
    return Check("latency", True, text)


def checks(options: argparse.Namespace, alias: str) -> list[Check]:
    settings = soniq_settings()
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("database", lambda: database(alias)),
        ("migrations", lambda: migrations(alias)),
    ]
    if options.worker:
        steps.append(("worker", lambda: worker(alias, options.queue, settings.heartbeat_timeout)))
    if options.max_latency is not None:
        steps.append(("latency", lambda: latency(alias, options.queue, options.max_latency)))
    found: list[Check] = []
    for name, step in steps:
        if found and not all(check.ok for check in found[:2]):
            # Without a reachable database and soniq's tables, nothing else can be read.
            found.append(Check(name, None, "skipped"))
            continue
        found.append(step())
    return found


def run(options: argparse.Namespace, alias: str, out: _output.Out) -> int:
    found = checks(options, alias)
    for check in found:
        mark = {True: "ok", False: "FAIL", None: "skip"}[check.ok]
        out.write(f"{mark:<4}  {check.name:<10}  {check.detail}\n")
    return 0 if all(check.ok for check in found) else 1

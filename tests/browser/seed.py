"""Rows for the browser tests: single jobs and dead letters, schedules added through
``app.scheduler``, and a realistic day of a small shop for the screenshots."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.db import connections
from django.utils import timezone

from soniq.models import DeadLetterJob, Job, Schedule, Worker

T = TypeVar("T")
PARIS = ZoneInfo("Europe/Paris")


# -- single rows --------------------------------------------------------------------------------


def error_entry(
    attempt: int,
    error_type: str,
    message: str,
    failed_at: datetime,
    worker_id: uuid.UUID | None = None,
    traceback: str = "",
) -> dict[str, Any]:
    """One failed attempt, shaped as the worker records it (soniq.worker.execution)."""
    return {
        "attempt": attempt,
        "error_type": error_type,
        "message": message,
        "traceback": traceback,
        "failed_at": failed_at.isoformat(),
        "worker_id": str(worker_id) if worker_id else None,
    }


def make_job(**fields: Any) -> Job:
    now = timezone.now()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "task_name": "shop.jobs.fulfill_order",
        "args": {"order_id": 1},
        "queue": "orders",
        "status": "queued",
        "scheduled_at": now,
        "created_at": now,
    }
    values.update(fields)
    return Job.objects.create(**values)


def make_dead_letter(**fields: Any) -> DeadLetterJob:
    now = timezone.now()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "task_name": "shop.jobs.import_feed",
        "args": {"url": "https://partner.example.com/feeds/stock.xml"},
        "queue": "imports",
        "priority": 100,
        "attempts": 2,
        "max_attempts": 2,
        "scheduled_at": now - timedelta(minutes=5),
        "created_at": now - timedelta(minutes=5),
        "started_at": now - timedelta(minutes=1),
        "dead_lettered_at": now - timedelta(minutes=1),
        "errors": [
            error_entry(1, "builtins.ValueError", "not a CSV file", now - timedelta(minutes=3)),
            error_entry(2, "builtins.ValueError", "not a CSV file", now - timedelta(minutes=1)),
        ],
        "reason": "max_attempts",
    }
    values.update(fields)
    return DeadLetterJob.objects.create(**values)


# -- schedules, through the real API ------------------------------------------------------------


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a thread of its own: the test's thread has
    Playwright's loop marked as running, where neither ``asyncio.run`` nor ``async_to_sync``
    may start another."""

    def body() -> T:
        try:
            return asyncio.run(make())
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(body).result(timeout=60)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    task_name: str
    args: dict[str, Any]
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    queue: str | None = None
    paused: bool = False


def add_schedules(*specs: ScheduleSpec) -> list[Schedule]:
    """``app.scheduler.add`` (and ``pause``) on the testproject's app, which opens a psycopg
    pool of its own on the test database; closed again before returning."""
    import shop.jobs  # noqa: F401  (registers the shop's jobs on the app)
    from config.tasks import app

    async def add() -> None:
        try:
            for spec in specs:
                await app.scheduler.add(
                    spec.task_name,
                    name=spec.name,
                    cron=spec.cron,
                    every=spec.every,
                    args=spec.args,
                    timezone=spec.timezone,
                    queue=spec.queue,
                )
                if spec.paused:
                    await app.scheduler.pause(spec.name)
        finally:
            await app.scheduler.close()

    run_async(add)
    return [Schedule.objects.get(name=spec.name) for spec in specs]


# -- a day of a small shop, for the screenshots --------------------------------------------------

_SOURCE = "/srv/shop"
_SITE = "/srv/shop/.venv/lib/python3.12/site-packages"


def _traceback(frames: list[tuple[str, int, str, str]], error: str) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, line, function, code in frames:
        lines.append(f'  File "{path}", line {line}, in {function}')
        lines.append(f"    {code}")
    lines.append(error)
    return "\n".join(lines) + "\n"


def _worker_frames() -> list[tuple[str, int, str, str]]:
    """Where a sync job's exception passes through soniq's worker on its way up."""
    return [
        (
            f"{_SITE}/soniq/worker/execution.py",
            154,
            "run",
            "value = await self._in_thread(spec.func, kwargs, deadline)",
        ),
        (f"{_SITE}/soniq/worker/execution.py", 210, "_in_thread", "raise value.exception"),
        (f"{_SITE}/soniq/worker/execution.py", 193, "in_thread", "return call()"),
        (f"{_SITE}/soniq/django_worker.py", 70, "wrapped", "return call()"),
    ]


GATEWAY_TIMEOUT = _traceback(
    [
        *_worker_frames(),
        (f"{_SOURCE}/shop/jobs.py", 88, "charge_payment", "receipt = gateway.capture(order)"),
        (
            f"{_SOURCE}/shop/payments.py",
            41,
            "capture",
            'response = self.session.post(self.url("captures"), json=body, timeout=10)',
        ),
        (
            f"{_SITE}/requests/adapters.py",
            713,
            "send",
            "raise ReadTimeout(e, request=request)",
        ),
    ],
    "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.payments.example', "
    "port=443): Read timed out. (read timeout=10)",
)

GATEWAY_UNAVAILABLE = _traceback(
    [
        *_worker_frames(),
        (f"{_SOURCE}/shop/jobs.py", 88, "charge_payment", "receipt = gateway.capture(order)"),
        (f"{_SOURCE}/shop/payments.py", 47, "capture", "response.raise_for_status()"),
        (
            f"{_SITE}/requests/models.py",
            1024,
            "raise_for_status",
            "raise HTTPError(http_error_msg, response=self)",
        ),
    ],
    "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: "
    "https://api.payments.example/v2/captures",
)

NOT_CSV = _traceback(
    [
        *_worker_frames(),
        (
            f"{_SOURCE}/shop/jobs.py",
            44,
            "import_feed",
            'raise ValueError(f"{url} is not a CSV file")',
        ),
    ],
    "ValueError: https://partner.example.com/feeds/stock.xml is not a CSV file",
)

SMTP_DISCONNECTED = _traceback(
    [
        (
            f"{_SITE}/soniq/worker/execution.py",
            152,
            "run",
            "value = await spec.func(**kwargs)",
        ),
        (
            f"{_SOURCE}/shop/jobs.py",
            27,
            "send_receipt",
            "await mailer.send(message)",
        ),
        (
            f"{_SITE}/aiosmtplib/protocol.py",
            193,
            "execute_command",
            "response = await self.read_response(timeout=timeout)",
        ),
        (
            f"{_SITE}/aiosmtplib/protocol.py",
            168,
            "read_response",
            'raise SMTPServerDisconnected("Connection lost")',
        ),
    ],
    "aiosmtplib.errors.SMTPServerDisconnected: Connection lost",
)

REPORT_BUSY = _traceback(
    [
        *_worker_frames(),
        (
            f"{_SOURCE}/shop/jobs.py",
            36,
            "build_report",
            'raise ConnectionError(f"report service busy (attempt {ctx.attempt})")',
        ),
    ],
    "ConnectionError: report service busy (attempt 1)",
)

# (task, queue, share of the traffic, typical duration in seconds)
TRAFFIC = [
    ("shop.jobs.fulfill_order", "orders", 0.34, 0.8),
    ("shop.jobs.send_receipt", "emails", 0.30, 0.4),
    ("shop.jobs.charge_payment", "payments", 0.16, 1.6),
    ("shop.jobs.remind", "reminders", 0.12, 0.2),
    ("shop.jobs.build_report", "reports", 0.05, 12.0),
    ("shop.jobs.import_feed", "imports", 0.03, 4.0),
]
CUSTOMERS = ["ada@example.com", "linus@example.org", "grace@example.net", "alan@example.com"]


def _args(task: str, rnd: random.Random) -> dict[str, Any]:
    order = rnd.randint(10_000, 10_999)
    return {
        "shop.jobs.fulfill_order": lambda: {"order_id": order},
        "shop.jobs.send_receipt": lambda: {"to": rnd.choice(CUSTOMERS), "order_id": order},
        "shop.jobs.charge_payment": lambda: {
            "order_id": order,
            "amount": f"{rnd.randint(9, 240)}.{rnd.choice(['00', '50', '90', '99'])}",
            "currency": "EUR",
            "card_token": f"tok_{uuid.uuid4().hex[:24]}",
        },
        "shop.jobs.remind": lambda: {"customer_email": rnd.choice(CUSTOMERS)},
        "shop.jobs.build_report": lambda: {"name": rnd.choice(["daily sales", "stock levels"])},
        "shop.jobs.import_feed": lambda: {"url": "https://partner.example.com/feeds/stock.csv"},
    }[task]()


def _result(task: str, args: dict[str, Any]) -> Any:
    if task == "shop.jobs.fulfill_order":
        return {"order_id": args["order_id"], "attempt": 1}
    if task == "shop.jobs.send_receipt":
        return f"receipt for order {args['order_id']} sent to {args['to']}"
    if task == "shop.jobs.charge_payment":
        return {"captured": args["amount"], "currency": "EUR"}
    if task == "shop.jobs.remind":
        return f"reminded {args['customer_email']}"
    if task == "shop.jobs.build_report":
        return f"report {args['name']!r} built on attempt 1"
    return None


@dataclass(frozen=True)
class Showcase:
    retrying_job: uuid.UUID  # queued again after two failed attempts, secrets in its args
    dead_letter: uuid.UUID
    schedule: int
    dead_last_hour: int


def seed_showcase(now: datetime | None = None) -> Showcase:
    """A shop's last day: done jobs every minute (busier in the daytime), a few dead letters,
    jobs queued, running, scheduled, cancelled and retrying, two workers alive and one stale,
    three schedules. Deterministic apart from ``now``."""
    now = now or timezone.now()
    rnd = random.Random(20240611)
    web1, web2, batch1, old = (uuid.uuid4() for _ in range(4))
    Worker.objects.bulk_create(
        [
            Worker(
                id=web1,
                hostname="web-1",
                pid=4121,
                queues=None,
                task_names=[task for task, *_ in TRAFFIC],
                concurrency=8,
                status="running",
                started_at=now - timedelta(hours=5, minutes=12),
                last_heartbeat_at=now - timedelta(seconds=4),
                version="0.1.0",
            ),
            Worker(
                id=web2,
                hostname="web-2",
                pid=3377,
                queues=["orders", "emails", "payments"],
                task_names=[task for task, *_ in TRAFFIC],
                concurrency=4,
                status="running",
                started_at=now - timedelta(hours=2, minutes=3),
                last_heartbeat_at=now - timedelta(seconds=9),
                version="0.1.0",
            ),
            Worker(
                id=batch1,
                hostname="batch-1",
                pid=918,
                queues=["reports", "imports"],
                task_names=["shop.jobs.build_report", "shop.jobs.import_feed"],
                concurrency=2,
                status="running",
                started_at=now - timedelta(hours=9),
                last_heartbeat_at=now - timedelta(minutes=17, seconds=40),
                version="0.1.0",
            ),
            Worker(
                id=old,
                hostname="web-1",
                pid=2950,
                queues=None,
                task_names=[task for task, *_ in TRAFFIC],
                concurrency=8,
                status="stopped",
                started_at=now - timedelta(days=1, hours=3),
                last_heartbeat_at=now - timedelta(hours=5, minutes=13),
                stopped_at=now - timedelta(hours=5, minutes=13),
                version="0.1.0",
            ),
        ]
    )
    live_workers = [web1, web1, web2]  # web-1 runs twice as many

    jobs: list[Job] = []
    dead: list[DeadLetterJob] = []

    def done_job(finished: datetime) -> None:
        task, queue, _, duration = rnd.choices(TRAFFIC, weights=[t[2] for t in TRAFFIC])[0]
        took = timedelta(seconds=duration * rnd.uniform(0.5, 1.8))
        waited = timedelta(seconds=rnd.uniform(0.01, 2.5))
        args = _args(task, rnd)
        jobs.append(
            Job(
                id=uuid.uuid4(),
                task_name=task,
                args=args,
                queue=queue,
                status="done",
                attempts=1,
                max_attempts=4,
                scheduled_at=finished - took - waited,
                created_at=finished - took - waited,
                started_at=finished - took,
                finished_at=finished,
                worker_id=rnd.choice(live_workers),
                result=_result(task, args),
            )
        )

    # Jobs done per hour: quiet at night, busy in the afternoon (UTC). A tenth of a real shop
    # is plenty for the bars.
    def per_hour(at: datetime) -> float:
        return 40 + 320 * max(0.0, 1 - abs(at.hour + at.minute / 60 - 14) / 8)

    # The last hour, minute by minute, at the same rate, with a rush about 20 minutes ago.
    minute = now.replace(second=0, microsecond=0)
    for back in range(60):
        start = minute - timedelta(minutes=back)
        rush = 1 + 0.8 * max(0.0, 1 - abs(back - 22) / 8)
        count = max(1, round(per_hour(start) / 60 * rush * rnd.uniform(0.6, 1.4)))
        span = min((now - start).total_seconds(), 60.0)
        for _ in range(count):
            done_job(start + timedelta(seconds=rnd.uniform(0, span)))
    # The 23 hours before, up to where the minutes above start.
    hour = now.replace(minute=0, second=0, microsecond=0)
    for back in range(1, 24):
        start = hour - timedelta(hours=back)
        for _ in range(round(per_hour(start) * rnd.uniform(0.85, 1.15))):
            finished = start + timedelta(seconds=rnd.uniform(0, 3599))
            if finished < minute - timedelta(minutes=59):
                done_job(finished)

    def dead_letter(
        at: datetime,
        task: str,
        queue: str,
        reason: str,
        error_type: str,
        message: str,
        traceback: str,
        attempts: int,
        args: dict[str, Any],
    ) -> uuid.UUID:
        created = at - timedelta(minutes=rnd.uniform(2, 40))
        worker = rnd.choice([web1, web2, batch1])
        errors = [
            error_entry(
                attempt,
                error_type,
                message,
                created + (at - created) * attempt / attempts,
                worker,
                traceback,
            )
            for attempt in range(1, attempts + 1)
        ]
        job_id = uuid.uuid4()
        dead.append(
            DeadLetterJob(
                id=job_id,
                task_name=task,
                args=args,
                queue=queue,
                priority=100,
                attempts=attempts,
                max_attempts=attempts,
                scheduled_at=created,
                created_at=created,
                started_at=at - timedelta(seconds=2),
                dead_lettered_at=at,
                worker_id=worker,
                errors=errors,
                reason=reason,
            )
        )
        return job_id

    kinds: list[Callable[[datetime], uuid.UUID]] = [
        lambda at: dead_letter(
            at,
            "shop.jobs.import_feed",
            "imports",
            "max_attempts",
            "builtins.ValueError",
            "https://partner.example.com/feeds/stock.xml is not a CSV file",
            NOT_CSV,
            2,
            {"url": "https://partner.example.com/feeds/stock.xml"},
        ),
        lambda at: dead_letter(
            at,
            "shop.jobs.charge_payment",
            "payments",
            "max_attempts",
            "requests.exceptions.HTTPError",
            "503 Server Error: Service Unavailable for url: "
            "https://api.payments.example/v2/captures",
            GATEWAY_UNAVAILABLE,
            5,
            _args("shop.jobs.charge_payment", rnd),
        ),
        lambda at: dead_letter(
            at,
            "shop.jobs.send_receipt",
            "emails",
            "max_attempts",
            "aiosmtplib.errors.SMTPServerDisconnected",
            "Connection lost",
            SMTP_DISCONNECTED,
            4,
            _args("shop.jobs.send_receipt", rnd),
        ),
        lambda at: dead_letter(
            at,
            "shop.jobs.fulfill_order",
            "orders",
            "worker_lost",
            "soniq.WorkerLost",
            "the worker running this job stopped responding",
            "",
            3,
            _args("shop.jobs.fulfill_order", rnd),
        ),
    ]
    dead_last_hour = 0
    for back_minutes, kind in [(3, 0), (4, 0), (11, 1), (19, 2), (27, 0), (33, 1), (34, 1)]:
        at = now - timedelta(minutes=back_minutes, seconds=rnd.uniform(0, 50))
        kinds[kind](at)
        dead_last_hour += 1
    for back_hours, kind in [(2, 3), (3, 0), (5, 2), (7, 0), (8, 0), (13, 1), (17, 2), (22, 0)]:
        kinds[kind](now - timedelta(hours=back_hours, minutes=rnd.uniform(0, 50)))
    first_dead = dead[0].id

    # The jobs of the last minutes: every status, newest first in the job list.
    def recent(
        seconds_ago: float,
        task: str,
        queue: str,
        status: str,
        **fields: Any,
    ) -> uuid.UUID:
        created = now - timedelta(seconds=seconds_ago)
        job_id = uuid.uuid4()
        values: dict[str, Any] = {
            "id": job_id,
            "task_name": task,
            "args": _args(task, rnd),
            "queue": queue,
            "status": status,
            "attempts": 0,
            "max_attempts": 4,
            "scheduled_at": created,
            "created_at": created,
        }
        values.update(fields)
        jobs.append(Job(**values))
        return job_id

    recent(2, "shop.jobs.fulfill_order", "orders", "queued")
    recent(3, "shop.jobs.send_receipt", "emails", "queued", priority=50)
    recent(
        5,
        "shop.jobs.charge_payment",
        "payments",
        "processing",
        attempts=1,
        started_at=now - timedelta(seconds=1),
        worker_id=web2,
    )
    recent(
        6,
        "shop.jobs.fulfill_order",
        "orders",
        "processing",
        attempts=1,
        started_at=now - timedelta(seconds=3),
        worker_id=web1,
    )
    recent(
        8,
        "shop.jobs.remind",
        "reminders",
        "queued",
        scheduled_at=now + timedelta(hours=20),
    )
    recent(
        11,
        "shop.jobs.send_receipt",
        "emails",
        "done",
        attempts=1,
        started_at=now - timedelta(seconds=10),
        finished_at=now - timedelta(seconds=9),
        worker_id=web1,
        result="receipt for order 10421 sent to ada@example.com",
    )
    retrying = recent(
        14,
        "shop.jobs.charge_payment",
        "payments",
        "queued",
        args={
            "order_id": 10421,
            "amount": "59.90",
            "currency": "EUR",
            "card_token": "tok_1PqL8e2eZvKYlo2C0x7mN3bQ",
            "gateway": {
                "merchant": "shop-eu",
                "api_key": "sk_live_51H8s2eZvKYlo2C4tLmQp",
                "webhook_secret": "whsec_7f3a9c",
            },
            "billing": {"name": "Ada Lovelace", "country": "GB"},
        },
        priority=20,
        attempts=2,
        max_attempts=5,
        scheduled_at=now + timedelta(seconds=25),
        started_at=now - timedelta(seconds=5),
        worker_id=None,
        dedup_key="charge:10421",
        errors=[
            error_entry(
                1,
                "requests.exceptions.ReadTimeout",
                "HTTPSConnectionPool(host='api.payments.example', port=443): Read timed out. "
                "(read timeout=10)",
                now - timedelta(seconds=12),
                web2,
                GATEWAY_TIMEOUT,
            ),
            error_entry(
                2,
                "requests.exceptions.HTTPError",
                "503 Server Error: Service Unavailable for url: "
                "https://api.payments.example/v2/captures",
                now - timedelta(seconds=4),
                web1,
                GATEWAY_UNAVAILABLE,
            ),
        ],
    )
    recent(
        20,
        "shop.jobs.build_report",
        "reports",
        "queued",
        attempts=1,
        scheduled_at=now - timedelta(minutes=6, seconds=10),
        errors=[
            error_entry(
                1,
                "builtins.ConnectionError",
                "report service busy (attempt 1)",
                now - timedelta(minutes=6, seconds=11),
                batch1,
                REPORT_BUSY,
            )
        ],
    )
    recent(
        24,
        "shop.jobs.import_feed",
        "imports",
        "processing",
        attempts=1,
        started_at=now - timedelta(minutes=18, seconds=2),
        worker_id=batch1,
    )
    recent(31, "shop.jobs.send_receipt", "emails", "cancelled", finished_at=now)
    recent(
        38,
        "shop.jobs.fulfill_order",
        "orders",
        "done",
        attempts=2,
        started_at=now - timedelta(seconds=30),
        finished_at=now - timedelta(seconds=29),
        worker_id=web2,
        result={"order_id": 10417, "attempt": 2},
    )
    recent(
        44, "shop.jobs.remind", "reminders", "cancelled", finished_at=now - timedelta(seconds=40)
    )
    recent(
        52,
        "shop.jobs.fulfill_order",
        "orders",
        "queued",
        scheduled_at=now - timedelta(seconds=50),
    )
    Job.objects.bulk_create(jobs, batch_size=1000)
    DeadLetterJob.objects.bulk_create(dead, batch_size=1000)

    schedules = add_schedules(
        ScheduleSpec(
            name="daily-sales-report",
            task_name="shop.jobs.build_report",
            cron="0 6 * * *",
            timezone="Europe/Paris",
            args={"name": "daily sales"},
            queue="reports",
        ),
        ScheduleSpec(
            name="stock-feed",
            task_name="shop.jobs.import_feed",
            cron="*/15 * * * *",
            args={"url": "https://partner.example.com/feeds/stock.csv"},
        ),
        ScheduleSpec(
            name="weekly-reminders",
            task_name="shop.jobs.remind",
            cron="0 9 * * 1",
            timezone="Europe/Paris",
            args={"customer_email": "newsletter@example.com"},
            paused=True,
        ),
    )
    # As if the scheduler had been firing them.
    six_in_paris = now.astimezone(PARIS).replace(hour=6, minute=0, second=0, microsecond=0)
    if six_in_paris > now:
        six_in_paris -= timedelta(days=1)
    Schedule.objects.filter(name="daily-sales-report").update(last_fired_at=six_in_paris)
    Schedule.objects.filter(name="stock-feed").update(
        last_fired_at=now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    )
    return Showcase(
        retrying_job=retrying,
        dead_letter=first_dead,
        schedule=schedules[0].pk,
        dead_last_hour=dead_last_hour,
    )

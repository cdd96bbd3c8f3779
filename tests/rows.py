"""Rows written straight into soniq's tables, as a worker or the scheduler would leave them:
the state the admin and the operator actions are tested against."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from soniq.models import DeadLetterJob, Job, Schedule, Worker

_numbers = itertools.count(1)


@dataclass
class Rows:
    """Rows written straight into soniq's tables on one alias, as a worker would leave them."""

    alias: str

    def job(self, **fields: Any) -> Job:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_name": "tests.send_email",
            "args": {"to": "a@example.com", "subject": "hi"},
            "queue": "default",
            "priority": 100,
            "status": "queued",
            "attempts": 0,
            "max_attempts": 4,
            "scheduled_at": now,
            "created_at": now,
        }
        values.update(fields)
        return Job.objects.using(self.alias).create(**values)

    def scheduled(self, **fields: Any) -> Job:
        """A queued job due in an hour."""
        later = datetime.now(UTC) + timedelta(hours=1)
        return self.job(scheduled_at=later, **fields)

    def dead_letter(self, **fields: Any) -> DeadLetterJob:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_name": "tests.send_email",
            "args": {"to": "a@example.com", "subject": "hi"},
            "queue": "default",
            "priority": 100,
            "attempts": 4,
            "max_attempts": 4,
            "scheduled_at": now,
            "created_at": now,
            "dead_lettered_at": now,
            "errors": [{"attempt": 4, "error_type": "ValueError", "message": "boom"}],
            "reason": "max_attempts",
        }
        values.update(fields)
        return DeadLetterJob.objects.using(self.alias).create(**values)

    def worker(self, status: str = "running", heartbeat_age: float = 0, **fields: Any) -> Worker:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "hostname": "host-a",
            "pid": 4000 + next(_numbers),
            "queues": None,
            "concurrency": 4,
            "status": status,
            "started_at": now - timedelta(hours=1),
            "last_heartbeat_at": now - timedelta(seconds=heartbeat_age),
            "version": "1.0",
        }
        values.update(fields)
        return Worker.objects.using(self.alias).create(**values)

    def running(self, worker: Worker, **fields: Any) -> Job:
        """A job ``worker`` holds."""
        values: dict[str, Any] = {
            "status": "processing",
            "attempts": 1,
            "worker_id": worker.id,
            "started_at": datetime.now(UTC),
        }
        return self.job(**{**values, **fields})

    def schedule(self, **fields: Any) -> Schedule:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "name": f"schedule-{next(_numbers)}",
            "task_name": "shop.jobs.remind",
            "cron": "*/5 * * * *",
            "timezone": "UTC",
            "args": {"customer_email": "a@example.com"},
            "status": "active",
            "source": "api",
            "next_fire_at": now + timedelta(minutes=5),
            "created_at": now,
            "updated_at": now,
        }
        values.update(fields)
        return Schedule.objects.using(self.alias).create(**values)

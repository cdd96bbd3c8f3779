"""The demo: orders placed through the real view, a few jobs that retry, fail and wait, a
periodic job fired by a scheduler tick, and a worker that runs them all until each has settled.
Works on the default SQLite database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from config.tasks import app
from shop.jobs import build_report, count_open_orders, import_feed, remind
from soniq import JobInfo, JobStatus

SETTLED = {JobStatus.DONE, JobStatus.DEAD_LETTER, JobStatus.CANCELLED}


class Command(BaseCommand):
    help = "Demo: enqueue jobs in transactions, run a worker until they settle, show the outcome."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=60.0, help="Give up after this.")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.WARNING, format="   worker log: %(message)s")
        # The rejected order is a 400 on purpose; Django would log it as a warning.
        logging.getLogger("django.request").setLevel(logging.ERROR)
        self.stdout.write("1. Orders through the real view (order and jobs commit together):")
        job_ids = self._place_orders()
        self.stdout.write("\n2. Jobs that retry, fail for good, and wait:")
        job_ids += [
            build_report.enqueue(name="weekly sales"),
            import_feed.enqueue(url="https://example.com/feed.xml"),
            remind.using(scheduled_at=timedelta(seconds=3)).enqueue(
                customer_email="ann@example.com"
            ),
        ]
        self.stdout.write("   build_report (fails twice, then works), import_feed (always fails),")
        self.stdout.write("   remind (scheduled 3 seconds ahead),")
        self.stdout.write(
            "   count_open_orders (@app.periodic every 2 seconds: a scheduler enqueues it)"
        )
        self.stdout.write(
            "\n3. A worker runs until every job has settled; a scheduler tick fires the periodic"
        )
        self.stdout.write("   job once its slot is due (manage.py soniq_scheduler ticks forever):")
        started = time.monotonic()
        infos, slots = asyncio.run(self._work_until_settled(job_ids, options["timeout"]))
        self.stdout.write(f"   settled in {time.monotonic() - started:.1f}s\n")
        self._summary(infos, slots)

    def _place_orders(self) -> list[str]:
        client = Client()
        ids: list[str] = []
        for email, total in [("ann@example.com", 1250), ("bob@example.com", 0)]:
            response = client.post(
                "/shop/orders/",
                data=json.dumps({"email": email, "total_cents": total}),
                content_type="application/json",
            )
            body = response.json()
            if response.status_code == 201:
                ids.extend(body["jobs"])
                outcome = f"order #{body['order']}, jobs {len(body['jobs'])}"
            else:
                outcome = f"{body['error']}: rolled back, no order and no job"
            self.stdout.write(f"   POST {email:<16} total={total:<5} -> {outcome}")
        return ids

    async def _work_until_settled(
        self, job_ids: list[str], limit: float
    ) -> tuple[list[JobInfo], dict[str, datetime]]:
        """The infos of ``job_ids`` and of the periodic job, once all have settled; and the
        slot each fired job was enqueued for."""
        # What `manage.py soniq_scheduler` does, one tick at a time: store the schedules
        # declared in code, then fire the due ones (each slot once, whatever the number of
        # schedulers sharing the database).
        scheduler = app.make_scheduler()
        await scheduler.sync()
        schedule = await app.scheduler.get(count_open_orders.job_name)
        assert schedule is not None and schedule.next_fire_at is not None
        slots: dict[str, datetime] = {}
        worker = app.make_worker(concurrency=4)
        worker.settings = worker.settings.model_copy(update={"poll_interval": 0.2})
        running = asyncio.create_task(worker.run(concurrency=4))
        deadline = time.monotonic() + limit
        try:
            while True:
                if not slots and datetime.now(UTC) >= schedule.next_fire_at:
                    for _, slot, job_id in await scheduler.tick():
                        slots[job_id] = slot
                infos = [await app.get_job(job_id) for job_id in [*job_ids, *slots]]
                settled = all(info is not None and info.status in SETTLED for info in infos)
                if settled and slots:
                    return [info for info in infos if info is not None], slots
                if running.done() or time.monotonic() > deadline:
                    raise CommandError("the jobs did not settle in time")
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await running
            await worker.backend.close()
            await app.scheduler.close()

    def _summary(self, infos: list[JobInfo], slots: dict[str, datetime]) -> None:
        self.stdout.write(f"   {'task':<24} {'status':<12} {'attempts':<9} outcome")
        for info in infos:
            if info.status is JobStatus.DONE:
                outcome = json.dumps(info.result)
            else:
                last = info.last_error or {}
                outcome = f"{last.get('error_type', '?')}: {last.get('message', '')}"
            waited = ""
            delayed = info.scheduled_at and info.created_at and info.scheduled_at > info.created_at
            if delayed and not info.errors:  # a retry moves scheduled_at too
                assert info.scheduled_at is not None and info.created_at is not None
                seconds = (info.scheduled_at - info.created_at).total_seconds()
                waited = f" (ran {seconds:.0f}s after enqueue, as scheduled)"
            if info.id in slots:
                waited = f" (fired by the scheduler for its {slots[info.id]:%H:%M:%S} UTC slot)"
            task = info.task_name.rsplit(".", 1)[-1]
            self.stdout.write(
                f"   {task:<24} {info.status.value:<12} {info.attempts}/{info.max_attempts:<7} "
                f"{outcome}{waited}"
            )
            for error in info.errors[:-1] if info.status is JobStatus.DEAD_LETTER else info.errors:
                self.stdout.write(
                    f"   {'':<24} attempt {error['attempt']} failed: {error['message']}"
                )

"""The demo: orders placed through the real view, a few jobs that retry, fail and wait, and a
worker that runs them all until each has settled. Works on the default SQLite database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from config.tasks import app
from shop.jobs import build_report, import_feed, remind
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
        self.stdout.write("   remind (scheduled 3 seconds ahead)")
        self.stdout.write("\n3. A worker runs until every job has settled:")
        started = time.monotonic()
        infos = asyncio.run(self._work_until_settled(job_ids, options["timeout"]))
        self.stdout.write(f"   settled in {time.monotonic() - started:.1f}s\n")
        self._summary(infos)

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

    async def _work_until_settled(self, job_ids: list[str], limit: float) -> list[JobInfo]:
        worker = app.make_worker(concurrency=4)
        worker.settings = worker.settings.model_copy(update={"poll_interval": 0.2})
        running = asyncio.create_task(worker.run(concurrency=4))
        deadline = time.monotonic() + limit
        try:
            while True:
                infos = [await app.get_job(job_id) for job_id in job_ids]
                if all(info is not None and info.status in SETTLED for info in infos):
                    return [info for info in infos if info is not None]
                if running.done() or time.monotonic() > deadline:
                    raise CommandError("the jobs did not settle in time")
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await running
            await worker.backend.close()

    def _summary(self, infos: list[JobInfo]) -> None:
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
            task = info.task_name.rsplit(".", 1)[-1]
            self.stdout.write(
                f"   {task:<24} {info.status.value:<12} {info.attempts}/{info.max_attempts:<7} "
                f"{outcome}{waited}"
            )
            for error in info.errors[:-1] if info.status is JobStatus.DEAD_LETTER else info.errors:
                self.stdout.write(
                    f"   {'':<24} attempt {error['attempt']} failed: {error['message']}"
                )

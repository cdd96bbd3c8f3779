"""Place a few orders through the real view and show the jobs soniq stored for them."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand
from django.test import Client

from config.tasks import app
from shop.models import Order
from soniq.models import Job


class Command(BaseCommand):
    help = "Demo: orders and their jobs are committed in one transaction (or not at all)."

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client()
        placed = []
        for email, total in [
            ("ann@example.com", 1250),
            ("bob@example.com", 0),
            ("cy@example.com", 990),
        ]:
            response = client.post(
                "/shop/orders/",
                data=json.dumps({"email": email, "total_cents": total}),
                content_type="application/json",
            )
            body = response.json()
            outcome = f"order #{body['order']}" if response.status_code == 201 else body["error"]
            status = response.status_code
            self.stdout.write(
                f"POST /shop/orders/ {email:<16} total={total:<5} -> {status} {outcome}"
            )
            if response.status_code == 201:
                placed.extend(body["jobs"])

        self.stdout.write("")
        self.stdout.write(f"{'job id':<36}  {'task':<24} {'queue':<7} {'status':<7} args")
        for job_id in placed:
            info = app.get_job_sync(job_id)
            assert info is not None
            self.stdout.write(
                f"{info.id:<36}  {info.task_name:<24} {info.queue:<7} {info.status.value:<7} "
                f"{json.dumps(info.args)}"
            )
        self.stdout.write("")
        self.stdout.write(
            f"Orders in the database: {Order.objects.count()}; jobs: {Job.objects.count()}. "
            "The rejected order rolled back, and its jobs with it."
        )
        self.stdout.write(
            "Run them with `python manage.py soniq_worker` on PostgreSQL (DATABASE_URL=...); "
            "the worker on SQLite arrives with a later release."
        )

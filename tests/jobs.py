"""Jobs the tests enqueue, registered on a fresh app per test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from soniq import JobContext, Soniq


class InvoiceArgs(BaseModel):
    customer_id: int
    amount: float = Field(gt=0)
    note: str = ""


@dataclass
class JobSet:
    app: Soniq
    send_email: Any
    process_payment: Any
    refresh_cache: Any
    build_invoice: Any
    with_context: Any
    flexible: Any


def register_jobs(app: Soniq) -> JobSet:
    @app.job(name="tests.send_email")
    async def send_email(to: str, subject: str, body: str = "") -> str:
        return f"sent {subject} to {to}"

    @app.job(
        name="tests.process_payment",
        retries=5,
        priority=10,
        queue="urgent",
        retry_delay=[1, 5, 30, 60],
        timeout=120,
    )
    async def process_payment(order_id: int, amount: float) -> None:
        return None

    @app.job(name="tests.refresh_cache", unique=True, queue="cache")
    def refresh_cache(key: str) -> None:
        return None

    @app.job(name="tests.build_invoice", validate=InvoiceArgs, max_retries=1)
    def build_invoice(customer_id: int, amount: float, note: str) -> None:
        return None

    @app.job(name="tests.with_context")
    async def with_context(value: int, ctx: JobContext) -> int:
        return value

    @app.job(name="tests.flexible")
    def flexible(**anything: Any) -> None:
        return None

    return JobSet(
        app, send_email, process_payment, refresh_cache, build_invoice, with_context, flexible
    )

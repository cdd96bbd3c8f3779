"""``django.tasks`` tasks (Django 6.0 and newer) run by real worker processes.

Each records its runs in ``soniq_test_runs`` (see ``tests.acceptance.jobs``), by its result id
and attempt, so the test process counts executions from outside the worker.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.tasks import TaskContext, task

from shop.models import Order
from soniq import JobContext
from tests.acceptance.jobs import record


def _record(label: str, context: TaskContext, **data: object) -> None:
    result = context.task_result
    ctx = JobContext(
        job_id=result.id,
        job_name=result.task.module_path,
        attempt=context.attempt,
        max_attempts=0,
        queue=result.task.queue_name,
    )
    record(label, ctx, **data)


@task(takes_context=True)
def fulfil(context: TaskContext, order_id: int) -> str:
    """A sync task with the ORM: runs in the worker's thread pool."""
    order = Order.objects.get(pk=order_id)
    _record("task.fulfil", context, order_id=order_id)
    return order.customer_email


@task(takes_context=True, queue_name="emails", priority=50)
async def greet(context: TaskContext, name: str) -> str:
    """An async task: runs on the worker's event loop."""
    await sync_to_async(_record)("task.greet", context, name=name)
    return f"hello {name}"


@task(takes_context=True, max_attempts=3, retry_delay=0.1)
def flaky(context: TaskContext) -> int:
    _record("task.flaky", context)
    if context.attempt < 3:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return context.attempt


@task(takes_context=True, max_attempts=2, retry_delay=0.1)
def doomed(context: TaskContext) -> None:
    _record("task.doomed", context)
    raise ValueError("never works")


@task(takes_context=True, max_attempts=2, retry_delay=0.1)
async def slow(context: TaskContext, seconds: float) -> str:
    await sync_to_async(_record)("task.slow.start", context)
    await asyncio.sleep(seconds)
    await sync_to_async(_record)("task.slow.end", context)
    return "slept"


@task(timeout=0.3)
async def sleepy() -> None:
    """Cancelled past its time limit."""
    await asyncio.sleep(30)

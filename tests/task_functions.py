"""``django.tasks`` tasks (Django 6.0 and newer) on the soniq backend, for the tests."""

from __future__ import annotations

from django.tasks import TaskContext, task

from soniq import Discard


@task()
def add(a: int, b: int = 0) -> int:
    return a + b


@task(queue_name="emails", priority=10)
async def greet(name: str) -> str:
    return f"hello {name}"


@task(takes_context=True, max_attempts=3, retry_delay=0)
def flaky(context: TaskContext, succeed_on: int) -> dict:
    """Fails until its attempt ``succeed_on``."""
    if context.attempt < succeed_on:
        raise ConnectionError(f"attempt {context.attempt} failed")
    seen = context.task_result
    return {
        "attempt": context.attempt,
        "result_id": seen.id,
        "errors": [error.exception_class_path for error in seen.errors],
        "workers": len(set(seen.worker_ids)),
    }


@task(max_attempts=2, retry_delay=0)
def doomed(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=3, retry_delay=0)
def gives_up(message: str) -> None:
    """Sends itself to the dead letters on its first attempt, with attempts left."""
    raise Discard(message)


@task()
def once(message: str) -> None:
    """Django's default: one attempt."""
    raise KeyError(message)


@task()
def returns_tuple() -> tuple[int, int]:
    return (1, 2)


CALLS: list[str] = []


def not_a_task() -> None:
    """A plain function: a row naming it must never make soniq call it."""
    CALLS.append("called")


@task()
def returns_int_keys() -> dict:
    return {1: "one"}


@task()
def returns_a_datetime() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)

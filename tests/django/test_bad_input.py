"""Bad input gets a typed error naming the job and the argument, and writes nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from soniq import (
    ArgumentsNotSerializableError,
    ArgumentsTooLargeError,
    EnqueueError,
    InvalidArgumentsError,
    InvalidOptionError,
    JobNotRegisteredError,
    Soniq,
    SoniqError,
)
from tests.helpers import committed_job_count
from tests.jobs import JobSet, register_jobs

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)


class Opaque:
    pass


def _send(**args: Any) -> Callable[[JobSet], str]:
    return lambda j: j.send_email.enqueue(**args)


CASES: dict[str, tuple[Callable[[JobSet], Any], type[SoniqError], str | None]] = {
    "set": (_send(to={"a"}, subject="s"), ArgumentsNotSerializableError, "args['to']"),
    "bytes": (_send(to=b"a", subject="s"), ArgumentsNotSerializableError, "args['to']"),
    "nan": (
        _send(to="a", subject="s", body=math.nan),
        ArgumentsNotSerializableError,
        "args['body']",
    ),
    "object": (_send(to="a", subject=Opaque()), ArgumentsNotSerializableError, "args['subject']"),
    "nested": (
        _send(to="a", subject="s", body={"x": [1, {2}]}),
        ArgumentsNotSerializableError,
        "args['body']['x'][1]",
    ),
    "int_key": (
        _send(to="a", subject="s", body={1: "x"}),
        ArgumentsNotSerializableError,
        "args['body']",
    ),
    "datetime": (
        _send(to="a", subject="s", body=datetime(2030, 1, 1)),
        ArgumentsNotSerializableError,
        "args['body']",
    ),
    "model_failure": (
        lambda j: j.build_invoice.enqueue(customer_id=1, amount=-5),
        InvalidArgumentsError,
        "amount",
    ),
    "nul_character": (
        _send(to="a\x00b", subject="s"),
        ArgumentsNotSerializableError,
        "args['to']",
    ),
    "model_unknown_field": (
        lambda j: j.build_invoice.enqueue(customer_id=1, amount=5, bogus=3),
        InvalidArgumentsError,
        "bogus",
    ),
    "missing_argument": (_send(to="a"), InvalidArgumentsError, "subject"),
    "unexpected_argument": (_send(to="a", subject="s", cc="b"), InvalidArgumentsError, "cc"),
    "context_argument": (
        lambda j: j.with_context.enqueue(value=1, ctx={}),
        InvalidArgumentsError,
        "ctx",
    ),
    "priority_zero": (
        lambda j: j.app.enqueue_sync(j.send_email, priority=0, to="a", subject="s"),
        InvalidOptionError,
        "priority",
    ),
    "priority_1001": (
        lambda j: j.send_email.using(priority=1001).enqueue(to="a", subject="s"),
        InvalidOptionError,
        "priority",
    ),
    "priority_text": (
        lambda j: j.app.enqueue_sync("tests.send_email", args={}, priority="5"),
        InvalidOptionError,
        "priority",
    ),
    "negative_delay": (
        lambda j: j.app.schedule_sync(j.send_email, -1, to="a", subject="s"),
        InvalidOptionError,
        "scheduled_at",
    ),
    "negative_timedelta": (
        lambda j: j.send_email.using(scheduled_at=timedelta(seconds=-5)).enqueue(
            to="a", subject="s"
        ),
        InvalidOptionError,
        "scheduled_at",
    ),
    "naive_datetime": (
        lambda j: j.app.schedule_sync(j.send_email, datetime(2030, 1, 1), to="a", subject="s"),
        InvalidOptionError,
        "scheduled_at",
    ),
    "queue_with_space": (
        lambda j: j.app.enqueue_sync(j.send_email, queue="my queue", to="a", subject="s"),
        InvalidOptionError,
        "queue",
    ),
    "queue_too_long": (
        lambda j: j.app.enqueue_sync(j.send_email, queue="q" * 64, to="a", subject="s"),
        InvalidOptionError,
        "queue",
    ),
    "queue_empty": (
        lambda j: j.app.enqueue_many_sync(j.send_email, [{"to": "a", "subject": "s"}], queue=""),
        InvalidOptionError,
        "queue",
    ),
    "dedup_key_empty": (
        lambda j: j.app.enqueue_sync(j.send_email, dedup_key="", to="a", subject="s"),
        InvalidOptionError,
        "dedup_key",
    ),
    "args_with_callable": (
        lambda j: j.app.enqueue_sync(j.send_email, args={"to": "a", "subject": "s"}),
        EnqueueError,
        "args",
    ),
    "kwargs_with_name": (
        lambda j: j.app.enqueue_sync("tests.send_email", to="a", subject="s"),
        EnqueueError,
        "subject",
    ),
    "not_a_job": (lambda j: j.app.enqueue_sync(print), JobNotRegisteredError, None),
    "bad_target": (lambda j: j.app.enqueue_sync(42), EnqueueError, "target"),
    "args_not_a_dict": (
        lambda j: j.app.enqueue_sync("tests.flexible", args=[1, 2]),
        InvalidArgumentsError,
        "args",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_anything_is_written(jobs: JobSet, alias: str, case: str) -> None:
    call, error, argument = CASES[case]
    with pytest.raises(error) as caught:
        call(jobs)
    if argument is not None:
        assert getattr(caught.value, "argument", None) == argument
        assert getattr(caught.value, "job_name", None)
    assert committed_job_count(alias) == 0


def test_arguments_over_the_size_cap(alias: str) -> None:
    jobs = register_jobs(Soniq(database=alias, max_args_bytes=1024))
    jobs.send_email.enqueue(to="a", subject="s", body="x" * 900)
    with pytest.raises(ArgumentsTooLargeError, match="MAX_ARGS_BYTES") as caught:
        jobs.send_email.enqueue(to="a", subject="s", body="x" * 1100)
    assert caught.value.job_name == "tests.send_email"
    assert committed_job_count(alias) == 1


def test_default_size_cap_is_256_kib(jobs: JobSet, alias: str) -> None:
    with pytest.raises(ArgumentsTooLargeError):
        jobs.send_email.enqueue(to="a", subject="s", body="x" * (256 * 1024))
    assert committed_job_count(alias) == 0


def test_unregistered_name_refused_when_strict(alias: str) -> None:
    jobs = register_jobs(Soniq(database=alias, strict_enqueue=True))
    with pytest.raises(JobNotRegisteredError, match=r"tests\.send_emial"):
        jobs.app.enqueue_sync("tests.send_emial", args={"to": "a"})
    jobs.app.enqueue_sync("tests.send_email", args={"to": "a", "subject": "s"})
    assert committed_job_count(alias) == 1

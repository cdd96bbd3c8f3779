"""Enqueue validation: Soniq._prepare / _prepare_many build NewJob records without any I/O.

Everything that can be wrong with an enqueue call is found here, before the database is touched.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from soniq import Soniq, TaskRef
from soniq.core.enqueue import EnqueueOptions
from soniq.core.errors import (
    ArgumentsNotSerializableError,
    ArgumentsTooLargeError,
    EnqueueError,
    InvalidArgumentsError,
    InvalidOptionError,
    JobDefinitionError,
    JobNotRegisteredError,
)
from soniq.core.records import NewJob
from tests.jobs import InvoiceArgs, JobSet, register_jobs

NO_OPTIONS = EnqueueOptions()


def _sha256_of(args: Mapping[str, Any]) -> str:
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@pytest.fixture
def jobs() -> JobSet:
    return register_jobs(Soniq(database_url="postgresql://unused"))


@pytest.fixture
def app(jobs: JobSet) -> Soniq:
    return jobs.app


def prepare(
    app: Soniq,
    target: object,
    *,
    args: Mapping[str, Any] | None = None,
    opts: EnqueueOptions = NO_OPTIONS,
    **func_kwargs: Any,
) -> NewJob:
    return app._prepare(target, args, func_kwargs, opts)


# -- the three input shapes ------------------------------------------------------------------


def test_callable_with_keyword_arguments(app: Soniq, jobs: JobSet) -> None:
    job = prepare(app, jobs.send_email, to="a@example.com", subject="Hi")
    assert isinstance(job, NewJob)
    assert isinstance(job.id, uuid.UUID)
    assert job.task_name == "tests.send_email"
    assert job.args == {"to": "a@example.com", "subject": "Hi"}
    assert job.args_json == '{"to":"a@example.com","subject":"Hi"}'
    assert job.queue == "default"
    assert job.priority == 100
    assert job.max_attempts == 4
    assert job.scheduled_at is None
    assert job.dedup_key is None


def test_string_name_with_args(app: Soniq) -> None:
    job = prepare(app, "tests.process_payment", args={"order_id": 7, "amount": 9.5})
    assert job.task_name == "tests.process_payment"
    assert job.args == {"order_id": 7, "amount": 9.5}
    assert job.queue == "urgent"
    assert job.priority == 10
    assert job.max_attempts == 6


def test_string_name_without_args_means_no_arguments(app: Soniq) -> None:
    job = prepare(app, "tests.flexible")
    assert job.args == {}
    assert job.args_json == "{}"


def test_task_ref_validates_against_its_args_model_and_applies_its_defaults(app: Soniq) -> None:
    ref = TaskRef("billing.make_invoice", args_model=InvoiceArgs, queue="billing", priority=7)
    job = prepare(app, ref, args={"customer_id": "12", "amount": "3.5"})
    assert job.task_name == "billing.make_invoice"
    assert job.args == {"customer_id": 12, "amount": 3.5, "note": ""}
    assert job.queue == "billing"
    assert job.priority == 7
    assert job.max_attempts == 4

    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, ref, args={"customer_id": 1, "amount": 0})
    assert info.value.argument == "amount"
    assert info.value.job_name == "billing.make_invoice"


def test_task_ref_without_defaults_uses_system_defaults(app: Soniq) -> None:
    job = prepare(app, TaskRef("remote.anything"), args={"free": ["form", 1]})
    assert (job.queue, job.priority, job.max_attempts) == ("default", 100, 4)
    assert job.args == {"free": ["form", 1]}


def test_task_ref_to_a_local_job_uses_the_local_spec(app: Soniq) -> None:
    job = prepare(app, TaskRef("tests.process_payment"), args={"order_id": 1, "amount": 2.0})
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", 10, 6)
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, TaskRef("tests.process_payment"), args={"order_id": 1})
    assert info.value.argument == "amount"


def test_task_ref_defaults_override_the_local_spec_and_options_override_both(app: Soniq) -> None:
    ref = TaskRef("tests.process_payment", queue="elsewhere", priority=50)
    job = prepare(app, ref, args={"order_id": 1, "amount": 2.0})
    assert (job.queue, job.priority) == ("elsewhere", 50)
    job = prepare(
        app,
        ref,
        args={"order_id": 1, "amount": 2.0},
        opts=EnqueueOptions(queue="explicit", priority=3),
    )
    assert (job.queue, job.priority) == ("explicit", 3)


def test_task_ref_refuses_bad_definitions() -> None:
    with pytest.raises(JobDefinitionError):
        TaskRef("")
    with pytest.raises(JobDefinitionError):
        TaskRef("x", queue="bad name")
    with pytest.raises(JobDefinitionError):
        TaskRef("x", priority=0)
    with pytest.raises(JobDefinitionError, match="args_model must be a pydantic BaseModel"):
        TaskRef("x", args_model=dict)  # type: ignore[arg-type]


def test_each_prepared_job_gets_a_fresh_id(app: Soniq, jobs: JobSet) -> None:
    first = prepare(app, jobs.flexible)
    second = prepare(app, jobs.flexible)
    assert first.id != second.id


# -- option precedence -----------------------------------------------------------------------


def test_queue_precedence_call_then_job_then_system(app: Soniq, jobs: JobSet) -> None:
    pay = {"order_id": 1, "amount": 1.0}
    assert prepare(app, jobs.process_payment, opts=EnqueueOptions(queue="x"), **pay).queue == "x"
    assert prepare(app, jobs.process_payment, **pay).queue == "urgent"
    assert prepare(app, jobs.flexible).queue == "default"
    assert prepare(app, jobs.flexible, opts=EnqueueOptions(queue="y")).queue == "y"


def test_priority_precedence_call_then_job_then_system(app: Soniq, jobs: JobSet) -> None:
    pay = {"order_id": 1, "amount": 1.0}
    assert (
        prepare(app, jobs.process_payment, opts=EnqueueOptions(priority=500), **pay).priority == 500
    )
    assert prepare(app, jobs.process_payment, **pay).priority == 10
    assert prepare(app, jobs.flexible).priority == 100
    assert prepare(app, jobs.flexible, opts=EnqueueOptions(priority=1)).priority == 1


def test_max_attempts_is_retries_plus_one(app: Soniq, jobs: JobSet) -> None:
    assert prepare(app, jobs.flexible).max_attempts == 4
    assert prepare(app, jobs.process_payment, order_id=1, amount=1.0).max_attempts == 6
    invoice = prepare(app, jobs.build_invoice, customer_id=1, amount=1.0)
    assert invoice.max_attempts == 2


def test_scheduled_at_is_resolved_to_utc(app: Soniq, jobs: JobSet) -> None:
    when = datetime(2031, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-4)))
    job = prepare(app, jobs.flexible, opts=EnqueueOptions(scheduled_at=when))
    assert job.scheduled_at == datetime(2031, 5, 1, 16, 0, tzinfo=UTC)
    assert job.scheduled_at is not None
    assert job.scheduled_at.tzinfo == UTC

    before = datetime.now(UTC)
    delayed = prepare(app, jobs.flexible, opts=EnqueueOptions(scheduled_at=60))
    after = datetime.now(UTC)
    assert delayed.scheduled_at is not None
    assert before + timedelta(seconds=60) <= delayed.scheduled_at <= after + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("opts", "argument"),
    [
        (EnqueueOptions(priority=0), "priority"),
        (EnqueueOptions(priority=1001), "priority"),
        (EnqueueOptions(priority="5"), "priority"),
        (EnqueueOptions(queue="bad name"), "queue"),
        (EnqueueOptions(queue="../x"), "queue"),
        (EnqueueOptions(scheduled_at=datetime(2030, 1, 1)), "scheduled_at"),
        (EnqueueOptions(scheduled_at=-1), "scheduled_at"),
        (EnqueueOptions(scheduled_at="tomorrow"), "scheduled_at"),
        (EnqueueOptions(unique="yes"), "unique"),
        (EnqueueOptions(dedup_key=""), "dedup_key"),
        (EnqueueOptions(dedup_key="k" * 256), "dedup_key"),
    ],
    ids=lambda v: repr(v) if isinstance(v, EnqueueOptions) else None,
)
def test_bad_call_options_raise_invalid_option_error(
    app: Soniq, jobs: JobSet, opts: EnqueueOptions, argument: str
) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepare(app, jobs.flexible, opts=opts)
    assert info.value.argument == argument
    assert info.value.job_name == "tests.flexible"
    assert argument in str(info.value)


def test_naive_scheduled_at_message_mentions_timezone_aware(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(InvalidOptionError, match="timezone-aware"):
        prepare(app, jobs.flexible, opts=EnqueueOptions(scheduled_at=datetime(2030, 1, 1)))


# -- deduplication ---------------------------------------------------------------------------


def test_unique_job_gets_a_sha256_dedup_key_of_its_arguments(app: Soniq, jobs: JobSet) -> None:
    job = prepare(app, jobs.refresh_cache, key="home")
    assert job.dedup_key == hashlib.sha256(b'{"key":"home"}').hexdigest()
    assert job.dedup_key == _sha256_of({"key": "home"})
    assert len(job.dedup_key) == 64
    assert job.queue == "cache"
    assert prepare(app, jobs.refresh_cache, key="home").dedup_key == job.dedup_key
    assert prepare(app, jobs.refresh_cache, key="other").dedup_key != job.dedup_key


def test_unique_dedup_key_is_independent_of_argument_order(app: Soniq, jobs: JobSet) -> None:
    unique = EnqueueOptions(unique=True)
    first = prepare(app, jobs.flexible, opts=unique, a=1, b={"y": 2, "x": 1})
    second = prepare(app, jobs.flexible, opts=unique, b={"x": 1, "y": 2}, a=1)
    assert first.dedup_key is not None
    assert first.dedup_key == second.dedup_key
    assert first.dedup_key == _sha256_of({"a": 1, "b": {"x": 1, "y": 2}})
    # The stored arguments keep the caller's order; only the hash is canonical.
    assert first.args_json != second.args_json


def test_unique_dedup_key_hashes_the_validated_arguments(app: Soniq) -> None:
    ref = TaskRef("remote.invoice", args_model=InvoiceArgs)
    coerced = prepare(
        app, ref, args={"customer_id": "5", "amount": "2"}, opts=EnqueueOptions(unique=True)
    )
    typed = prepare(
        app, ref, args={"customer_id": 5, "amount": 2.0}, opts=EnqueueOptions(unique=True)
    )
    assert coerced.dedup_key == typed.dedup_key


def test_unique_can_be_switched_per_call(app: Soniq, jobs: JobSet) -> None:
    assert (
        prepare(app, jobs.refresh_cache, opts=EnqueueOptions(unique=False), key="k").dedup_key
        is None
    )
    assert prepare(app, jobs.flexible).dedup_key is None
    assert prepare(app, jobs.flexible, opts=EnqueueOptions(unique=True)).dedup_key is not None


def test_explicit_dedup_key_passes_through(app: Soniq, jobs: JobSet) -> None:
    job = prepare(app, jobs.flexible, opts=EnqueueOptions(dedup_key="order-42"))
    assert job.dedup_key == "order-42"
    unique_job = prepare(app, jobs.refresh_cache, opts=EnqueueOptions(dedup_key="mine"), key="k")
    assert unique_job.dedup_key == "mine"


# -- signature problems ----------------------------------------------------------------------


def test_missing_argument(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, jobs.send_email, to="a@example.com")
    assert info.value.job_name == "tests.send_email"
    assert info.value.argument == "subject"
    assert "'subject' is required but missing" in str(info.value)


def test_unexpected_argument(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, jobs.send_email, to="a", subject="s", cc="b")
    assert info.value.job_name == "tests.send_email"
    assert info.value.argument == "cc"
    assert "'cc' is not a parameter of the job" in str(info.value)


def test_unexpected_argument_by_name(app: Soniq) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, "tests.send_email", args={"to": "a", "subject": "s", "bcc": "c"})
    assert info.value.argument == "bcc"


def test_passing_the_job_context_parameter_is_refused(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, jobs.with_context, value=1, ctx=None)
    assert info.value.job_name == "tests.with_context"
    assert info.value.argument == "ctx"
    assert "JobContext" in str(info.value)


def test_job_context_parameter_is_not_required(app: Soniq, jobs: JobSet) -> None:
    assert prepare(app, jobs.with_context, value=1).args == {"value": 1}


def test_var_keyword_job_accepts_any_argument(app: Soniq, jobs: JobSet) -> None:
    assert prepare(app, jobs.flexible, anything=1, goes=[2]).args == {"anything": 1, "goes": [2]}


def test_non_mapping_args_are_refused(app: Soniq) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, "tests.flexible", args=[("a", 1)])  # type: ignore[arg-type]
    assert info.value.argument == "args"


def test_non_string_argument_names_are_refused(app: Soniq) -> None:
    with pytest.raises(InvalidArgumentsError, match="argument names must be strings"):
        prepare(app, "tests.flexible", args={1: "x"})  # type: ignore[dict-item]


def test_invalid_arguments_error_is_a_value_error(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(ValueError, match="required but missing"):
        prepare(app, jobs.send_email)


# -- pydantic models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"customer_id": 1, "amount": -5}, "amount"),
        ({"customer_id": 1, "amount": 0}, "amount"),
        ({"customer_id": "abc", "amount": 5}, "customer_id"),
        ({"amount": 5}, "customer_id"),
    ],
)
def test_model_failure_names_the_field(app: Soniq, args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, "tests.build_invoice", args=args)
    assert info.value.job_name == "tests.build_invoice"
    assert info.value.argument == field
    assert "do not match InvoiceArgs" in str(info.value)
    assert field in str(info.value)


def test_model_output_is_stored_with_coerced_values(app: Soniq, jobs: JobSet) -> None:
    job = prepare(app, jobs.build_invoice, customer_id="42", amount="10.5")
    assert job.args == {"customer_id": 42, "amount": 10.5, "note": ""}
    assert json.loads(job.args_json) == {"customer_id": 42, "amount": 10.5, "note": ""}


def test_model_validated_job_refuses_arguments_its_function_does_not_take(
    app: Soniq, jobs: JobSet
) -> None:
    # Without a model, an unknown keyword is refused ("is not a parameter of the job"). With
    # one, it must not be silently dropped on the way through model_dump(): the caller would
    # believe the job received it.
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(app, jobs.build_invoice, customer_id=1, amount=2.0, notes="typo of note")
    assert info.value.argument == "notes"


# -- serialisation and size ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"items": [1, 2, {3}]}, "args['items'][2]"),
        ({"when": datetime(2024, 1, 1, tzinfo=UTC)}, "args['when']"),
        ({"payload": b"raw"}, "args['payload']"),
        ({"ratio": float("nan")}, "args['ratio']"),
        ({"lookup": {1: "one"}}, "args['lookup']"),
    ],
)
def test_non_json_arguments_are_refused_with_their_path(
    app: Soniq, jobs: JobSet, kwargs: dict[str, Any], path: str
) -> None:
    with pytest.raises(ArgumentsNotSerializableError) as info:
        prepare(app, jobs.flexible, **kwargs)
    assert info.value.argument == path
    assert info.value.job_name == "tests.flexible"
    assert path in str(info.value)
    assert isinstance(info.value, InvalidArgumentsError)


def test_tuples_are_stored_as_lists(app: Soniq, jobs: JobSet) -> None:
    job = prepare(app, jobs.flexible, pair=(1, 2))
    assert json.loads(job.args_json) == {"pair": [1, 2]}


def test_arguments_over_max_args_bytes_are_refused() -> None:
    jobs = register_jobs(Soniq(database_url="postgresql://unused", max_args_bytes=200))
    app = jobs.app
    # '{"blob":"' + text + '"}' is 11 bytes of framing.
    assert len(prepare(app, jobs.flexible, blob="x" * 189).args_json.encode()) == 200
    with pytest.raises(ArgumentsTooLargeError) as info:
        prepare(app, jobs.flexible, blob="x" * 190)
    assert info.value.job_name == "tests.flexible"
    assert info.value.argument == "args"
    assert "201 bytes" in str(info.value)
    assert "MAX_ARGS_BYTES limit of 200" in str(info.value)
    assert isinstance(info.value, InvalidArgumentsError)


def test_max_args_bytes_counts_utf8_bytes_not_characters() -> None:
    jobs = register_jobs(Soniq(database_url="postgresql://unused", max_args_bytes=200))
    # 100 two-byte characters: 111 characters of JSON, but 211 bytes.
    with pytest.raises(ArgumentsTooLargeError, match="211 bytes"):
        prepare(jobs.app, jobs.flexible, blob="é" * 100)


# -- strict and non-strict names -------------------------------------------------------------


def test_strict_enqueue_refuses_unregistered_names() -> None:
    jobs = register_jobs(Soniq(database_url="postgresql://unused", strict_enqueue=True))
    with pytest.raises(JobNotRegisteredError, match=r"no job named 'other\.service\.job'") as info:
        prepare(jobs.app, "other.service.job", args={"x": 1})
    assert "tests.send_email" in str(info.value)
    assert isinstance(info.value, LookupError)
    # Registered names and TaskRefs are still fine.
    assert prepare(jobs.app, "tests.flexible").task_name == "tests.flexible"
    assert prepare(jobs.app, TaskRef("other.service.job"), args={"x": 1}).task_name == (
        "other.service.job"
    )


def test_strict_enqueue_applies_to_enqueue_many() -> None:
    jobs = register_jobs(Soniq(database_url="postgresql://unused", strict_enqueue=True))
    with pytest.raises(JobNotRegisteredError):
        jobs.app._prepare_many("other.service.job", [{}], NO_OPTIONS)


def test_non_strict_allows_unregistered_names_with_default_options(app: Soniq) -> None:
    job = prepare(app, "other.service.job", args={"anything": [1, 2]})
    assert job.task_name == "other.service.job"
    assert job.args == {"anything": [1, 2]}
    assert (job.queue, job.priority, job.max_attempts) == ("default", 100, 4)
    assert job.dedup_key is None


@pytest.mark.parametrize("name", ["", "  ", " padded", "n" * 256])
def test_invalid_task_names_are_refused(app: Soniq, name: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepare(app, name)
    assert info.value.argument == "target"


def test_target_of_the_wrong_type_is_refused(app: Soniq) -> None:
    with pytest.raises(EnqueueError, match="cannot enqueue 42") as info:
        prepare(app, 42)
    assert info.value.argument == "target"


# -- mixing shapes ---------------------------------------------------------------------------


def test_args_with_a_callable_target_is_refused(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(EnqueueError) as info:
        prepare(app, jobs.send_email, args={"to": "a", "subject": "s"})
    assert info.value.argument == "args"
    assert info.value.job_name == "tests.send_email"


def test_function_kwargs_with_a_string_target_are_refused(app: Soniq) -> None:
    with pytest.raises(EnqueueError) as info:
        prepare(app, "tests.send_email", to="a", subject="s")
    assert info.value.argument == "subject"
    assert "args={...}" in str(info.value)
    assert "subject, to" in str(info.value)


def test_function_kwargs_with_a_task_ref_are_refused(app: Soniq) -> None:
    with pytest.raises(EnqueueError) as info:
        prepare(app, TaskRef("remote.job"), x=1)
    assert info.value.argument == "x"


def test_unregistered_plain_function_is_refused(app: Soniq) -> None:
    def not_a_job(x: int) -> None:
        return None

    with pytest.raises(JobNotRegisteredError, match="not_a_job is not a registered job"):
        prepare(app, not_a_job, x=1)


def test_function_registered_on_another_app_is_refused(jobs: JobSet) -> None:
    other_app = Soniq(database_url="postgresql://unused")
    with pytest.raises(JobNotRegisteredError):
        prepare(other_app, jobs.send_email, to="a", subject="s")


# -- enqueue_many ----------------------------------------------------------------------------


def test_prepare_many_builds_one_job_per_row_in_order(app: Soniq, jobs: JobSet) -> None:
    rows = [{"to": f"user{i}@example.com", "subject": "Hi"} for i in range(5)]
    built = app._prepare_many(jobs.send_email, rows, EnqueueOptions(queue="bulk", priority=3))
    assert [job.args["to"] for job in built] == [row["to"] for row in rows]
    assert len({job.id for job in built}) == 5
    assert {(job.queue, job.priority, job.max_attempts) for job in built} == {("bulk", 3, 4)}
    assert all(job.dedup_key is None for job in built)


def test_prepare_many_accepts_any_iterable_and_an_empty_list(app: Soniq, jobs: JobSet) -> None:
    assert app._prepare_many(jobs.flexible, [], NO_OPTIONS) == []
    built = app._prepare_many(jobs.flexible, ({"i": i} for i in range(3)), NO_OPTIONS)
    assert [job.args for job in built] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_prepare_many_by_name_and_task_ref(app: Soniq) -> None:
    by_name = app._prepare_many("tests.process_payment", [{"order_id": 1, "amount": 1}], NO_OPTIONS)
    assert by_name[0].queue == "urgent"
    by_ref = app._prepare_many(
        TaskRef("remote.invoice", args_model=InvoiceArgs),
        [{"customer_id": "1", "amount": "2"}],
        NO_OPTIONS,
    )
    assert by_ref[0].args == {"customer_id": 1, "amount": 2.0, "note": ""}


@pytest.mark.parametrize("shape", ["callable", "name", "task_ref"])
def test_prepare_many_refuses_a_unique_job(app: Soniq, jobs: JobSet, shape: str) -> None:
    target = {
        "callable": jobs.refresh_cache,
        "name": "tests.refresh_cache",
        "task_ref": TaskRef("tests.refresh_cache"),
    }[shape]
    with pytest.raises(EnqueueError, match="unique=True") as info:
        app._prepare_many(target, [{"key": "a"}], NO_OPTIONS)
    assert info.value.argument == "unique"
    assert info.value.job_name == "tests.refresh_cache"


@pytest.mark.parametrize("args_list", [{"to": "a", "subject": "s"}, "to=a", b"to=a"], ids=repr)
def test_prepare_many_refuses_a_dict_or_string_instead_of_a_list(
    app: Soniq, jobs: JobSet, args_list: Any
) -> None:
    with pytest.raises(EnqueueError, match="args_list must be a list of dicts") as info:
        app._prepare_many(jobs.send_email, args_list, NO_OPTIONS)
    assert info.value.argument == "args_list"


def test_prepare_many_refuses_bad_options(app: Soniq, jobs: JobSet) -> None:
    with pytest.raises(InvalidOptionError) as info:
        app._prepare_many(jobs.flexible, [{}], EnqueueOptions(queue="bad name"))
    assert info.value.argument == "queue"


def _good_rows() -> list[dict[str, Any]]:
    return [{"to": f"u{i}@example.com", "subject": "Hi"} for i in range(3)]


def _assert_names_row_3(error: EnqueueError) -> None:
    text = f"{error.argument} {error}"
    assert "args_list[3]" in text, f"row index missing from argument={error.argument!r} {error}"


def test_prepare_many_names_the_row_that_is_not_json(app: Soniq, jobs: JobSet) -> None:
    rows = [*_good_rows(), {"to": "x", "subject": {"a", "set"}}]
    with pytest.raises(ArgumentsNotSerializableError) as info:
        app._prepare_many(jobs.send_email, rows, NO_OPTIONS)
    assert info.value.argument == "args_list[3]['subject']"
    _assert_names_row_3(info.value)


def test_prepare_many_names_the_row_that_is_not_a_dict(app: Soniq, jobs: JobSet) -> None:
    rows: list[Any] = [*_good_rows(), ["to", "x"]]
    with pytest.raises(InvalidArgumentsError) as info:
        app._prepare_many(jobs.send_email, rows, NO_OPTIONS)
    assert info.value.argument == "args_list[3]"
    _assert_names_row_3(info.value)


def test_prepare_many_names_the_row_that_is_too_large() -> None:
    jobs = register_jobs(Soniq(database_url="postgresql://unused", max_args_bytes=200))
    rows = [{"blob": "small"}] * 3 + [{"blob": "x" * 500}]
    with pytest.raises(ArgumentsTooLargeError) as info:
        jobs.app._prepare_many(jobs.flexible, rows, NO_OPTIONS)
    assert info.value.argument == "args_list[3]"
    _assert_names_row_3(info.value)


# A row that does not fit the signature or the model is reported by argument name; the docs
# (docs/reference/api.md, enqueue_many) say the row index is not given in that case, so these
# tests only pin the argument.


def test_prepare_many_refuses_a_row_with_a_missing_argument(app: Soniq, jobs: JobSet) -> None:
    rows = [*_good_rows(), {"to": "x"}]
    with pytest.raises(InvalidArgumentsError) as info:
        app._prepare_many(jobs.send_email, rows, NO_OPTIONS)
    assert info.value.argument == "subject"
    assert info.value.job_name == "tests.send_email"


def test_prepare_many_refuses_a_row_with_an_unexpected_argument(app: Soniq, jobs: JobSet) -> None:
    rows = [*_good_rows(), {"to": "x", "subject": "s", "cc": "y"}]
    with pytest.raises(InvalidArgumentsError) as info:
        app._prepare_many(jobs.send_email, rows, NO_OPTIONS)
    assert info.value.argument == "cc"


def test_prepare_many_refuses_a_row_that_fails_its_model(app: Soniq, jobs: JobSet) -> None:
    rows = [{"customer_id": 1, "amount": 1.0}] * 3 + [{"customer_id": 1, "amount": -1}]
    with pytest.raises(InvalidArgumentsError) as info:
        app._prepare_many(jobs.build_invoice, rows, NO_OPTIONS)
    assert info.value.argument == "amount"
    assert "do not match InvoiceArgs" in str(info.value)


@pytest.mark.asyncio
async def test_a_large_enqueue_many_refuses_bad_options_before_taking_a_connection(
    jobs: JobSet,
) -> None:
    """Over 2 * ENQUEUE_BATCH rows, PostgreSQL writes while the rows are built; the target and
    its options are still checked first, with no connection taken (the URL leads nowhere)."""
    from soniq.app import ENQUEUE_BATCH
    from soniq.backends.postgres import PostgresBackend

    rows = [{"to": "a", "subject": "s"}] * (2 * ENQUEUE_BATCH + 1)
    with pytest.raises(InvalidOptionError, match="priority"):
        await jobs.app.enqueue_many(jobs.send_email, rows, priority=0)
    with pytest.raises(EnqueueError, match="unique"):
        await jobs.app.enqueue_many(jobs.refresh_cache, [{"key": "k"}] * len(rows))
    backend = jobs.app.backend
    assert isinstance(backend, PostgresBackend)
    assert backend._pool is None, "no connection may be opened for a refused call"

"""@app.job(): the JobSpec it registers, its validation, and what it gives back.

This module uses ``from __future__ import annotations`` on purpose: every annotation below is a
string, as in projects that enable postponed evaluation, so JobContext detection is exercised
through ``typing.get_type_hints``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import BaseModel

from soniq import ConfiguredJob, Discard, JobContext, Retry, Soniq
from soniq.core.context import JobContext as Ctx
from soniq.core.errors import DuplicateJobError, InvalidOptionError, JobDefinitionError
from soniq.core.spec import ArgumentContract, JobSpec


class PaymentArgs(BaseModel):
    order_id: int
    amount: float


class PoliteRetry(Retry):
    """A subclass of soniq.Retry: refused in retry_on like Retry itself."""


class OtherArgs(BaseModel):
    x: int


def module_level_job(x: int) -> int:
    return x * 2


@pytest.fixture
def app() -> Soniq:
    return Soniq(database_url="postgresql://unused")


def _spec(app: Soniq, name: str) -> JobSpec:
    spec = app.registry.get(name)
    assert spec is not None, f"{name} is not registered"
    return spec


# -- the registered spec ---------------------------------------------------------------------


def test_defaults_of_a_bare_decorator(app: Soniq) -> None:
    decorated = app.job()(module_level_job)
    name = "tests.unit.test_job_decorator.module_level_job"
    assert decorated.job_name == name
    spec = _spec(app, name)
    assert spec.name == name
    assert spec.func is module_level_job
    assert spec.retries == 3
    assert spec.max_attempts == 4
    assert spec.priority == 100
    assert spec.queue == "default"
    assert spec.unique is False
    assert spec.retry_delay == 0.0
    assert spec.retry_backoff is False
    assert spec.retry_max_delay is None
    assert spec.timeout is None
    assert spec.args_model is None
    assert spec.is_async is False
    assert spec.contract == ArgumentContract(
        required=frozenset({"x"}),
        accepted=frozenset({"x"}),
        accepts_any=False,
        context_parameter=None,
    )


def test_default_name_is_module_and_qualname_for_nested_functions(app: Soniq) -> None:
    @app.job()
    def nested(a: int) -> None:
        return None

    expected = f"{nested.__module__}.{nested.__qualname__}"
    assert expected == (
        "tests.unit.test_job_decorator."
        "test_default_name_is_module_and_qualname_for_nested_functions.<locals>.nested"
    )
    assert nested.job_name == expected
    assert expected in app.registry


def test_every_parameter_is_recorded_on_the_spec(app: Soniq) -> None:
    @app.job(
        name="billing.charge",
        retries=7,
        priority=5,
        queue="payments",
        unique=True,
        retry_delay=10,
        retry_backoff=True,
        retry_max_delay=600,
        timeout=45,
        validate=PaymentArgs,
    )
    async def charge(order_id: int, amount: float) -> None:
        return None

    spec = _spec(app, "billing.charge")
    assert spec.name == "billing.charge"
    assert spec.func is charge
    assert spec.retries == 7
    assert spec.max_attempts == 8
    assert spec.priority == 5
    assert spec.queue == "payments"
    assert spec.unique is True
    assert spec.retry_delay == 10.0
    assert isinstance(spec.retry_delay, float)
    assert spec.retry_backoff is True
    assert spec.retry_max_delay == 600.0
    assert spec.timeout == 45.0
    assert spec.args_model is PaymentArgs
    assert spec.is_async is True
    assert app.registry.for_function(charge) is spec
    assert charge.soniq_spec is spec


def test_retry_delay_list_becomes_a_tuple_of_floats(app: Soniq) -> None:
    @app.job(name="with.schedule", retry_delay=[1, 5, 30.5])
    def job() -> None:
        return None

    assert _spec(app, "with.schedule").retry_delay == (1.0, 5.0, 30.5)


def test_max_retries_is_an_alias_of_retries(app: Soniq) -> None:
    @app.job(name="alias.max_retries", max_retries=1)
    def first() -> None:
        return None

    @app.job(name="alias.both", retries=2, max_retries=2)
    def second() -> None:
        return None

    @app.job(name="alias.zero", max_retries=0)
    def third() -> None:
        return None

    assert _spec(app, "alias.max_retries").retries == 1
    assert _spec(app, "alias.max_retries").max_attempts == 2
    assert _spec(app, "alias.both").retries == 2
    assert _spec(app, "alias.zero").retries == 0
    assert _spec(app, "alias.zero").max_attempts == 1


def test_args_model_is_an_alias_of_validate(app: Soniq) -> None:
    @app.job(name="alias.args_model", args_model=PaymentArgs)
    def first(order_id: int, amount: float) -> None:
        return None

    @app.job(name="alias.same_model", validate=PaymentArgs, args_model=PaymentArgs)
    def second(order_id: int, amount: float) -> None:
        return None

    assert _spec(app, "alias.args_model").args_model is PaymentArgs
    assert _spec(app, "alias.same_model").args_model is PaymentArgs


# -- refused definitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"priority": 0}, "priority must be from 1"),
        ({"priority": 1001}, "priority must be from 1"),
        ({"priority": True}, "priority must be an integer"),
        ({"queue": "bad name"}, "queue 'bad name' is not a valid queue name"),
        ({"queue": ""}, "not a valid queue name"),
        ({"retries": -1}, "retries must be a non-negative integer"),
        ({"max_retries": -1}, "retries must be a non-negative integer"),
        ({"retries": 1.5}, "retries must be a non-negative integer"),
        ({"retries": 2, "max_retries": 3}, "disagree"),
        ({"validate": dict}, "validate must be a pydantic BaseModel subclass"),
        ({"validate": "PaymentArgs"}, "validate must be a pydantic BaseModel subclass"),
        ({"args_model": int}, "validate must be a pydantic BaseModel subclass"),
        ({"validate": PaymentArgs, "args_model": OtherArgs}, "name different models"),
        ({"timeout": 0}, "timeout must be > 0 seconds"),
        ({"timeout": -5}, "timeout must be > 0 seconds"),
        ({"timeout": float("nan")}, "timeout must be a number of seconds"),
        ({"retry_delay": []}, "retry_delay must not be an empty list"),
        ({"retry_delay": -1}, "retry_delay must be >= 0 seconds"),
        ({"retry_delay": [1, float("nan")]}, "retry_delay must be a number of seconds"),
        ({"retry_max_delay": -1}, "retry_max_delay must be >= 0 seconds"),
        ({"unique": "yes"}, "unique and retry_backoff are booleans"),
        ({"retry_backoff": 1}, "unique and retry_backoff are booleans"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": " padded"}, "without surrounding spaces"),
        ({"name": 42}, "name must be a non-empty string"),
        ({"retry_on": ()}, "retry_on must name at least one exception class"),
        ({"retry_on": "ValueError"}, r"retry_on must be exception classes .* got 'ValueError'"),
        ({"retry_on": ValueError("x")}, "retry_on must be exception classes"),
        ({"retry_on": KeyboardInterrupt}, "retry_on must be exception classes"),
        ({"no_retry_on": [ValueError, int]}, r"no_retry_on must be exception classes .*'int'"),
        ({"no_retry_on": Retry}, "no_retry_on cannot name Retry"),
        ({"retry_on": [ValueError, Discard]}, "no_retry_on cannot name Discard"),
        ({"retry_on": PoliteRetry}, "no_retry_on cannot name PoliteRetry"),
        (
            {"retry_on": (ValueError, KeyError), "no_retry_on": KeyError},
            "KeyError in both retry_on and no_retry_on",
        ),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_bad_parameters_raise_job_definition_error(
    app: Soniq, params: dict[str, Any], message: str
) -> None:
    def job(order_id: int = 0, amount: float = 0.0) -> None:
        return None

    decorator = app.job(**params)
    with pytest.raises(JobDefinitionError, match=message) as info:
        decorator(job)
    assert "@app.job() for" in str(info.value)
    assert len(app.registry) == 0


def test_retry_on_and_no_retry_on_choose_which_failures_may_be_retried(app: Soniq) -> None:
    class PartnerDown(ConnectionError):
        pass

    @app.job(name="only", retry_on=ConnectionError)
    def only() -> None: ...

    @app.job(name="never", no_retry_on=[ValueError, KeyError])
    def never() -> None: ...

    @app.job(name="both", retry_on=(OSError,), no_retry_on=(PartnerDown,))
    def both() -> None: ...

    spec = _spec(app, "only")
    assert spec.retry_on == (ConnectionError,) and spec.no_retry_on == ()
    assert spec.may_retry(PartnerDown()) and spec.may_retry(ConnectionResetError())  # subclasses
    assert not spec.may_retry(ValueError()) and not spec.may_retry(TimeoutError())
    never_spec = _spec(app, "never")
    assert never_spec.retry_on is None and never_spec.no_retry_on == (ValueError, KeyError)
    assert not never_spec.may_retry(UnicodeError())  # a ValueError
    assert never_spec.may_retry(RuntimeError())
    both_spec = _spec(app, "both")
    assert both_spec.may_retry(FileNotFoundError())
    assert not both_spec.may_retry(PartnerDown()) and not both_spec.may_retry(RuntimeError())
    assert _spec(app, "only").max_attempts == 4  # retries unchanged: they count retryable ones


def test_error_message_names_the_job(app: Soniq) -> None:
    with pytest.raises(JobDefinitionError, match=r"@app\.job\(\) for my\.job: priority"):
        app.job(name="my.job", priority=0)(module_level_job)


def test_positional_only_parameter_without_default_is_refused(app: Soniq) -> None:
    def job(order_id: int, /, amount: float) -> None:
        return None

    with pytest.raises(JobDefinitionError, match="'order_id' is positional-only"):
        app.job()(job)
    assert len(app.registry) == 0


def test_positional_only_parameter_with_default_is_allowed(app: Soniq) -> None:
    @app.job(name="posonly.default")
    def job(flag: bool = False, /, *, amount: float) -> None:
        return None

    contract = _spec(app, "posonly.default").contract
    assert contract.accepted == frozenset({"amount"})
    assert contract.required == frozenset({"amount"})


def test_decorator_without_parentheses_is_refused(app: Soniq) -> None:
    def job() -> None:
        return None

    with pytest.raises(JobDefinitionError, match="with parentheses"):
        app.job(job)
    assert len(app.registry) == 0


def test_unknown_parameter_name_is_refused_at_decoration(app: Soniq) -> None:
    with pytest.raises(JobDefinitionError, match="colour"):
        app.job(colour="red")
    assert len(app.registry) == 0


def test_decorating_something_not_callable_is_refused(app: Soniq) -> None:
    with pytest.raises(JobDefinitionError, match="must decorate a function"):
        app.job()(42)


# -- what the decorator returns --------------------------------------------------------------


def test_decorated_sync_function_is_the_same_object_and_still_callable(app: Soniq) -> None:
    def add(a: int, b: int = 1) -> int:
        return a + b

    decorated = app.job(name="math.add")(add)
    assert decorated is add
    assert decorated(2, b=3) == 5
    assert decorated(a=4) == 5
    assert decorated.job_name == "math.add"
    assert callable(decorated.enqueue)
    assert callable(decorated.aenqueue)
    assert inspect.iscoroutinefunction(decorated.aenqueue)
    assert callable(decorated.using)
    assert decorated.soniq_app is app
    assert inspect.signature(decorated) == inspect.signature(add)


@pytest.mark.asyncio
async def test_decorated_async_function_stays_a_coroutine_function(app: Soniq) -> None:
    async def double(value: int) -> int:
        return value * 2

    decorated = app.job(name="math.double")(double)
    assert decorated is double
    assert inspect.iscoroutinefunction(decorated)
    assert await decorated(21) == 42
    assert decorated.job_name == "math.double"
    assert callable(decorated.enqueue)
    assert callable(decorated.aenqueue)
    assert callable(decorated.using)
    assert _spec(app, "math.double").is_async is True


def test_using_returns_a_configured_job_and_validates_options_immediately(app: Soniq) -> None:
    @app.job(name="configurable", queue="base")
    def job(x: int) -> None:
        return None

    configured = job.using(queue="other", priority=7)
    assert isinstance(configured, ConfiguredJob)
    assert configured.spec is _spec(app, "configurable")
    assert configured.options.queue == "other"
    assert configured.options.priority == 7

    layered = configured.using(priority=9)
    assert layered.options.queue == "other"
    assert layered.options.priority == 9

    with pytest.raises(InvalidOptionError) as info:
        job.using(priority=0)
    assert info.value.argument == "priority"
    assert info.value.job_name == "configurable"
    with pytest.raises(InvalidOptionError) as queue_info:
        job.using(queue="bad name")
    assert queue_info.value.argument == "queue"


# -- the registry ----------------------------------------------------------------------------


def test_two_functions_under_one_name_raise_duplicate_job_error(app: Soniq) -> None:
    @app.job(name="shared.name")
    def first() -> None:
        return None

    def second() -> None:
        return None

    with pytest.raises(DuplicateJobError, match=r"'shared\.name' is already registered") as info:
        app.job(name="shared.name")(second)
    assert "first" in str(info.value)
    assert _spec(app, "shared.name").func is first


def test_duplicate_job_error_is_a_value_error(app: Soniq) -> None:
    app.job(name="n")(module_level_job)

    def other(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="already registered"):
        app.job(name="n")(other)


def test_re_registering_the_same_function_replaces_the_entry(app: Soniq) -> None:
    app.job(name="again", priority=5)(module_level_job)
    app.job(name="again", priority=6)(module_level_job)
    assert _spec(app, "again").priority == 6
    assert len(app.registry) == 1


def test_separate_apps_have_separate_registries() -> None:
    first_app = Soniq(database_url="postgresql://unused")
    second_app = Soniq(database_url="postgresql://unused")

    @first_app.job(name="only.first")
    def job() -> None:
        return None

    assert "only.first" in first_app.registry
    assert "only.first" not in second_app.registry


def test_registry_lists_names_sorted(app: Soniq) -> None:
    @app.job(name="b.job")
    def b() -> None:
        return None

    @app.job(name="a.job")
    def a() -> None:
        return None

    assert app.registry.names() == ["a.job", "b.job"]
    assert {spec.name for spec in app.registry} == {"a.job", "b.job"}
    assert app.registry.get("missing") is None


# -- the argument contract and JobContext detection ------------------------------------------


def test_contract_of_a_plain_signature() -> None:
    def job(a: int, b: str = "", *args: Any, c: int, d: int = 0) -> None:
        return None

    contract = ArgumentContract.of(job)
    assert contract.required == frozenset({"a", "c"})
    assert contract.accepted == frozenset({"a", "b", "c", "d"})
    assert contract.accepts_any is False
    assert contract.context_parameter is None


def test_contract_with_var_keyword_accepts_anything() -> None:
    def job(a: int, **extra: Any) -> None:
        return None

    contract = ArgumentContract.of(job)
    assert contract.accepts_any is True
    assert contract.problems({"a", "whatever"}) == []
    assert contract.problems(set()) == [("a", "is required but missing")]


def test_context_parameter_is_detected_and_excluded() -> None:
    def job(value: int, ctx: JobContext) -> None:
        return None

    contract = ArgumentContract.of(job)
    assert contract.context_parameter == "ctx"
    assert contract.required == frozenset({"value"})
    assert contract.accepted == frozenset({"value"})


def test_context_parameter_is_detected_under_any_name_and_import_alias() -> None:
    def job(run_info: Ctx, *, value: int = 0) -> None:
        return None

    assert ArgumentContract.of(job).context_parameter == "run_info"


def test_context_parameter_is_detected_in_a_string_annotation_module() -> None:
    # With postponed annotations, the annotation is the string "JobContext".
    def job(value: int, ctx: JobContext) -> None:
        return None

    assert job.__annotations__["ctx"] == "JobContext"
    assert ArgumentContract.of(job).context_parameter == "ctx"


def test_context_parameter_detected_when_other_annotations_cannot_be_resolved() -> None:
    # get_type_hints() fails on the undefined name; detection falls back to the raw strings.
    def job(value: UndefinedName, ctx: JobContext) -> None:  # type: ignore[name-defined] # noqa: F821
        return None

    contract = ArgumentContract.of(job)
    assert contract.context_parameter == "ctx"
    assert contract.accepted == frozenset({"value"})


def test_context_parameter_detected_when_job_context_is_only_imported_for_type_checking() -> None:
    # The defining module never imported JobContext at runtime (an `if TYPE_CHECKING:` import).
    namespace: dict[str, Any] = {"__name__": "jobs_with_type_checking_import"}
    exec(
        "from __future__ import annotations\n"
        "def job(value: int, context: JobContext) -> int:\n"
        "    return value\n",
        namespace,
    )
    contract = ArgumentContract.of(namespace["job"])
    assert contract.context_parameter == "context"
    assert contract.required == frozenset({"value"})


def test_no_context_parameter() -> None:
    def job(value: int, other: str) -> None:
        return None

    assert ArgumentContract.of(job).context_parameter is None


def test_two_context_parameters_are_refused(app: Soniq) -> None:
    def job(first: JobContext, second: JobContext) -> None:
        return None

    with pytest.raises(JobDefinitionError, match="several JobContext parameters"):
        app.job()(job)


def test_contract_problems_report_context_missing_and_unexpected() -> None:
    def job(a: int, b: int, ctx: JobContext) -> None:
        return None

    contract = ArgumentContract.of(job)
    assert contract.problems({"a", "b"}) == []
    assert contract.problems({"a", "b", "ctx", "zzz"}) == [
        ("ctx", "is the JobContext parameter, filled in by the worker"),
        ("zzz", "is not a parameter of the job"),
    ]
    assert contract.problems({"c"}) == [
        ("a", "is required but missing"),
        ("b", "is required but missing"),
        ("c", "is not a parameter of the job"),
    ]


def test_context_parameter_recorded_on_the_registered_spec(app: Soniq) -> None:
    @app.job(name="with.ctx")
    async def job(value: int, ctx: JobContext) -> int:
        return value

    assert _spec(app, "with.ctx").contract.context_parameter == "ctx"

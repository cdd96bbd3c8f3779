"""What ``@app.job()`` records about a job: its name, defaults and argument contract."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from soniq.core import options
from soniq.core.context import JobContext
from soniq.core.control import JobControl
from soniq.core.errors import JobDefinitionError
from soniq.core.limits import Limit, Rate, check_concurrency_limit, parse_rate


def default_task_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _context_parameter(func: Callable[..., Any], signature: inspect.Signature) -> str | None:
    """The name of the parameter annotated ``JobContext``, if any."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        # Unresolvable forward references: fall back to the raw annotations.
        hints = {name: p.annotation for name, p in signature.parameters.items()}
    found = [
        name
        for name, hint in hints.items()
        if name != "return" and (hint is JobContext or hint == "JobContext")
    ]
    if len(found) > 1:
        raise JobDefinitionError(
            f"{default_task_name(func)} declares several JobContext parameters: {found}"
        )
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class ArgumentContract:
    """The keyword arguments a job function accepts (its ``JobContext`` parameter excluded)."""

    required: frozenset[str]
    accepted: frozenset[str]
    accepts_any: bool
    context_parameter: str | None

    @classmethod
    def of(cls, func: Callable[..., Any]) -> ArgumentContract:
        signature = inspect.signature(func)
        context = _context_parameter(func, signature)
        required: set[str] = set()
        accepted: set[str] = set()
        accepts_any = False
        for param in signature.parameters.values():
            if param.name == context:
                continue
            if param.kind is param.VAR_KEYWORD:
                accepts_any = True
            elif param.kind is param.VAR_POSITIONAL:
                continue
            elif param.kind is param.POSITIONAL_ONLY:
                if param.default is param.empty:
                    raise JobDefinitionError(
                        f"{default_task_name(func)}: parameter {param.name!r} is positional-only;"
                        " jobs receive keyword arguments, so it could never be filled"
                    )
            else:
                accepted.add(param.name)
                if param.default is param.empty:
                    required.add(param.name)
        return cls(frozenset(required), frozenset(accepted), accepts_any, context)

    def problems(self, given: typing.Iterable[str]) -> list[tuple[str, str]]:
        """``(argument, problem)`` pairs for the given keyword names; empty when they fit."""
        names = set(given)
        if (
            (not self.context_parameter or self.context_parameter not in names)
            and self.required <= names
            and (self.accepts_any or names <= self.accepted)
        ):
            return []  # the usual case, settled without building the list below
        found: list[tuple[str, str]] = []
        if self.context_parameter and self.context_parameter in names:
            found.append(
                (self.context_parameter, "is the JobContext parameter, filled in by the worker")
            )
        for name in sorted(self.required - names):
            found.append((name, "is required but missing"))
        if not self.accepts_any:
            for name in sorted(names - self.accepted - {self.context_parameter}):
                found.append((name, "is not a parameter of the job"))
        return found


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A registered job. Built once at decoration time, read by enqueue and the worker."""

    name: str
    func: Callable[..., Any]
    retries: int = options.DEFAULT_RETRIES
    priority: int = options.DEFAULT_PRIORITY
    queue: str = options.DEFAULT_QUEUE
    unique: bool = False
    retry_delay: float | tuple[float, ...] = 0.0
    retry_backoff: bool = False
    retry_max_delay: float | None = None
    timeout: float | None = None
    args_model: type[BaseModel] | None = None
    contract: ArgumentContract = field(default=None, repr=False)  # type: ignore[assignment]
    # Which failures may be retried: only these exception types (and their subclasses), when
    # given; never these. A failure that may not be retried is dead-lettered at once.
    retry_on: tuple[type[Exception], ...] | None = None
    no_retry_on: tuple[type[Exception], ...] = ()
    # At most this many jobs of the task running at once, and this rate of starts, across
    # every worker (soniq.core.limits).
    concurrency_limit: int | None = None
    rate_limit: Rate | None = None
    # Whether func is a coroutine function: read for every job a worker runs, so worked out
    # once (inspect's check costs about half a microsecond).
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))

    @property
    def limit(self) -> Limit:
        return Limit(self.concurrency_limit, self.rate_limit)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def may_retry(self, error: BaseException) -> bool:
        """Whether a failure with ``error`` may be retried (attempts left or not)."""
        if self.retry_on is not None and not isinstance(error, self.retry_on):
            return False
        return not isinstance(error, self.no_retry_on)


def _checked(job: str, option: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise JobDefinitionError(f"@app.job() for {job}: {option} {exc}") from None


def build_job_spec(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    retries: int | None = None,
    max_retries: int | None = None,
    priority: int = options.DEFAULT_PRIORITY,
    queue: str = options.DEFAULT_QUEUE,
    unique: bool = False,
    retry_delay: float | list[float] | tuple[float, ...] = 0,
    retry_backoff: bool = False,
    retry_max_delay: float | None = None,
    timeout: float | None = None,
    validate: type[BaseModel] | None = None,
    args_model: type[BaseModel] | None = None,
    retry_on: Any = None,
    no_retry_on: Any = None,
    concurrency_limit: int | None = None,
    rate_limit: str | None = None,
) -> JobSpec:
    """Validate the decorator's parameters and build the spec (aliases resolved)."""
    if not callable(func):
        raise JobDefinitionError(f"@app.job() must decorate a function, got {func!r}")
    job = default_task_name(func) if name is None else name
    # A name that fails its check is shown as its repr: it may hold a NUL or a lone surrogate,
    # which would break whoever prints the message.
    job = _checked(repr(job), "name", options.check_task_name, job)
    if retries is not None and max_retries is not None and retries != max_retries:
        raise JobDefinitionError(
            f"@app.job() for {job}: retries={retries} and its alias max_retries={max_retries}"
            " disagree; pass only one"
        )
    retry_count = next((v for v in (retries, max_retries) if v is not None), None)
    if validate is not None and args_model is not None and validate is not args_model:
        raise JobDefinitionError(
            f"@app.job() for {job}: validate= and its alias args_model= name different models"
        )
    model = validate if validate is not None else args_model
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise JobDefinitionError(
            f"@app.job() for {job}: validate must be a pydantic BaseModel subclass, got {model!r}"
        )
    if not isinstance(unique, bool) or not isinstance(retry_backoff, bool):
        raise JobDefinitionError(f"@app.job() for {job}: unique and retry_backoff are booleans")
    retried = (
        None
        if retry_on is None
        else _checked(job, "retry_on", options.check_exception_types, retry_on)
    )
    never = (
        ()
        if no_retry_on is None
        else _checked(job, "no_retry_on", options.check_exception_types, no_retry_on)
    )
    control = [kind.__name__ for kind in (*(retried or ()), *never) if issubclass(kind, JobControl)]
    if control:
        raise JobDefinitionError(
            f"@app.job() for {job}: retry_on and no_retry_on cannot name {control[0]}: "
            "soniq.Retry and soniq.Discard decide for themselves"
        )
    both = sorted(kind.__qualname__ for kind in set(retried or ()) & set(never))
    if both:
        raise JobDefinitionError(
            f"@app.job() for {job}: {', '.join(both)} in both retry_on and no_retry_on"
        )
    return JobSpec(
        name=job,
        func=func,
        retries=_checked(
            job,
            "retries",
            options.check_retries,
            options.DEFAULT_RETRIES if retry_count is None else retry_count,
        ),
        priority=_checked(job, "priority", options.check_priority, priority),
        queue=_checked(job, "queue", options.check_queue, queue),
        unique=unique,
        retry_delay=_checked(job, "retry_delay", options.check_retry_delay, retry_delay),
        retry_backoff=retry_backoff,
        retry_max_delay=None
        if retry_max_delay is None
        else _checked(job, "retry_max_delay", options.check_seconds, retry_max_delay),
        timeout=None
        if timeout is None
        else _checked(
            job, "timeout", lambda v: options.check_seconds(v, allow_zero=False), timeout
        ),
        args_model=model,
        contract=ArgumentContract.of(func),
        retry_on=retried,
        no_retry_on=never,
        concurrency_limit=None
        if concurrency_limit is None
        else _checked(job, "concurrency_limit", check_concurrency_limit, concurrency_limit),
        rate_limit=None
        if rate_limit is None
        else _checked(job, "rate_limit", parse_rate, rate_limit),
    )

"""Turning an enqueue call into validated :class:`NewJob` records, before any I/O.

Everything that can be wrong with an enqueue is found here, so nothing reaches the database
unless the whole call is valid (for ``enqueue_many``: unless every row is).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from soniq.core import codec, options
from soniq.core.errors import (
    ArgumentsNotSerializableError,
    ArgumentsTooLargeError,
    EnqueueError,
    InvalidArgumentsError,
    InvalidOptionError,
    JobNotRegisteredError,
)
from soniq.core.limits import check_lock
from soniq.core.records import NewJob
from soniq.core.registry import JobRegistry
from soniq.core.spec import JobSpec
from soniq.core.taskref import TaskRef


@dataclass(frozen=True, slots=True)
class Target:
    """What an enqueue is aimed at, with the defaults that apply to it."""

    name: str
    spec: JobSpec | None
    args_model: type[BaseModel] | None
    queue: str
    priority: int
    max_attempts: int
    unique: bool
    by_callable: bool


def resolve_target(target: object, registry: JobRegistry, *, strict: bool) -> Target:
    """Resolve the three input shapes: a registered callable, a task name, a ``TaskRef``."""
    if isinstance(target, TaskRef):
        spec = registry.get(target.name)
        return _target(
            target.name,
            spec,
            model=target.args_model or (spec.args_model if spec else None),
            queue=target.queue,
            priority=target.priority,
            by_callable=False,
        )
    if isinstance(target, str):
        try:
            name = options.check_task_name(target)
        except ValueError as exc:
            raise InvalidOptionError(
                f"task name {exc}", job_name=repr(target), argument="target"
            ) from None
        spec = registry.get(name)
        if spec is None and strict:
            raise JobNotRegisteredError(
                f"no job named {name!r} is registered here and STRICT_ENQUEUE is on. "
                f"Registered: {', '.join(registry.names()) or 'none'}. Import the module that "
                "defines it, or use a TaskRef for jobs defined in another service."
            )
        return _target(name, spec, by_callable=False)
    if callable(target):
        spec = registry.for_function(getattr(target, "__wrapped_job__", target))
        if spec is None:
            qualname = getattr(target, "__qualname__", repr(target))
            raise JobNotRegisteredError(
                f"{qualname} is not a registered job of this Soniq app; "
                "decorate it with @app.job() (on this app) or enqueue it by name"
            )
        return _target(spec.name, spec, by_callable=True)
    raise EnqueueError(
        f"cannot enqueue {target!r}: pass a function decorated with @app.job(), "
        "a task name string or a TaskRef",
        job_name=repr(target),
        argument="target",
    )


def _target(
    name: str,
    spec: JobSpec | None,
    *,
    model: type[BaseModel] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    by_callable: bool,
) -> Target:
    return Target(
        name=name,
        spec=spec,
        args_model=model if model is not None else (spec.args_model if spec else None),
        queue=queue or (spec.queue if spec else options.DEFAULT_QUEUE),
        priority=priority or (spec.priority if spec else options.DEFAULT_PRIORITY),
        max_attempts=spec.max_attempts if spec else options.DEFAULT_RETRIES + 1,
        unique=spec.unique if spec else False,
        by_callable=by_callable,
    )


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-call overrides; ``None`` means "use the job's default"."""

    priority: Any = None
    queue: Any = None
    scheduled_at: Any = None
    unique: Any = None
    dedup_key: Any = None
    lock: Any = None

    def merged_over(self, base: EnqueueOptions) -> EnqueueOptions:
        """These options, falling back to ``base`` for the ones left unset."""
        return EnqueueOptions(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(_fields(self), _fields(base), strict=True)
            )
        )


def _fields(opts: EnqueueOptions) -> tuple[Any, ...]:
    return (opts.priority, opts.queue, opts.scheduled_at, opts.unique, opts.dedup_key, opts.lock)


def _option(job: str, name: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise InvalidOptionError(f"{job}: {name} {exc}", job_name=job, argument=name) from None


class JobBuilder:
    """Validates the options of one enqueue call once, then builds a job per args dict."""

    def __init__(
        self, target: Target, opts: EnqueueOptions, *, max_args_bytes: int, now: datetime
    ) -> None:
        job = target.name
        self.target = target
        self.max_args_bytes = max_args_bytes
        self.queue: str = _option(
            job,
            "queue",
            options.check_queue,
            opts.queue if opts.queue is not None else target.queue,
        )
        self.priority: int = _option(
            job,
            "priority",
            options.check_priority,
            opts.priority if opts.priority is not None else target.priority,
        )
        self.scheduled_at: datetime | None = _option(
            job, "scheduled_at", lambda v: options.resolve_run_at(v, now), opts.scheduled_at
        )
        if opts.unique is not None and not isinstance(opts.unique, bool):
            raise InvalidOptionError(
                f"{job}: unique must be True or False, got {opts.unique!r}",
                job_name=job,
                argument="unique",
            )
        self.dedup_key: str | None = (
            None
            if opts.dedup_key is None
            else _option(job, "dedup_key", options.check_dedup_key, opts.dedup_key)
        )
        self.unique = target.unique if opts.unique is None else opts.unique
        self.lock: str | None = (
            None if opts.lock is None else _option(job, "lock", check_lock, opts.lock)
        )

    @property
    def deduplicates(self) -> bool:
        return self.unique or self.dedup_key is not None

    def build(self, args: Mapping[str, Any] | None, *, where: str = "args") -> NewJob:
        job = self.target.name
        values = self._validated_args(args, where)
        try:
            codec.check_json(values, where)
        except codec.NotJSONError as exc:
            raise ArgumentsNotSerializableError(
                f"{job}: argument {exc}", job_name=job, argument=exc.path
            ) from None
        args_json = codec.dumps(values)
        # A character is at most 4 bytes in UTF-8: encode (a copy) only when it may matter.
        size = len(args_json)
        if size * 4 > self.max_args_bytes:
            size = len(args_json.encode())
        if size > self.max_args_bytes:
            raise ArgumentsTooLargeError(
                f"{job}: arguments are {size} bytes as JSON, over the MAX_ARGS_BYTES limit of "
                f"{self.max_args_bytes}; store large data elsewhere and pass a reference (an id)",
                job_name=job,
                argument=where,
            )
        dedup_key = self.dedup_key
        if dedup_key is None and self.unique:
            dedup_key = hashlib.sha256(codec.canonical_dumps(values).encode()).hexdigest()
        return NewJob(
            id=uuid.uuid4(),
            task_name=job,
            args=values,
            args_json=args_json,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.target.max_attempts,
            scheduled_at=self.scheduled_at,
            dedup_key=dedup_key,
            lock=self.lock,
        )

    def _validated_args(self, args: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
        job = self.target.name
        # For enqueue_many the row position leads the message: "args_list[3]: ...".
        prefix = f"{job}: " if where == "args" else f"{job}: {where}: "
        if args is None:
            args = {}
        # A dict first: the check against the Mapping ABC costs more than the rest of this.
        if type(args) is not dict and not isinstance(args, Mapping):
            raise InvalidArgumentsError(
                f"{job}: {where} must be a dict of keyword arguments, got {type(args).__name__}",
                job_name=job,
                argument=where,
            )
        values = dict(args)
        for key in values:
            if not isinstance(key, str):
                raise InvalidArgumentsError(
                    f"{prefix}argument names must be strings, got {key!r}",
                    job_name=job,
                    argument=repr(key),
                )
        model = self.target.args_model
        if model is not None:
            values = self._through_model(model, values, prefix)
        if self.target.spec is not None:
            problems = self.target.spec.contract.problems(values)
            if problems:
                argument = problems[0][0]
                listed = "; ".join(f"{name!r} {text}" for name, text in problems)
                raise InvalidArgumentsError(f"{prefix}{listed}", job_name=job, argument=argument)
        return values

    def _through_model(
        self, model: type[BaseModel], values: dict[str, Any], prefix: str
    ) -> dict[str, Any]:
        """Validate with the job's pydantic model; what is stored is the model's JSON dump."""
        job = self.target.name
        if model.model_config.get("extra") != "allow":
            # pydantic ignores unknown fields by default: refuse them here, or a misspelt
            # argument would vanish without a word.
            known = set(model.model_fields) | {
                field.alias for field in model.model_fields.values() if field.alias
            }
            unknown = sorted(set(values) - known)
            if unknown:
                raise InvalidArgumentsError(
                    f"{prefix}{', '.join(map(repr, unknown))} not a field of {model.__name__}",
                    job_name=job,
                    argument=unknown[0],
                )
        try:
            return model.model_validate(values).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            argument = ".".join(str(p) for p in first["loc"]) or "args"
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(args)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidArgumentsError(
                f"{prefix}arguments do not match {model.__name__}: {details}",
                job_name=job,
                argument=argument,
            ) from None

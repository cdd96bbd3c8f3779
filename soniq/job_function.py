"""What ``@app.job()`` gives back: the same function, plus Django-style enqueue methods."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from soniq.core.enqueue import EnqueueOptions
from soniq.core.spec import JobSpec

if TYPE_CHECKING:
    from soniq.app import Soniq

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class ConfiguredJob:
    """A job with enqueue options fixed by ``.using(...)``; every keyword is a job argument."""

    app: Soniq
    spec: JobSpec
    options: EnqueueOptions = field(default_factory=EnqueueOptions)
    connection: Any = None

    def using(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        scheduled_at: Any = None,
        dedup_key: str | None = None,
        unique: bool | None = None,
        lock: str | None = None,
        connection: Any = None,
    ) -> ConfiguredJob:
        """A copy with these options layered over the ones already set."""
        options = EnqueueOptions(
            priority=priority,
            queue=queue,
            scheduled_at=scheduled_at,
            unique=unique,
            dedup_key=dedup_key,
            lock=lock,
        ).merged_over(self.options)
        configured = replace(
            self,
            options=options,
            connection=connection if connection is not None else self.connection,
        )
        # Validate now, so a bad option fails where it was written, not at a later enqueue.
        self.app._check_options(self.spec, options)
        return configured

    def enqueue(self, **kwargs: Any) -> str:
        """Enqueue from sync code; inside Django it joins the current transaction."""
        return self.app._submit_sync(self.spec, kwargs, self.options, self.connection)

    async def aenqueue(self, **kwargs: Any) -> str:
        """Enqueue from async code."""
        return await self.app._submit(self.spec, kwargs, self.options, self.connection)


class JobFunction(Protocol[P, R_co]):
    """The decorated function: still callable as before, with enqueue methods attached."""

    job_name: str
    soniq_spec: JobSpec
    soniq_app: Soniq

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def enqueue(self, **kwargs: Any) -> str: ...

    async def aenqueue(self, **kwargs: Any) -> str: ...

    def using(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        scheduled_at: Any = None,
        dedup_key: str | None = None,
        unique: bool | None = None,
        lock: str | None = None,
        connection: Any = None,
    ) -> ConfiguredJob: ...


def attach_job_methods(app: Soniq, spec: JobSpec) -> JobFunction[Any, Any]:
    """Return ``spec.func`` itself, with ``enqueue``/``aenqueue``/``using`` attached.

    The function object is kept (not wrapped) so that calling it, ``inspect``, pickling by
    name and ``asyncio.iscoroutinefunction`` behave exactly as before decoration.
    """
    func: Callable[..., Any] = spec.func
    unconfigured = ConfiguredJob(app, spec)
    func.job_name = spec.name  # type: ignore[attr-defined]
    func.soniq_spec = spec  # type: ignore[attr-defined]
    func.soniq_app = app  # type: ignore[attr-defined]
    func.enqueue = unconfigured.enqueue  # type: ignore[attr-defined]
    func.aenqueue = unconfigured.aenqueue  # type: ignore[attr-defined]
    func.using = unconfigured.using  # type: ignore[attr-defined]
    return cast("JobFunction[Any, Any]", func)

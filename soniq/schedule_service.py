"""``app.scheduler``: schedules computed at run time, stored in ``soniq_schedules``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from soniq.backends.base import SchedulerBackend, ScheduleStore, StorageBackend
from soniq.core.errors import ConfigurationError, JobDefinitionError
from soniq.core.periodic import Schedule, build_definition, next_slot
from soniq.core.taskref import TaskRef

if TYPE_CHECKING:
    from soniq.app import Soniq

STATUSES = ("active", "paused")


def resolve_task_name(app: Soniq, target: Any) -> str:
    if isinstance(target, TaskRef):
        return target.name
    if isinstance(target, str):
        return target
    if callable(target):
        spec = app.registry.for_function(target)
        if spec is None:
            raise JobDefinitionError(f"{target!r} is not a registered job of this app")
        return spec.name
    raise JobDefinitionError(f"target must be a job, a task name or a TaskRef, got {target!r}")


class SchedulerService:
    """Add, pause, resume, remove and read schedules. Keyed by the resolved task name (or
    ``name=``); adding a name again updates that schedule in place."""

    def __init__(
        self,
        app: Soniq,
        store: ScheduleStore | None = None,
        jobs: StorageBackend | None = None,
    ) -> None:
        self.app = app
        self._backend: SchedulerBackend | None = None
        # The admin reads and changes schedules, and enqueues run-now jobs, on Django's
        # connection (a store and a job backend of its own, inside the request's transaction);
        # otherwise schedules live behind the app's scheduler backend, opened on first use,
        # and jobs go where the app enqueues them.
        self._store = store
        self._jobs = jobs

    def backend(self) -> SchedulerBackend:
        if self._backend is None:
            backend = self.app.worker_backend(1)
            if not isinstance(backend, SchedulerBackend):
                raise ConfigurationError(
                    f"schedules need a backend that stores them; {type(backend).__name__} "
                    "does not: use PostgreSQL or SQLite"
                )
            self._backend = backend
        return self._backend

    async def add(
        self,
        target: Any = None,
        *,
        name: str | None = None,
        cron: Any = None,
        every: Any = None,
        args: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
        catch_up_window: float | None = None,
    ) -> Schedule:
        if target is None and name is None:
            raise JobDefinitionError(
                "scheduler.add() needs a target (job, task name, TaskRef) or name="
            )
        task_name = resolve_task_name(self.app, target if target is not None else name)
        definition = build_definition(
            name=name or task_name,
            task_name=task_name,
            cron=cron,
            every=every,
            timezone=timezone,
            args=args,
            queue=queue,
            priority=priority,
            catch_up=catch_up,
            catch_up_window=catch_up_window,
        )
        # A dry run of the job a slot would enqueue: bad args fail now, not at fire time.
        self.app.make_scheduled_job(definition, datetime.now(UTC))
        backend = self.backend()
        await backend.upsert_schedule(
            definition, source="api", next_fire_at=next_slot(definition, datetime.now(UTC))
        )
        stored = await backend.get_schedule(definition.name)
        assert stored is not None
        return stored

    def store(self) -> ScheduleStore:
        return self._store if self._store is not None else self.backend()

    async def pause(self, name: str) -> None:
        await self._require(name)
        await self.store().set_schedule_status(name, "paused")

    async def resume(self, name: str) -> None:
        """Active again from now on: slots that fell while it was paused are not fired. An
        active schedule is left as it is (its due slot must not be skipped)."""
        schedule = await self._require(name)
        if not schedule.paused:
            return
        upcoming = next_slot(schedule.definition, datetime.now(UTC))
        await self.store().set_schedule_status(name, "active", upcoming)

    async def run_now(self, name: str) -> str:
        """Enqueue one job of the schedule now (its args, queue and priority), outside its
        timing: the next slot still fires as planned. Returns the job id."""
        schedule = await self._require(name)
        job = self.app.make_scheduled_job(schedule.definition, datetime.now(UTC))
        backend = self._jobs if self._jobs is not None else self.app.backend
        [job_id] = await backend.insert_jobs([job])
        return job_id

    async def remove(self, name: str) -> None:
        await self._require(name)
        await self.store().delete_schedule(name)

    async def list(self, status: str | None = None) -> list[Schedule]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} or None, got {status!r}")
        return await self.store().list_schedules(status)

    async def get(self, name: str) -> Schedule | None:
        return await self.store().get_schedule(name)

    async def _require(self, name: str) -> Schedule:
        schedule = await self.store().get_schedule(name)
        if schedule is None:
            raise LookupError(f"no schedule named {name!r}")
        return schedule

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

"""The scheduler's loop against a fake backend: back-off after errors, the lease handed to the
backend, a tick that outlived its lease logged as a warning, and the wait between ticks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soniq.core.periodic import Schedule, ScheduleDefinition
from soniq.core.records import NewJob
from soniq.scheduler import Scheduler

Fired = list[tuple[str, datetime, str]]


class FakeBackend:
    """Runs ``script``: one entry per tick, an exception to raise or the list to return."""

    def __init__(self, script: list[BaseException | Fired], due: datetime | None = None) -> None:
        self.script = script
        self.due = due
        self.ticks: list[float] = []
        self.leases: list[float | None] = []
        self.on_empty: Callable[[], None] = lambda: None

    async def upsert_schedule(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def get_schedule(self, name: str) -> Schedule | None:
        return None

    async def list_schedules(self, status: str | None = None) -> list[Schedule]:
        return []

    async def set_schedule_status(self, *args: Any) -> bool:
        return False

    async def delete_schedule(self, name: str) -> bool:
        return False

    async def next_due_at(self) -> datetime | None:
        return self.due

    async def fire_due_schedules(
        self,
        now: datetime,
        make_job: Callable[[ScheduleDefinition, datetime], NewJob],
        limit: int = 100,
        *,
        lease: float | None = None,
    ) -> Fired:
        self.ticks.append(time.monotonic())
        self.leases.append(lease)
        if not self.script:
            self.on_empty()
            return []
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def close(self) -> None:
        return None


def _make_job(definition: ScheduleDefinition, slot: datetime) -> NewJob:
    raise AssertionError("not called by the fake backend")


def _run(scheduler: Scheduler, backend: FakeBackend) -> None:
    backend.on_empty = scheduler.stop

    async def go() -> None:
        await asyncio.wait_for(scheduler.run(), 10)

    asyncio.run(go())


def test_errors_back_off_from_a_tenth_of_a_second_and_reset_after_a_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot = datetime.now(UTC)
    backend = FakeBackend(
        [
            RuntimeError("down"),
            RuntimeError("down"),
            RuntimeError("down"),
            RuntimeError("down"),
            [("s", slot, "job")],
            RuntimeError("down again"),
        ]
    )
    scheduler = Scheduler(backend, [], _make_job, tick=0.05, lease=2.5, error_retry_delay=0.3)
    with caplog.at_level(logging.INFO, logger="soniq.scheduler"):
        _run(scheduler, backend)
    gaps = [round(b - a, 2) for a, b in zip(backend.ticks, backend.ticks[1:], strict=False)]
    # 0.1, 0.2, then the cap 0.3; the tick in between succeeded, so back to 0.1 after it.
    assert gaps[:4] == pytest.approx([0.1, 0.2, 0.3, 0.3], abs=0.04)
    assert gaps[5] == pytest.approx(0.1, abs=0.04)
    assert set(backend.leases) == {2.5}
    failures = [r for r in caplog.records if "tick failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR] * 5
    assert "retrying in 0.1s" in failures[0].getMessage()


def test_a_tick_that_outlived_its_lease_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend([TimeoutError("the tick outlived its lease (2s)")])
    scheduler = Scheduler(backend, [], _make_job, tick=0.05, lease=2, error_retry_delay=5)
    with caplog.at_level(logging.INFO, logger="soniq.scheduler"):
        _run(scheduler, backend)
    [record] = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "outlived its lease (2s)" in record.getMessage()
    assert "retrying in 0.1s" in record.getMessage()


def test_a_slot_due_but_not_fired_is_looked_at_again_a_tick_later() -> None:
    """Another scheduler holds the due schedule: ticking again at once would spin."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    backend = FakeBackend([[], [], []], due=due)
    scheduler = Scheduler(backend, [], _make_job, tick=0.1)
    _run(scheduler, backend)
    gaps = [b - a for a, b in zip(backend.ticks, backend.ticks[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 0.09


def test_a_tick_that_fired_looks_again_at_once_while_slots_are_due() -> None:
    """A tick that stopped halfway through a long catch-up: the next one follows at once."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    fired: Fired = [("s", due, "job")]
    backend = FakeBackend([fired, fired, fired], due=due)
    scheduler = Scheduler(backend, [], _make_job, tick=1.0)
    _run(scheduler, backend)
    gaps = [b - a for a, b in zip(backend.ticks, backend.ticks[1:], strict=False)]
    assert len(gaps) == 3 and max(gaps) < 0.05


def test_lease_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lease"):
        Scheduler(FakeBackend([]), [], _make_job, lease=0)

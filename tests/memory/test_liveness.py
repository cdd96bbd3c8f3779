"""The worker's lease, on the memory backend: heartbeats go on while a recovery pass is slow,
and a late answer to an old heartbeat never renews the lease as if it were a new one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from soniq.backends.memory import MemoryBackend
from soniq.core.records import RecoveryReport, WorkerInfo
from soniq.core.settings import SoniqSettings
from soniq.worker.liveness import Liveness
from tests.helpers import eventually

# Without a session the lease is 0.75 x HEARTBEAT_TIMEOUT = 0.3 s.
SETTINGS = SoniqSettings(heartbeat_interval=0.1, heartbeat_timeout=0.4, cleanup_interval=60)


def info() -> WorkerInfo:
    return WorkerInfo(
        id="00000000-0000-4000-8000-000000000001",
        hostname="test",
        pid=1,
        queues=None,
        task_names=("t",),
        concurrency=1,
        version="test",
    )


@asynccontextmanager
async def alive(
    backend: MemoryBackend, on_fenced: Callable[[], None] = lambda: None
) -> AsyncIterator[Liveness]:
    liveness = Liveness(
        backend,
        info(),
        SETTINGS,
        asyncio.Event(),
        session=False,
        listen=False,
        in_flight=list,
        on_presumed_dead=lambda: "00000000-0000-4000-8000-000000000002",
        on_fenced=on_fenced,
    )
    await liveness.start()
    try:
        yield liveness
    finally:
        await liveness.stop()


@pytest.mark.asyncio
async def test_a_slow_recovery_pass_does_not_hold_up_the_heartbeats() -> None:
    backend = MemoryBackend()
    beats: list[float] = []
    heartbeat, recover = backend.heartbeat, backend.recover_stale_workers

    async def counted(worker_id: str) -> str | None:
        beats.append(time.monotonic())
        return await heartbeat(worker_id)

    async def slow(**kwargs: float) -> RecoveryReport:
        await asyncio.sleep(1.0)  # a recovery pass with a lot to do
        return await recover(**kwargs)  # type: ignore[arg-type]

    backend.heartbeat = counted  # type: ignore[method-assign]
    backend.recover_stale_workers = slow  # type: ignore[method-assign]
    fenced: list[bool] = []
    async with alive(backend, on_fenced=lambda: fenced.append(True)):
        await eventually(lambda: len(beats) >= 8, within=5)
    assert not fenced, "a healthy worker never fences itself"


@pytest.mark.asyncio
async def test_a_late_answer_to_an_old_heartbeat_does_not_renew_the_lease() -> None:
    backend = MemoryBackend()
    heartbeat = backend.heartbeat
    sent: list[float] = []
    gates: list[asyncio.Event] = []  # one per heartbeat; open ones answer at once

    async def gated(worker_id: str) -> str | None:
        sent.append(time.monotonic())
        gate = asyncio.Event()
        if not holding:
            gate.set()
        gates.append(gate)
        await gate.wait()
        return await heartbeat(worker_id)

    holding = False
    backend.heartbeat = gated  # type: ignore[method-assign]
    fenced: list[bool] = []
    async with alive(backend, on_fenced=lambda: fenced.append(True)) as liveness:
        await eventually(lambda: len(sent) >= 2)
        holding = True  # from now on each heartbeat waits for its gate
        await eventually(lambda: fenced, within=5)
        old = len(sent) - 1
        held_since = sent[old]
        await asyncio.sleep(0.5)  # the held heartbeat is waited for again, not sent again
        assert len(sent) == old + 1, "no new heartbeat while one is in flight"
        gates[old].set()  # the old heartbeat is answered now, long after it was sent
        await eventually(lambda: len(sent) > old + 1, within=5)  # and a new one goes out
        # Renewed only as of when the old heartbeat was sent (just before it reached the
        # backend), although it was answered now.
        assert held_since - 0.05 < liveness.confirmed_at <= held_since
        assert liveness.fenced and not liveness.may_start()
        gates[-1].set()  # a heartbeat sent since is answered
        await eventually(lambda: not liveness.fenced, within=5)
        assert liveness.confirmed_at > held_since
        assert liveness.may_start()

"""Jobs for ``benchmarks/network_faults.py``, run by the standalone ``soniq worker`` processes it
starts (``SONIQ_JOBS_MODULES=benchmarks.network_fault_jobs``, the repository root on
``PYTHONPATH``); the benchmark enqueues them by name.

Every run appends what happens to it to the file named by ``NETBENCH_TALLY``, one line per
event: ``time.time()`` (6 decimals), the process id, the event (``start``, ``cancelled`` or
``end``), the job id and the attempt. All the processes of a scenario run on this machine, so
their wall clocks line up with the benchmark's.

- ``netbench.long(seconds)``: async; sleeps ``seconds``, or at most ``NETBENCH_RERUN_SECONDS``
  when the worker has that variable set (the benchmark sets it on the worker that takes over
  the jobs of a cut-off one, so that it does not spend 10 x 20 s running them again one at a
  time). A cancellation is recorded (``cancelled``) and re-raised. Returns ``{"pid": ...}``:
  which process's completion the database kept.
- ``netbench.quick()``: async; records its start and returns at once.
- ``netbench.wait_for_file(path)``: sync; runs until ``path`` exists, then returns it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from soniq import JobContext, Soniq

TALLY_ENV = "NETBENCH_TALLY"
RERUN_ENV = "NETBENCH_RERUN_SECONDS"
LONG = "netbench.long"
QUICK = "netbench.quick"

app = Soniq()


def _tally(event: str, ctx: JobContext) -> None:
    line = f"{time.time():.6f} {os.getpid()} {event} {ctx.job_id} {ctx.attempt}\n"
    with open(os.environ[TALLY_ENV], "a") as tally:
        tally.write(line)


@app.job(name=LONG, retries=5, timeout=600)
async def long(seconds: float, ctx: JobContext) -> dict[str, int]:
    _tally("start", ctx)
    cap = os.environ.get(RERUN_ENV)
    try:
        await asyncio.sleep(min(seconds, float(cap)) if cap else seconds)
    except asyncio.CancelledError:
        _tally("cancelled", ctx)
        raise
    _tally("end", ctx)
    return {"pid": os.getpid()}


@app.job(name=QUICK)
async def quick(ctx: JobContext) -> None:
    _tally("start", ctx)


@dataclass(frozen=True)
class Event:
    at: float
    pid: int
    what: str
    job_id: str
    attempt: int


def read_tally(path: Path) -> list[Event]:
    """The events written so far (a line being written is skipped)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            at, pid, what, job_id, attempt = parts
            found.append(Event(float(at), int(pid), what, job_id, int(attempt)))
    return found


WAIT_FOR_FILE = "netbench.wait_for_file"


@app.job(name=WAIT_FOR_FILE, retries=0, timeout=600)
def wait_for_file(path: str, ctx: JobContext) -> str:
    """Sync; runs until ``path`` exists (looked for every 20 ms), then returns it: a job whose
    end the test chooses, e.g. after the database went away."""
    _tally("start", ctx)
    while not os.path.exists(path):
        time.sleep(0.02)
    _tally("end", ctx)
    return path

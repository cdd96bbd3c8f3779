"""Jobs for the network fault tests (standalone ``soniq worker``, no Django): each run writes
what happened to it, with wall-clock times, to the file named by SONIQ_TEST_TALLY, so that
runs in several processes can be lined up."""

from __future__ import annotations

import asyncio
import os
import time

from soniq import JobContext, Soniq

app = Soniq()


def _tally(event: str, ctx: JobContext) -> None:
    line = f"{time.time():.6f} {os.getpid()} {event} {ctx.job_id} {ctx.attempt}\n"
    with open(os.environ["SONIQ_TEST_TALLY"], "a") as tally:
        tally.write(line)


@app.job(name="net.long", retries=5, timeout=600)
async def long(seconds: float, ctx: JobContext) -> str:
    _tally("start", ctx)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _tally("cancelled", ctx)
        raise
    _tally("end", ctx)
    return "slept"


@app.job(name="net.quick")
async def quick(ctx: JobContext) -> None:
    _tally("start", ctx)

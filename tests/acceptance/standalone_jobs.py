"""Jobs for the standalone ``soniq worker`` test: no Django anywhere in the process."""

from __future__ import annotations

import os

from soniq import JobContext, Soniq

app = Soniq()


@app.job(name="standalone.double")
async def double(n: int, ctx: JobContext) -> dict[str, int]:
    return {"n": n * 2, "pid": os.getpid(), "attempt": ctx.attempt}


@app.periodic(every=1, name="standalone.heartbeat")
async def heartbeat() -> str:
    return "beat"

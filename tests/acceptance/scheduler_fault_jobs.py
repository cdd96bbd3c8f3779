"""A schedule for the scheduler fault test: every second, every missed slot caught up."""

from __future__ import annotations

from soniq import Soniq

app = Soniq()


@app.periodic(every=1, name="fault.second", catch_up="all", catch_up_window=3600)
async def second() -> None:
    return None

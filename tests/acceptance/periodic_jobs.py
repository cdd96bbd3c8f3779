"""Periodic jobs for the scheduler process tests."""

from __future__ import annotations

from datetime import timedelta

from soniq import Soniq

app = Soniq()


@app.periodic(every=timedelta(seconds=1), name="periodic.second")
async def every_second() -> None:
    return None


@app.periodic(cron="*/5 * * * *", name="periodic.five_minutes", timezone="Europe/Paris")
def every_five_minutes() -> None:
    return None

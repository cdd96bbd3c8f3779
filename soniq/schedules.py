"""Builders for recurring-job schedules: ``from soniq.schedules import daily, every, ...``.

Each terminal returns a plain ``str`` cron expression (``every(n).seconds()`` a
``timedelta``), so ``cron=daily().at("09:00")`` plugs straight into
``@app.periodic(cron=...)`` or ``app.scheduler.add(cron=...)``::

    every(5).minutes()                 # "*/5 * * * *"
    every(2).hours()                   # "0 */2 * * *"
    every(30).seconds()                # timedelta(seconds=30)
    daily().at("09:00")                # "0 9 * * *"
    weekly().on("monday").at("09:00")  # "0 9 * * 1"
    monthly().on_day(15).at("12:00")   # "0 12 15 * *"
    cron("*/15 * * * *")               # "*/15 * * * *"

See :mod:`soniq.core.cron` for the conventions and the validation rules.
"""

from soniq.core.cron import (
    InvalidScheduleError,
    cron,
    daily,
    every,
    monthly,
    validate_cron,
    weekly,
)

__all__ = [
    "InvalidScheduleError",
    "cron",
    "daily",
    "every",
    "monthly",
    "validate_cron",
    "weekly",
]

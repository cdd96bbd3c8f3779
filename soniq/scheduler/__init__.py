"""The scheduler runtime. Django-free: it is handed a backend and never imports one."""

from soniq.scheduler.scheduler import Scheduler

__all__ = ["Scheduler"]

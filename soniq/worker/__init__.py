"""The async worker runtime. Django-free: it is handed a backend and never imports one."""

from soniq.worker.worker import Worker

__all__ = ["Worker"]

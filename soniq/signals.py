"""Django signals sent by the worker, one per job event.

Receivers run on Django's sync thread (through ``sync_to_async``), so they may use the ORM.
Each gets ``sender`` (the :class:`~soniq.Soniq` app) and ``context`` (a ``JobContext``);
``job_succeeded`` also gets ``result``, ``job_failed`` gets ``exception``.
"""

from django.dispatch import Signal

job_started = Signal()
job_succeeded = Signal()
job_failed = Signal()

__all__ = ["job_failed", "job_started", "job_succeeded"]

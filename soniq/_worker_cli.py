"""Flags and the run shared by ``manage.py soniq_worker`` and ``soniq worker``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from soniq.core.settings import QUEUE_NAME_RULE, is_valid_queue_name

if TYPE_CHECKING:
    from soniq.app import Soniq


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        help="Jobs run at once (default: CONCURRENCY, 4).",
    )
    parser.add_argument(
        "--queues", type=_queue_list, default=None, help="Comma-separated queues (default: all)."
    )
    parser.add_argument(
        "--run-once", action="store_true", help="Process the jobs that are due, then exit."
    )
    parser.add_argument("--app", default=None, help="The Soniq app as 'module:attribute'.")
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="Serve Prometheus metrics on this port (needs the prometheus extra).",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1 to 65535, got {value}")
    return value


def _queue_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one queue")
    for name in names:
        if not is_valid_queue_name(name):
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a valid queue name ({QUEUE_NAME_RULE})"
            )
    return names


def configure_logging(verbosity: int = 1) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbosity > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


# After the worker shut its job thread pool down, how long its threads get to exit before those
# still alive count as running a job. An idle pool thread exits at once, but not before it is
# scheduled: counting right away would take idle threads for stuck ones.
THREAD_EXIT_GRACE = 1.0


def run(
    app: Soniq,
    concurrency: int | None,
    queues: list[str] | None,
    run_once: bool,
    metrics_port: int | None = None,
    metrics_database: str | None = None,
) -> bool:
    # What exists by now (the jobs modules, Django, the libraries) lives as long as the
    # worker: keep it out of the collector's full passes, which would otherwise rescan it
    # while the worker allocates a few objects per job (about 1 µs per no-op job, measured).
    # Collected first, so that no garbage is frozen; thawed after, for a caller that goes on
    # (call_command("soniq_worker") in a process of its own).
    gc.collect()
    gc.freeze()
    try:
        ran = asyncio.run(
            app.run_worker(
                concurrency=concurrency,
                run_once=run_once,
                queues=queues,
                metrics_port=metrics_port,
                metrics_database=metrics_database,
            )
        )
    finally:
        gc.unfreeze()
    stuck = job_threads_left(THREAD_EXIT_GRACE)
    if stuck:
        # A sync job that outlived its timeout or the shutdown cannot be interrupted; its job
        # is already back in the queue. Do not let it hold the process open.
        logging.getLogger("soniq.worker").warning(
            "%d job thread(s) still running at exit; leaving them", stuck
        )
        logging.shutdown()
        os._exit(0)
    return ran


def job_threads_left(grace: float) -> int:
    """How many of the worker's job threads (``soniq-job*``) are still running a job: the
    threads that have not exited within ``grace`` seconds, all told, of the pool's shutdown.
    Threads running nothing exit at once; one that finishes its job meanwhile is not left."""
    deadline = time.monotonic() + grace
    left = 0
    for thread in threading.enumerate():
        if thread.name.startswith("soniq-job"):
            thread.join(max(0.0, deadline - time.monotonic()))
            left += thread.is_alive()
    return left

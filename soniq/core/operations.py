"""What an operator can do to jobs by hand, and how a refusal is explained.

The transitions themselves are SQL in ``soniq.backends`` (next to the worker's own); this module
holds what both the facade and the admin need without any I/O: the outcome of an action, and
the sentence that tells an operator why a job was left alone.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

# How many ids one statement takes; bigger selections run in several transactions.
BATCH_SIZE = 1000


class JobState(NamedTuple):
    """Where a job stands, read after an action skipped it, to explain why."""

    id: str
    status: str  # a soniq_jobs status, or "dead_letter"
    worker_status: str | None  # of the worker holding a processing job ("running", "dead", ...)
    worker_label: str | None  # "host:pid" of that worker
    key_taken: bool  # another queued or running job holds this job's dedup key


@dataclass(frozen=True)
class ActionResult:
    """Which jobs an action changed, and why it left the others alone (id -> reason)."""

    applied: tuple[str, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)
    # Queues that got jobs back: workers without LISTEN are woken on these after commit.
    queues: frozenset[str] = frozenset()

    def merge(self, other: ActionResult) -> ActionResult:
        return ActionResult.combine([self, other])

    @staticmethod
    def combine(results: Iterable[ActionResult]) -> ActionResult:
        """One result for many batches, built in one pass (merging pairwise would copy the
        growing tuple once per batch)."""
        applied: list[str] = []
        refused: dict[str, str] = {}
        queues: set[str] = set()
        for result in results:
            applied.extend(result.applied)
            refused.update(result.refused)
            queues.update(result.queues)
        return ActionResult(tuple(applied), refused, frozenset(queues))

    def __bool__(self) -> bool:
        return bool(self.applied)


# The longest "who asked" an abort request records (soniq_jobs.abort_requested_by).
REQUESTER_LENGTH = 255


def requester(by: str | None = None) -> str:
    """Who asks for an action, as recorded: ``by`` when given, else ``user@host`` of this
    process (``pid N@host`` when the user cannot be told)."""
    if by is None:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no name for this uid (a container, say)
            user = f"pid {os.getpid()}"
        by = f"{user}@{socket.gethostname()}"
    if not isinstance(by, str):
        raise TypeError(f"by must be text, got {type(by).__name__}")
    return by[:REQUESTER_LENGTH]


NOT_FOUND = "no such job (it was pruned, deleted or never existed)"


def _state(status: str) -> str:
    return "a dead letter" if status == "dead_letter" else status


KEY_TAKEN = "another queued or running job holds its dedup key"


def why_not_retried(state: JobState | None) -> str:
    if state is None:
        return NOT_FOUND
    if state.status == "processing":
        if state.worker_status == "running":
            return f"it is running on live worker {state.worker_label}; wait for it to finish"
        return (
            f"it is held by worker {state.worker_label or '(gone)'}, which is not running; "
            "recovery puts it back in the queue"
        )
    if state.status == "done":
        return "it already finished successfully"
    if state.key_taken:
        return KEY_TAKEN
    return f"it is {_state(state.status)} and changed while the action ran"


def why_not_cancelled(state: JobState | None) -> str:
    if state is None:
        return NOT_FOUND
    if state.status == "processing":
        return (
            f"it is already running (on worker {state.worker_label or '(gone)'}); "
            "only queued jobs can be cancelled"
        )
    return f"it is {_state(state.status)}; only queued jobs can be cancelled"


def why_not_aborted(state: JobState | None) -> str:
    if state is None:
        return NOT_FOUND
    if state.status == "done":
        return "it already finished successfully; only queued and running jobs can be aborted"
    return f"it is {_state(state.status)}; only queued and running jobs can be aborted"


def why_not_requeued(state: JobState | None) -> str:
    if state is None:
        return NOT_FOUND
    if state.status != "dead_letter":
        return f"it is not a dead letter (it is {state.status}): it was requeued already"
    if state.key_taken:
        return KEY_TAKEN
    return "it changed while the action ran"


def why_not_deleted(state: JobState | None) -> str:
    if state is None:
        return NOT_FOUND
    return f"it is not a dead letter (it is {state.status})"

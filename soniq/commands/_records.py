"""What the ``jobs`` and ``dead-letters`` commands share: ids from the command line, one job
shown as the admin shows it (masked and redacted), and an operator action's report."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from soniq.commands import _output
from soniq.core.codec import one_line
from soniq.core.errors import SoniqError
from soniq.core.operations import ActionResult
from soniq.core.records import JobInfo
from soniq.core.redaction import Redaction
from soniq.core.settings import SoniqSettings

LIMIT = 50


class UsageError(SoniqError):
    """A command line the command cannot act on (exit status 2)."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def job_id(text: str) -> str:
    """An id as the command line gave it: a UUID (``argparse`` refuses anything else)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a UUID)") from None


def shown(info: JobInfo, settings: SoniqSettings) -> dict[str, Any]:
    """``info`` as JSON-ready data, masked and redacted as the admin's job page shows it."""
    redaction = Redaction.of(settings.admin_masked_args, info.args, info.result)
    dedup: str | None = info.dedup_key
    if dedup is not None:
        # As the admin's job page shows it: not at all under ADMIN_HIDE_DEDUP_KEYS; hidden
        # when the arguments hold masked values (a unique=True key is a hash of them, from
        # which a weak secret could be guessed offline); else redacted.
        if settings.admin_hide_dedup_keys:
            dedup = None
        elif redaction.secrets:
            dedup = "set (hidden: the arguments hold masked values)"
        else:
            dedup = redaction.text(dedup)
    return {
        "id": info.id,
        "task": info.task_name,
        "status": str(info.status),
        "queue": info.queue,
        "priority": info.priority,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "created_at": info.created_at,
        "scheduled_at": info.scheduled_at,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "worker_id": info.worker_id,
        "dead_letter_reason": info.dead_letter_reason,
        "dedup_key": dedup,
        "lock": None if info.lock is None else redaction.text(info.lock),
        "args": redaction.value(info.args),
        "result": redaction.value(info.result),
        "errors_dropped": info.errors_dropped,
        "errors": [redaction.value(error) for error in info.errors],
    }


def show(out: _output.Out, alias: str, job_id: str, *, as_json: bool, dead_letter: bool) -> int:
    """``jobs show`` and ``dead-letters show``: one job (``dead_letter``: only a dead letter)
    as the admin shows it; 1 when there is none."""
    from soniq.commands._settings import soniq_settings
    from soniq.django_backend import DjangoBackend

    info = DjangoBackend(alias).get_job_sync(job_id)
    if info is None or (dead_letter and info.dead_letter_reason is None):
        out.write(f"no {'dead letter' if dead_letter else 'job'} has id {job_id}\n")
        return 1
    data = shown(info, soniq_settings())
    if as_json:
        _output.dump(out, data)
    else:
        print_job(out, data)
    return 0


def print_job(out: _output.Out, data: dict[str, Any]) -> None:
    attempts = f"{data['attempts']}/{data['max_attempts']}"
    fields = [
        ("id", data["id"]),
        ("task", data["task"]),
        ("status", data["status"]),
        ("reason", data["dead_letter_reason"]),
        ("queue", data["queue"]),
        ("priority", data["priority"]),
        ("attempts", attempts),
        ("created", _output.moment(data["created_at"])),
        ("scheduled", _output.moment(data["scheduled_at"])),
        ("started", _output.moment(data["started_at"])),
        ("finished", _output.moment(data["finished_at"])),
        ("worker", data["worker_id"]),
        ("dedup key", data["dedup_key"]),
        ("lock", data["lock"]),
    ]
    for name, value in fields:
        if value is not None:
            out.write(f"{name + ':':<11}{one_line(str(value))}\n")
    out.write(f"args:      {_output.compact(data['args'])}\n")
    if data["result"] is not None:
        out.write(f"result:    {_output.compact(data['result'])}\n")
    if data["errors_dropped"]:
        out.write(f"\n{data['errors_dropped']} earlier failed attempt(s) not kept\n")
    for error in data["errors"]:
        headline = f"{error.get('error_type', '')}: {error.get('message', '')}"
        out.write(f"\nattempt {error.get('attempt', '?')}: {one_line(headline)}\n")
        details = [f"at {error['failed_at']}" if error.get("failed_at") else ""]
        if error.get("worker_id"):
            details.append(f"worker {error['worker_id']}")
        if any(details):
            out.write("  " + one_line(", ".join(part for part in details if part)) + "\n")
        traceback = str(error.get("traceback") or "").rstrip()
        if traceback:
            # Line by line, each with its control characters escaped: job data must not be
            # able to drive the terminal.
            out.write("".join(f"  {one_line(line)}\n" for line in traceback.splitlines()))


def report(out: _output.Out, verb: str, result: ActionResult, as_json: bool) -> int:
    """What an operator action did, and why it left each refused id alone; 1 when it did
    nothing at all."""
    if as_json:
        _output.dump(out, {"applied": list(result.applied), "refused": result.refused})
    else:
        for done in result.applied:
            out.write(f"{verb}: {done}\n")
        for refused, why in sorted(result.refused.items()):
            out.write(f"refused: {refused}: {why}\n")
        if not result.applied and not result.refused:
            out.write("nothing matched\n")
    return 0 if result.applied else 1

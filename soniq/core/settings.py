"""Soniq's settings: one validated, immutable object built from layered sources.

Sources, lowest precedence first: the defaults below, ``SONIQ_*`` environment variables, the
Django ``SONIQ = {...}`` dict (supplied by the Django layer; this module never imports Django),
then keyword arguments given to ``Soniq(...)``. Keys are the field names, case-insensitive, so
``SONIQ = {"CONCURRENCY": 8}``, ``SONIQ_CONCURRENCY=8`` and ``Soniq(concurrency=8)`` agree.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soniq.core.errors import ConfigurationError
from soniq.core.limits import Limit, parse_queue_limits
from soniq.core.masking import DEFAULT_MASKED_NAMES

ENV_PREFIX = "SONIQ_"
QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$")
QUEUE_NAME_RULE = (
    "1 to 63 characters: letters, digits, '_', '.', ':' or '-', not starting with a punctuation"
)


def is_valid_queue_name(name: object) -> bool:
    return isinstance(name, str) and QUEUE_NAME_PATTERN.fullmatch(name) is not None


class SoniqSettings(BaseModel):
    """Every soniq setting, validated. Instances are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL for code outside Django (psycopg conninfo)."
    )
    database: str = Field(
        default="default", min_length=1, description="Django database alias soniq uses."
    )
    concurrency: int = Field(default=4, ge=1, le=1000)
    poll_interval: float = Field(default=5.0, gt=0)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    heartbeat_timeout: float = Field(default=300.0, gt=0)
    cleanup_interval: float = Field(default=300.0, gt=0)
    error_retry_delay: float = Field(default=5.0, ge=0)
    shutdown_timeout: float = Field(default=30.0, ge=0)
    job_timeout: float = Field(default=300.0, gt=0)
    result_retention: float = Field(
        default=86400.0, ge=0, description="Seconds finished jobs are kept before pruning."
    )
    prefetch: int = Field(
        default=1000,
        ge=0,
        le=10_000,
        description="Most jobs a worker claims ahead of its free slots (it claims ahead only "
        "what its recent pace will start within 50 ms).",
    )
    loop_stall_warning: float = Field(
        default=1.0,
        ge=0,
        description="Warn when the worker's event loop is blocked this many seconds (0: never).",
    )
    tcp_keepalives_idle: int = Field(
        default=5,
        ge=1,
        description="Seconds a connection may be silent before TCP keepalive probes start "
        "(libpq keepalives_idle; also set on the server side of the worker's and the "
        "scheduler's sessions).",
    )
    tcp_keepalives_interval: int = Field(
        default=2, ge=1, description="Seconds between TCP keepalive probes."
    )
    tcp_keepalives_count: int = Field(
        default=3, ge=1, description="Unanswered keepalive probes before the connection is dead."
    )
    tcp_user_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds sent data may stay unacknowledged before the connection is "
        "dropped (libpq tcp_user_timeout; 0: the system default, minutes).",
    )
    connect_timeout: int = Field(
        default=5, ge=2, description="Seconds a connection attempt may take (libpq)."
    )
    scheduler_lease: float = Field(
        default=5.0,
        gt=0,
        description="Longest a scheduler holds a tick's locks: a scheduler that hangs loses "
        "them after this, and another fires the next slot.",
    )
    error_message_limit: int = Field(
        default=4000,
        ge=100,
        description="Characters of a failed attempt's message kept in its error record (and "
        "at most 500 in the worker's log line); the rest is cut, with a note.",
    )
    traceback_limit: int = Field(
        default=20000,
        ge=1000,
        description="Characters of a failed attempt's traceback kept in its error record, "
        "from the end (the failing line); the start is cut, with a note.",
    )
    error_history_limit: int = Field(
        default=20,
        ge=1,
        description="Error entries kept per job (the newest); older ones are dropped and "
        "counted (errors_dropped), across requeues too.",
    )
    max_result_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest result stored, as UTF-8 JSON; a job returning more is "
        "dead-lettered (result_too_large) instead of stored.",
    )
    max_worker_losses: int = Field(
        default=3, ge=1, description="Dead-letter a job (worker_lost) after this many dead workers."
    )
    jobs_modules: tuple[str, ...] = ()
    queues: tuple[str, ...] | None = None
    app: str | None = Field(
        default=None, description="'module:attr' of the Soniq instance management commands use."
    )
    max_args_bytes: int = Field(default=256 * 1024, ge=1)
    strict_enqueue: bool = Field(
        default=False, description="Refuse to enqueue string task names nobody registered here."
    )
    listen_notify: bool = Field(
        default=True,
        description="Use LISTEN/NOTIFY; turn off behind PgBouncer in transaction mode.",
    )
    prepared_statements: bool = Field(
        default=True,
        description="Let psycopg prepare frequent statements; turn off behind PgBouncer in "
        "transaction mode.",
    )

    queue_limits: dict[str, Limit] = Field(
        default_factory=dict,
        description="Limits per queue across every worker: {queue: {'concurrency': N, "
        "'rate': '10/s'}} (either key or both). In the environment, as JSON.",
    )

    admin_masked_args: tuple[str, ...] = Field(
        default=DEFAULT_MASKED_NAMES,
        description="Names masked in the admin and the worker's log lines: any key (at any "
        "depth of args, results and error entries) whose name contains one of these, "
        "ignoring case and punctuation; their values are also hidden in free text.",
    )
    admin_hide_dedup_keys: bool = Field(
        default=False, description="Never show deduplication keys in the admin."
    )

    @field_validator("jobs_modules", "queues", "admin_masked_args", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any, info: Any) -> Any:
        # Environment variables carry lists as "a,b,c". An empty SONIQ_QUEUES means "not
        # set" (every queue), never "no queue at all".
        if isinstance(value, str):
            parts = tuple(part.strip() for part in value.split(",") if part.strip())
            return None if not parts and info.field_name == "queues" else parts
        return value

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not is_valid_queue_name(name):
                raise ValueError(f"queue name {name!r} is not valid ({QUEUE_NAME_RULE})")
        return value or None  # an empty list would mean a worker that serves nothing

    @field_validator("queue_limits", mode="before")
    @classmethod
    def _queue_limits(cls, value: Any) -> dict[str, Limit]:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError(
                    'must be JSON in the environment, such as {"partner": {"rate": "10/s"}}'
                ) from None
        return parse_queue_limits(value)

    @field_validator("heartbeat_timeout")
    @classmethod
    def _timeout_exceeds_interval(cls, value: float, info: Any) -> float:
        interval = info.data.get("heartbeat_interval")
        if interval is not None and (1 - FENCE_MARGIN) * value <= interval:
            raise ValueError(
                f"must be more than {1 / (1 - FENCE_MARGIN):.4g} x HEARTBEAT_INTERVAL "
                f"({interval}): a worker gives up its jobs {FENCE_MARGIN:.0%} of the timeout "
                "before others may take them, and it must hear from the database before that, "
                "or every worker would give up its jobs between two heartbeats"
            )
        return value


# A worker stops starting jobs, and gives up those it runs, this share of the recovery deadline
# before other workers may find it dead: the margin covers the race between its clock and the
# recovering worker's statement, and the time a cancelled job takes to unwind.
FENCE_MARGIN = 0.25


def recovery_deadline(settings: SoniqSettings, *, session: bool) -> float:
    """Seconds after a worker's last heartbeat at which others may find it dead and take its
    jobs back: ``HEARTBEAT_TIMEOUT``; with a liveness lock (a worker session, LISTEN_NOTIFY on),
    also 2 x ``HEARTBEAT_INTERVAL`` once the lock is gone, which can happen without the worker
    knowing (the server dropped a connection the network then cut off)."""
    if session:
        return min(settings.heartbeat_timeout, 2 * settings.heartbeat_interval)
    return settings.heartbeat_timeout


def worker_lease(settings: SoniqSettings, *, session: bool) -> float:
    """Seconds after a confirmed heartbeat during which a worker may start jobs and keep
    running them: the recovery deadline less ``FENCE_MARGIN``."""
    return (1 - FENCE_MARGIN) * recovery_deadline(settings, session=session)


FIELD_NAMES = frozenset(SoniqSettings.model_fields)


def _normalise_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        name = key.lower()
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX) :]
        if name not in FIELD_NAMES:
            known = ", ".join(sorted(n.upper() for n in FIELD_NAMES))
            raise ConfigurationError(f"Unknown soniq setting {key!r} in {source}. Known: {known}.")
        result[name] = value
    return result


def settings_from_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``SONIQ_*`` variables of ``environ`` that name a setting, keyed by field name."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            # Unknown SONIQ_* variables are ignored: the environment is shared with other tools
            # (SONIQ_TEST_DATABASE_URL, for instance).
            if name in FIELD_NAMES:
                found[name] = value
    return found


def build_settings(
    *,
    environ: Mapping[str, str] | None = None,
    django_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SoniqSettings:
    """Merge the sources (later wins) and validate once.

    Raises :class:`ConfigurationError` naming each bad setting and the fix.
    """
    merged: dict[str, Any] = dict(settings_from_environ(environ))
    if django_values:
        merged.update(_normalise_keys(django_values, "settings.SONIQ"))
    if overrides:
        merged.update(_normalise_keys(overrides, "Soniq(...) arguments"))
    try:
        return SoniqSettings(**merged)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(
            f"SONIQ[{name.upper()!r}] (env SONIQ_{name.upper()}): {error['msg']} "
            f"(got {error.get('input')!r})"
        )
    return "Invalid soniq settings: " + "; ".join(problems)

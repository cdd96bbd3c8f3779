"""The tables, owned by Django models so that ``migrate`` creates them on PostgreSQL and SQLite.

soniq's own reads and writes go through the named SQL statements in ``soniq.backends``; these
models give Django the schema, the admin and ORM queries for reporting. Column names are part
of that SQL contract: change them only together.
"""

from __future__ import annotations

from django.db import models
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from soniq.core.options import MAX_PRIORITY, MIN_PRIORITY
from soniq.core.periodic import format_period
from soniq.core.status import JobStatus, Suspicion

LIVE_STATUSES = [JobStatus.QUEUED.value, JobStatus.PROCESSING.value]
FINISHED_STATUSES = [JobStatus.DONE.value, JobStatus.CANCELLED.value]
SUSPICION_CHOICES = [
    (Suspicion.NONE.value, "none"),
    (Suspicion.UNCONFIRMED_START.value, "start unconfirmed (its worker died)"),
    (Suspicion.LOST_WHILE_RUNNING.value, "running when its worker died: runs alone"),
]


def finished_rows() -> RawSQL:
    """``status IN ('done', 'cancelled')``, the condition of the partial index on
    ``finished_at``, written with literals. SQLite uses a partial index only when the query
    repeats its condition term for term, and a bound parameter in an ``IN`` list never
    matches (PostgreSQL would infer it from ``status = 'done'`` alone). The values are
    constants of ours, not input."""
    values = ", ".join("'{}'".format(value.replace("'", "''")) for value in FINISHED_STATUSES)
    return RawSQL(f'"soniq_jobs"."status" IN ({values})', [], BooleanField())


ROW_STATUS_CHOICES = [
    (status.value, status.name.replace("_", " ").capitalize())
    for status in JobStatus
    if status is not JobStatus.DEAD_LETTER
]


class Job(models.Model):
    """A job waiting, running or finished (``soniq_jobs``)."""

    id = models.UUIDField(primary_key=True)
    task_name = models.CharField(max_length=255)
    args = models.JSONField(default=dict)
    queue = models.CharField(max_length=63, default="default")
    priority = models.SmallIntegerField(default=100)
    status = models.CharField(max_length=16, choices=ROW_STATUS_CHOICES, default="queued")
    attempts = models.IntegerField(default=0, help_text="Attempts started so far.")
    max_attempts = models.IntegerField(default=4, help_text="retries + 1")
    scheduled_at = models.DateTimeField(help_text="Not run before this time.")
    created_at = models.DateTimeField()
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the worker holding the job claimed it."
    )
    started_at = models.DateTimeField(
        null=True, blank=True, help_text="When it started running; empty while only claimed."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.UUIDField(null=True, blank=True, help_text="Worker holding the job.")
    result = models.JSONField(null=True, blank=True)
    errors = models.JSONField(
        default=list, help_text="One entry per failed attempt, the newest ERROR_HISTORY_LIMIT."
    )
    # A database default: soniq's enqueue statements leave the column out.
    errors_dropped = models.IntegerField(
        db_default=0, help_text="Error entries dropped beyond ERROR_HISTORY_LIMIT (the oldest)."
    )
    dedup_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    worker_losses = models.IntegerField(
        default=0, help_text="Times the worker running this job died."
    )
    # A database default: soniq's own INSERT statements leave the column out.
    suspicion = models.SmallIntegerField(
        db_default=Suspicion.NONE.value,
        choices=SUSPICION_CHOICES,
        help_text="Care its next start gets after its worker died.",
    )
    snoozes = models.IntegerField(
        db_default=0, help_text="Times it snoozed (soniq.Snooze): requeued uncharged."
    )
    # Set while it runs when an operator asks to abort it; its worker stops it and ends it
    # cancelled (see cancel_jobs(abort=True)).
    abort_requested_at = models.DateTimeField(null=True, blank=True)
    abort_requested_by = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True, help_text="Who asked to abort it."
    )
    # Someone waits for its end (Soniq.wait_for): its end is announced with a NOTIFY.
    awaited = models.BooleanField(db_default=False)
    lock = models.CharField(  # noqa: DJ001
        max_length=255,
        null=True,
        blank=True,
        help_text="Jobs that share a lock run one at a time, in order.",
    )
    lock_order = models.BigIntegerField(
        null=True, blank=True, help_text="Its place among the jobs of its lock."
    )

    class Meta:
        db_table = "soniq_jobs"
        ordering = ["-created_at"]
        # Operator actions in the admin, each granted on its own.
        permissions = [
            ("retry_job", "Can retry jobs (run now, or requeue cancelled ones)"),
            ("cancel_job", "Can cancel queued jobs"),
            ("abort_job", "Can abort running jobs"),
        ]
        indexes = [
            # The claim: due queued jobs in priority order. Partial, so a million finished
            # rows cost nothing; one for workers on all queues, one for queue-scoped workers.
            models.Index(
                fields=["priority", "scheduled_at"],
                condition=Q(status="queued"),
                name="soniq_jobs_claim_idx",
            ),
            models.Index(
                fields=["queue", "priority", "scheduled_at"],
                condition=Q(status="queued"),
                name="soniq_jobs_claim_queue_idx",
            ),
            models.Index(
                fields=["worker_id"],
                condition=Q(status="processing"),
                name="soniq_jobs_running_idx",
            ),
            models.Index(
                fields=["finished_at"],
                condition=Q(status__in=FINISHED_STATUSES),
                name="soniq_jobs_finished_idx",
            ),
            # The admin's default order (newest first). Times only grow, so each enqueue appends
            # to the index's last page: cheap, unlike a random key. Still no index on
            # task_name: with statistics missing, one lured the planner away from the claim.
            models.Index(fields=["-created_at"], name="soniq_jobs_created_idx"),
            # The claim's lock condition: is a job of this lock running, or queued ahead?
            models.Index(
                fields=["lock", "status", "priority", "lock_order", "id"],
                condition=Q(lock__isnull=False) & Q(status__in=LIVE_STATUSES),
                name="soniq_jobs_lock_idx",
            ),
        ]
        constraints = [
            # Deduplication is decided by this index and INSERT ... ON CONFLICT, never by a
            # check-then-insert. Keep the condition identical to the statements' arbiter.
            models.UniqueConstraint(
                fields=["task_name", "dedup_key"],
                condition=Q(dedup_key__isnull=False) & Q(status__in=LIVE_STATUSES),
                name="soniq_jobs_dedup_uniq",
            ),
            # One running job per lock, whatever two claims believe: a claim whose snapshot
            # sees another job of the lock first (one queued ahead committed meanwhile) waits
            # for the other claim's commit here, fails, and is made again.
            models.UniqueConstraint(
                fields=["lock"],
                condition=Q(lock__isnull=False) & Q(status="processing"),
                name="soniq_jobs_one_running_per_lock",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=MIN_PRIORITY) & Q(priority__lte=MAX_PRIORITY),
                name="soniq_jobs_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[value for value, _ in ROW_STATUS_CHOICES]),
                name="soniq_jobs_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.status}] {self.id}"


class DeadLetterJob(models.Model):
    """A job that exhausted its attempts (``soniq_dead_letter_jobs``), with every error."""

    id = models.UUIDField(primary_key=True, help_text="The id the job had in soniq_jobs.")
    task_name = models.CharField(max_length=255)
    args = models.JSONField(default=dict)
    queue = models.CharField(max_length=63)
    priority = models.SmallIntegerField()
    attempts = models.IntegerField()
    max_attempts = models.IntegerField()
    scheduled_at = models.DateTimeField()
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    dead_lettered_at = models.DateTimeField()
    worker_id = models.UUIDField(null=True, blank=True)
    errors = models.JSONField(
        default=list, help_text="One entry per failed attempt, the newest ERROR_HISTORY_LIMIT."
    )
    errors_dropped = models.IntegerField(
        db_default=0, help_text="Error entries dropped beyond ERROR_HISTORY_LIMIT (the oldest)."
    )
    reason = models.CharField(
        max_length=32, help_text="Why it stopped: max_attempts, worker_lost, ..."
    )
    dedup_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # Kept so that a requeued dead letter takes its place in its lock again.
    lock = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    lock_order = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "soniq_dead_letter_jobs"
        ordering = ["-dead_lettered_at"]
        verbose_name = "dead letter"
        permissions = [("requeue_deadletterjob", "Can requeue dead letters")]
        indexes = [
            models.Index(fields=["dead_lettered_at"], name="soniq_dead_at_idx"),
            models.Index(fields=["task_name", "dead_lettered_at"], name="soniq_dead_task_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [dead letter: {self.reason}] {self.id}"


class LimitStart(models.Model):
    """Starts counted against a rate limit (``soniq_limit_starts``): one row per claim that
    started jobs under the limit, pruned once out of its window."""

    key = models.CharField(max_length=300, help_text="task:<name> or queue:<name>")
    started_at = models.DateTimeField()
    count = models.IntegerField()

    class Meta:
        db_table = "soniq_limit_starts"
        indexes = [models.Index(fields=["key", "started_at"], name="soniq_limit_starts_idx")]

    def __str__(self) -> str:
        return f"{self.key}: {self.count} at {self.started_at}"


class Worker(models.Model):
    """A worker process, alive while it heartbeats (``soniq_workers``)."""

    id = models.UUIDField(primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(null=True, blank=True, help_text="null: every queue.")
    task_names = models.JSONField(default=list, help_text="Jobs this worker can run.")
    concurrency = models.IntegerField()
    status = models.CharField(max_length=16, default="running")
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    version = models.CharField(max_length=32, blank=True, default="")
    lock_key = models.IntegerField(
        null=True,
        blank=True,
        help_text="Session advisory lock held while the worker's connection lives.",
    )

    class Meta:
        db_table = "soniq_workers"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["status", "last_heartbeat_at"], name="soniq_workers_hb_idx")
        ]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} [{self.status}]"


class Schedule(models.Model):
    """A recurring job (``soniq_schedules``), keyed by its resolved task name."""

    name = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    cron = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    interval_seconds = models.FloatField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    args = models.JSONField(default=dict)
    queue = models.CharField(max_length=63, null=True, blank=True)  # noqa: DJ001
    priority = models.SmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, default="active")
    catch_up = models.CharField(max_length=16, default="latest")
    catch_up_window_seconds = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, default="code", help_text="code or api")
    last_fired_at = models.DateTimeField(null=True, blank=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "soniq_schedules"
        ordering = ["name"]
        permissions = [
            ("pause_schedule", "Can pause and resume schedules"),
            ("run_schedule", "Can run a schedule now"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cron__isnull=False) & Q(interval_seconds__isnull=True))
                | (Q(cron__isnull=True) & Q(interval_seconds__isnull=False)),
                name="soniq_schedules_cron_xor_interval",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_fire_at"], condition=Q(status="active"), name="soniq_sched_due_idx"
            )
        ]

    def __str__(self) -> str:
        timing = self.cron or f"every {format_period(float(self.interval_seconds or 0))}"
        return f"{self.name} ({timing})"


class ScheduleFire(models.Model):
    """One fired slot of a schedule. The unique (schedule, fire time) key, written in the same
    transaction as the job, is what makes a slot fire once however many schedulers run."""

    schedule_name = models.CharField(max_length=255)
    fire_time = models.DateTimeField()
    job_id = models.UUIDField()
    fired_at = models.DateTimeField()

    class Meta:
        db_table = "soniq_schedule_fires"
        ordering = ["-fire_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule_name", "fire_time"], name="soniq_schedule_fires_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule_name} @ {self.fire_time.isoformat()}"

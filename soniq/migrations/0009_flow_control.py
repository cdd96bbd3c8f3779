from typing import Any

from django.db import migrations, models

LOCK_ORDER_SEQUENCE = "soniq_jobs_lock_order"

# The claim's lock condition on PostgreSQL: no job of the lock is running, and none is queued
# ahead of this one. A function, not two subqueries in the claim: the planner charges a
# correlated subquery's cost to every row the claim may scan (sixty to three hundred times the
# claim's own estimate with a backlog), and past jit_above_cost every claim would be compiled
# first (about 400 ms). PL/pgSQL is never inlined, so its declared COST is what the planner
# counts; STABLE, so its queries see the claim's snapshot. Only jobs with a lock call it.
LOCK_FREE_FUNCTION = """
CREATE OR REPLACE FUNCTION soniq_lock_free(
    job_lock text, job_priority smallint, job_lock_order bigint, job_id uuid
) RETURNS boolean LANGUAGE plpgsql STABLE COST 1 AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS held
        WHERE held.lock = job_lock AND held.status = 'processing'
    ) AND NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS ahead
        WHERE ahead.lock = job_lock AND ahead.status = 'queued'
          AND (ahead.priority, ahead.lock_order, ahead.id) < (job_priority, job_lock_order, job_id)
    );
END
$$
"""


def create_lock_order_sequence(apps: object, schema_editor: Any) -> None:
    # On PostgreSQL a locked job's place comes from a sequence (concurrent transactions get
    # distinct, increasing numbers); SQLite's single writer takes the next number in its lock.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE SEQUENCE IF NOT EXISTS {LOCK_ORDER_SEQUENCE}")
        schema_editor.execute(LOCK_FREE_FUNCTION)


def drop_lock_order_sequence(apps: object, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS soniq_lock_free(text, smallint, bigint, uuid)")
        schema_editor.execute(f"DROP SEQUENCE IF EXISTS {LOCK_ORDER_SEQUENCE}")


class Migration(migrations.Migration):
    """Flow control: a job's ``lock`` and its place in that lock's order (kept by dead letters,
    so a requeued one takes its place again), the index the claim's lock condition reads, and
    ``soniq_limit_starts``, the starts counted against rate limits."""

    dependencies = [
        ("soniq", "0008_job_control"),
    ]

    operations = [
        migrations.CreateModel(
            name="LimitStart",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(help_text="task:<name> or queue:<name>", max_length=300)),
                ("started_at", models.DateTimeField()),
                ("count", models.IntegerField()),
            ],
            options={
                "db_table": "soniq_limit_starts",
            },
        ),
        migrations.AddField(
            model_name="deadletterjob",
            name="lock",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="deadletterjob",
            name="lock_order",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="lock",
            field=models.CharField(
                blank=True,
                help_text="Jobs that share a lock run one at a time, in order.",
                max_length=255,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="lock_order",
            field=models.BigIntegerField(
                blank=True, help_text="Its place among the jobs of its lock.", null=True
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(
                    ("lock__isnull", False), ("status__in", ["queued", "processing"])
                ),
                fields=["lock", "status", "priority", "lock_order", "id"],
                name="soniq_jobs_lock_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="limitstart",
            index=models.Index(fields=["key", "started_at"], name="soniq_limit_starts_idx"),
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(("lock__isnull", False), ("status", "processing")),
                fields=("lock",),
                name="soniq_jobs_one_running_per_lock",
            ),
        ),
        migrations.RunPython(create_lock_order_sequence, drop_lock_order_sequence),
    ]

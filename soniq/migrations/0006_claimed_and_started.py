from django.db import migrations, models


class Migration(migrations.Migration):
    """A claimed job is told from a running one: ``claimed_at`` is set by the claim,
    ``started_at`` only when the job starts; ``suspicion`` marks jobs whose worker died."""

    dependencies = [
        ("soniq", "0005_admin"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="claimed_at",
            field=models.DateTimeField(
                blank=True, help_text="When the worker holding the job claimed it.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="started_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When it started running; empty while only claimed.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="worker_losses",
            field=models.IntegerField(
                default=0, help_text="Times the worker running this job died."
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="suspicion",
            field=models.SmallIntegerField(
                choices=[
                    (0, "none"),
                    (1, "start unconfirmed (its worker died)"),
                    (2, "running when its worker died: runs alone"),
                ],
                db_default=0,
                help_text="Care its next start gets after its worker died.",
            ),
        ),
        # Jobs a worker held when this migration ran were claimed at their start time.
        migrations.RunSQL(
            "UPDATE soniq_jobs SET claimed_at = started_at WHERE status = 'processing'",
            migrations.RunSQL.noop,
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    """Job control: ``snoozes`` counts a job's uncharged requeues (soniq.Snooze); an abort
    request is recorded with its time and author while the job runs; ``awaited`` marks a job
    someone waits for (Soniq.wait_for), whose end is then announced. Database defaults, so
    that rows inserted without these columns (by soniq's enqueue) are valid."""

    dependencies = [
        ("soniq", "0007_errors_dropped"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="snoozes",
            field=models.IntegerField(
                db_default=0, help_text="Times it snoozed (soniq.Snooze): requeued uncharged."
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="abort_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="abort_requested_by",
            field=models.CharField(
                blank=True, help_text="Who asked to abort it.", max_length=255, null=True
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="awaited",
            field=models.BooleanField(db_default=False),
        ),
        migrations.AlterModelOptions(
            name="job",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    ("retry_job", "Can retry jobs (run now, or requeue cancelled ones)"),
                    ("cancel_job", "Can cancel queued jobs"),
                    ("abort_job", "Can abort running jobs"),
                ],
            },
        ),
    ]

from django.db import migrations, models

ERRORS_HELP = "One entry per failed attempt, the newest ERROR_HISTORY_LIMIT."
DROPPED_HELP = "Error entries dropped beyond ERROR_HISTORY_LIMIT (the oldest)."


class Migration(migrations.Migration):
    """A job keeps its newest ``ERROR_HISTORY_LIMIT`` error entries; ``errors_dropped`` counts
    the older ones dropped. A database default (0), so that rows inserted without the column
    (by soniq's enqueue, or by code older than this migration) are valid."""

    dependencies = [
        ("soniq", "0006_claimed_and_started"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="errors_dropped",
            field=models.IntegerField(db_default=0, help_text=DROPPED_HELP),
        ),
        migrations.AddField(
            model_name="deadletterjob",
            name="errors_dropped",
            field=models.IntegerField(db_default=0, help_text=DROPPED_HELP),
        ),
        migrations.AlterField(
            model_name="job",
            name="errors",
            field=models.JSONField(default=list, help_text=ERRORS_HELP),
        ),
        migrations.AlterField(
            model_name="deadletterjob",
            name="errors",
            field=models.JSONField(default=list, help_text=ERRORS_HELP),
        ),
    ]

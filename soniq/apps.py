from django.apps import AppConfig


class SoniqConfig(AppConfig):
    name = "soniq"
    verbose_name = "Soniq background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from soniq import checks  # noqa: F401  (registers the system checks)

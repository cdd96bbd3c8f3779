"""Minimal settings for mypy's Django plugin: the app registry, no database access."""

SECRET_KEY = "typing-only"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "soniq"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True

"""Test settings: the testproject with two databases, so every test can run on both.

"default" is PostgreSQL (found or started by tests/pg_server.py); "sqlite" is a SQLite file.
soniq uses "default" unless a test picks the other alias.
"""

import os
import secrets
import tempfile

from config.settings import *  # noqa: F403
from config.settings import database_from_url
from tests.pg_server import ensure_postgres_url

_SQLITE_DIR = os.environ.get("SONIQ_TEST_SQLITE_DIR") or tempfile.mkdtemp(prefix="soniq-sqlite-")
os.makedirs(_SQLITE_DIR, exist_ok=True)
# Worker processes started by tests inherit the same directory.
os.environ["SONIQ_TEST_SQLITE_DIR"] = _SQLITE_DIR

# The PostgreSQL test database: SONIQ_TEST_DATABASE_NAME, or a name of this run's own
# (test_soniq_<pid>_<random>), so that two runs on one server never share or collide on one.
# pytest-django creates it and drops it at the end; the tests touch no other database.
_TEST_DATABASE_NAME = (
    os.environ.get("SONIQ_TEST_DATABASE_NAME") or f"test_soniq_{os.getpid()}_{secrets.token_hex(4)}"
)
# Processes started by tests (worker_env keeps SONIQ_*TEST* variables) see the same name.
os.environ["SONIQ_TEST_DATABASE_NAME"] = _TEST_DATABASE_NAME

DATABASES = {
    "default": {
        **database_from_url(ensure_postgres_url()),
        "TEST": {"NAME": _TEST_DATABASE_NAME},
    },
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_SQLITE_DIR, "soniq.sqlite3"),
        "TEST": {"NAME": os.path.join(_SQLITE_DIR, "test_soniq.sqlite3")},
    },
}

# Worker processes started by the acceptance tests use the test database directly.
if os.environ.get("SONIQ_WORKER_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["SONIQ_WORKER_DATABASE_NAME"]
    DATABASES["sqlite"]["NAME"] = DATABASES["sqlite"]["TEST"]["NAME"]
# ... and through a PgBouncer on this port (tests/pgbouncer.py), configured as the docs say.
if os.environ.get("SONIQ_WORKER_DATABASE_PORT"):
    DATABASES["default"]["HOST"] = "127.0.0.1"  # where the bouncer listens
    DATABASES["default"]["PORT"] = os.environ["SONIQ_WORKER_DATABASE_PORT"]
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

SONIQ = {"DATABASE": "default", "APP": "config.tasks:app"}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

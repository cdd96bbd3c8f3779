"""``manage.py migrate`` (and ``soniq setup``), one run at a time per PostgreSQL database.

Django's own migrate, unchanged, except that on PostgreSQL it first takes a session advisory
lock on the very connection it migrates through, and holds it for the whole run: a second run
started meanwhile (replicas that all migrate at start) waits, then computes its plan and finds
everything applied. The lock is taken before the parent's ``handle()`` because the plan is
computed there, before any ``pre_migrate`` signal. On other databases nothing changes.

An installed app's command overrides Django's own of the same name (the first such app in
INSTALLED_APPS wins), so this is what ``manage.py migrate`` and ``call_command("migrate")`` run.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

WAITING = "Waiting for another migrate to finish"


class Command(DjangoMigrateCommand):
    def handle(self, *args: Any, **options: Any) -> Any:
        alias = options["database"]
        connection = connections[alias]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        held_on = self._lock(connection, alias, options["verbosity"])
        try:
            result = super().handle(*args, **options)
        except BaseException:
            # Do not let a failed unlock hide why migrate failed.
            self._unlock(connection, held_on, quietly=True)
            raise
        self._unlock(connection, held_on, quietly=False)
        return result

    def _lock(self, connection: BaseDatabaseWrapper, alias: str, verbosity: int) -> Any:
        """Take the migrate lock, waiting (and saying so, once) while another run holds it;
        the underlying connection it is held on."""
        from soniq.backends.postgres import migrate_lock

        # Polled, not blocking in pg_advisory_lock: see migrate_lock (CREATE INDEX CONCURRENTLY).
        delays = migrate_lock.retry_delays()
        announced = False
        while True:
            with connection.cursor() as cursor:
                cursor.execute(*migrate_lock.try_lock_migrate())
                row = cursor.fetchone()
            if row and row[0]:
                return connection.connection
            if not announced and verbosity >= 1:
                self.stderr.write(
                    f"{WAITING} on database '{alias}'{self._holder(connection)}...",
                    style_func=str,
                )
            announced = True
            time.sleep(next(delays))

    @staticmethod
    def _holder(connection: BaseDatabaseWrapper) -> str:
        """`` (held by pid 123, soniq on 10.0.0.5)``, or nothing if that cannot be told."""
        from soniq.backends.postgres import migrate_lock

        try:
            with connection.cursor() as cursor:
                cursor.execute(*migrate_lock.migrate_lock_holder())
                row = cursor.fetchone()
        except DatabaseError:
            return ""
        if not row:
            return ""
        pid, application, address = row
        where = f" on {address}" if address else ""
        return f" (held by pid {pid}, {application or 'no application_name'}{where})"

    def _unlock(self, connection: BaseDatabaseWrapper, held_on: Any, *, quietly: bool) -> None:
        """Release the lock; say so if this session did not hold it any more: the lock and the
        unlock went to different server connections, as through a transaction-mode pooler,
        where the lock stays with a pooled connection and the next migrate waits for it."""
        from soniq.backends.postgres import migrate_lock

        raw = connection.connection
        if raw is not held_on or raw is None or raw.closed or raw.broken:
            return  # that session is gone, and the lock with it
        try:
            with connection.cursor() as cursor:
                cursor.execute(*migrate_lock.unlock_migrate())
                row = cursor.fetchone()
            if not quietly and not (row and row[0]):
                self.stderr.write(
                    "The migrate lock was not held by this session any more: run migrate on a "
                    "direct connection to PostgreSQL, not through a transaction-mode pooler.",
                    style_func=str,
                )
        except DatabaseError:
            # Unusable (an aborted transaction of the caller's, a dropped connection): the
            # lock goes when the session ends.
            if not quietly:
                raise

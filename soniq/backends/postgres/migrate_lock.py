"""The lock that makes concurrent ``migrate`` runs on one PostgreSQL database wait for each other.

Replicas that all run ``soniq setup`` or ``manage.py migrate`` at start would otherwise apply the
same migrations at the same time (``duplicate key ... django_migrations``, ``relation ...
already exists``). A session advisory lock, taken on the connection migrate uses before it
computes its plan and held until it has finished, makes the later run wait and then find
everything applied.

The waiting run polls with ``pg_try_advisory_lock`` rather than block in ``pg_advisory_lock``:
a statement blocked on the lock keeps a snapshot open in the database being migrated, and a
``CREATE INDEX CONCURRENTLY`` in the running migrate waits for every such snapshot to go, which
would be a deadlock (PostgreSQL detects it and fails the waiting run). Between two tries the
waiting run holds no snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator

from soniq.backends.base import Statement
from soniq.backends.postgres.worker_statements import LOCK_NAMESPACE

# The two-key form, in soniq's namespace (pg_locks: classid = LOCK_NAMESPACE, objsubid = 2), so
# that it shows as soniq's next to the worker locks. Its second key is negative: worker liveness
# locks use random keys 1..2**31-1 and the cleanup leader lock 0, so no soniq lock ever takes
# it (nor does the dead-worker query, which looks up positive lock_keys only, ever see it).
# The single-bigint form would live in another space (objsubid = 1), shared with any other
# tool that hashes its own names to bigints.
MIGRATE_LOCK_KEY = -1


def try_lock_migrate() -> Statement:
    """Take the migrate lock without waiting; one boolean row."""
    return Statement("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, MIGRATE_LOCK_KEY))


def retry_delays(first: float = 0.05, longest: float = 1.0) -> Iterator[float]:
    """Seconds to sleep between tries while another run holds the lock: doubling, capped."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, longest)


def migrate_lock_holder() -> Statement:
    """Who holds the migrate lock in this database: (pid, application_name, client address),
    or no row."""
    return Statement(
        """
        SELECT activity.pid, activity.application_name, host(activity.client_addr)
        FROM pg_locks AS lock JOIN pg_stat_activity AS activity ON activity.pid = lock.pid
        WHERE lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 2
          AND lock.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND lock.classid::int8 = %s AND lock.objid::int8 = %s
        """,
        # pg_locks shows the keys as unsigned 32-bit oids.
        (LOCK_NAMESPACE & 0xFFFFFFFF, MIGRATE_LOCK_KEY & 0xFFFFFFFF),
    )


def unlock_migrate() -> Statement:
    """Release the migrate lock; one boolean row (false if this session did not hold it)."""
    return Statement("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, MIGRATE_LOCK_KEY))

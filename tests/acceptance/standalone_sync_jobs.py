"""A sync job on the standalone test app (``tests.acceptance.standalone_jobs``), so that a
``soniq worker`` process runs jobs in its thread pool. Import it after that module."""

from __future__ import annotations

from tests.acceptance.standalone_jobs import app


@app.job(name="standalone.sync_double")
def sync_double(n: int) -> dict[str, int]:
    return {"n": n * 2}

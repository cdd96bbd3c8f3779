"""pytest fixtures for projects using soniq (loaded automatically when soniq is installed).

``soniq_jobs`` needs database access (it requests pytest-django's ``db`` fixture)::

    def test_signup_sends_a_welcome_email(client, soniq_jobs):
        client.post("/signup/", {"email": "a@example.com"})
        soniq_jobs.assert_enqueued(send_welcome, email="a@example.com")
        assert soniq_jobs.drain() == 1
"""

from __future__ import annotations

from typing import Any

import pytest


class SoniqJobs:
    """The functions of :mod:`soniq.testing`, bound to one app (the project's by default)."""

    def __init__(self, app: Any = None) -> None:
        self.app = app

    def drain(self, **options: Any) -> int:
        from soniq.testing import drain

        return drain(self.app, **options)

    def enqueued(self, job: Any, **args: Any) -> list[Any]:
        from soniq.testing import enqueued

        return enqueued(job, self.app, **args)

    def assert_enqueued(self, job: Any, **args: Any) -> Any:
        from soniq.testing import assert_enqueued

        return assert_enqueued(job, self.app, **args)

    def assert_not_enqueued(self, job: Any, **args: Any) -> None:
        from soniq.testing import assert_not_enqueued

        assert_not_enqueued(job, self.app, **args)


@pytest.fixture
def soniq_jobs(db: None) -> SoniqJobs:
    return SoniqJobs()

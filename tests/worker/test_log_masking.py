"""The worker's log lines carry no secrets: a failure's message goes through the admin's masking
(the job's masked arguments in any written form, values written after a masked name), on one
line, cut to LOG_MESSAGE_LIMIT; job arguments never appear at INFO or above."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable

import pydantic
import pytest

from soniq import Soniq
from soniq.worker import Worker
from soniq.worker.execution import LOG_MESSAGE_LIMIT
from tests.worker.conftest import eventually, running, status_of

pytestmark = [pytest.mark.django_db(transaction=True)]

SECRET = "tok_live_SECRET123"
KEY = "sk-live-abcdef987"
MARKER = "ARGUMENT-MARKER-4711"


class Credentials(pydantic.BaseModel):
    api_key: str = pydantic.Field(max_length=5)


@pytest.mark.asyncio
async def test_failure_lines_are_masked_one_line_and_bounded(
    app: Soniq, workers: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(name="logs.token", retries=0)
    def leaks_token(token: str, user: str) -> None:
        raise RuntimeError(f"call failed: token {token}\nINFO forged line for {user}")

    @app.job(name="logs.forms", retries=0)
    def leaks_forms(token: str) -> None:
        raise RuntimeError(
            f"upper {token.upper()} url {urllib.parse.quote(token + '/x', safe='')} "
            f'repr {token + chr(10)!r} json "{token}\\u00e9"'
        )

    @app.job(name="logs.pydantic", retries=0)
    def validates(api_key: str) -> None:
        Credentials(api_key=api_key)

    @app.job(name="logs.named", retries=0)
    def names_it() -> None:
        raise RuntimeError('connect failed: password=hunter2222 {"api_key": "sk-0000001"}')

    @app.job(name="logs.huge", retries=0)
    def huge(token: str) -> None:
        raise RuntimeError(f"{token} " + "y" * 100_000)

    @app.job(name="logs.fine")
    def fine(note: str) -> str:
        return "ok"

    ids = [
        await app.enqueue(leaks_token, token=SECRET, user=MARKER),
        await app.enqueue(leaks_forms, token=SECRET),
        await app.enqueue(validates, api_key=KEY),
        await app.enqueue(names_it),
        await app.enqueue(huge, token=SECRET),
        await app.enqueue(fine, note=MARKER),
    ]
    with caplog.at_level(logging.DEBUG, logger="soniq"):
        async with running(workers(app), concurrency=2):
            for job_id in ids:
                await eventually(
                    lambda job_id=job_id: _settled(job_id),
                    within=15,  # type: ignore[misc]
                )
    lines = [record.getMessage() for record in caplog.records]
    failures = [line for line in lines if " failed: " in line]
    assert len(failures) == 5, lines
    text = "\n".join(lines)
    for secret in (SECRET, KEY, "hunter2222", "sk-0000001"):
        assert secret.lower() not in text.lower(), secret
    assert urllib.parse.quote(SECRET) not in text
    assert "********" in text
    for line in failures:
        assert "\n" not in line and "\r" not in line
        message = line.split(" failed: ", 1)[1]
        assert len(message) <= LOG_MESSAGE_LIMIT + 60, len(message)
    assert "\\nINFO forged line" in text, "the line break is escaped, not followed"
    assert not any(
        MARKER in record.getMessage() and "forged" not in record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.INFO
    ), "arguments never appear at INFO or above (only in the job's own message)"


async def _settled(job_id: str) -> bool:
    return await status_of(job_id) in ("done", "dead_letter")

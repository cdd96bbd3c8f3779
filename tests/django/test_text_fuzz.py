"""Random text in every text field of an enqueue: only soniq errors come out, and what is
accepted comes back exactly.

A seeded generator (hypothesis is not a dependency) mixes plain text, control characters,
NULs, lone surrogates, non-BMP characters, Unicode whitespace and strings of a few megabytes,
and feeds them to the task name, the queue, the dedup key, argument names and argument values,
through the sync and async enqueue paths, on the memory backend, on PostgreSQL (psycopg, and
Django's connection) and on SQLite. The job's result goes through the worker's encoder.
"""

from __future__ import annotations

import asyncio
import random
import string
import uuid
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connections

from soniq import Soniq, SoniqError
from soniq.backends.memory import MemoryBackend
from soniq.core import codec
from soniq.core.settings import is_valid_queue_name
from soniq.worker.execution import encode_result
from tests.helpers import committed_job_count, conninfo

on_databases = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)

SEED = 20240611
MAX_ARGS_BYTES = 8 * 1024 * 1024
QUEUE_CHARS = string.ascii_letters + string.digits + "_.:-"
WHITESPACE = " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u3000"


def _char(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(string.ascii_letters + string.digits + string.punctuation + " ")
    if roll < 0.55:
        return chr(rng.randint(0, 0x1F)) if rng.random() < 0.9 else "\x7f"  # NUL included
    if roll < 0.60:
        return "\x00"
    if roll < 0.65:
        return chr(rng.randint(0xD800, 0xDFFF))  # a lone surrogate
    if roll < 0.80:
        return chr(rng.choice([rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0xFFFF)]))
    if roll < 0.92:
        return chr(rng.randint(0x10000, 0x10FFFF))  # beyond the BMP
    return rng.choice(WHITESPACE)


def _clean(text: str) -> str:
    """``text`` without NULs and lone surrogates (replaced, so its length stays)."""
    return "".join("\ufffd" if ch == "\x00" or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


class Texts:
    """Random strings: a third clean ASCII, a third any valid Unicode, a third anything;
    now and then empty, or a few megabytes long (at most ``long_left`` of those)."""

    def __init__(self, seed: int, long_left: int) -> None:
        self.rng = random.Random(seed)
        self.long_left = long_left

    def text(self) -> str:
        rng = self.rng
        if rng.random() < 0.03:
            return ""
        length = rng.choice([1, 1, 2, 3, 8, 20, 63, 64, 100, 255, 256, 1000])
        text = "".join(_char(rng) for _ in range(length))
        mode = rng.random()
        if mode < 0.33:
            text = "".join(ch if ch.isascii() and ch.isprintable() else "x" for ch in text)
        elif mode < 0.66:
            text = _clean(text)
        if self.long_left and rng.random() < 0.03:
            self.long_left -= 1
            text *= rng.randint(1_000_000, 3_000_000) // len(text)
        return text

    def queue(self) -> str:
        if self.rng.random() < 0.5:
            return "".join(self.rng.choice(QUEUE_CHARS) for _ in range(self.rng.randint(1, 70)))
        return self.text()

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth < 3 and roll < 0.15:
            return {self.text(): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        if depth < 3 and roll < 0.25:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return self.text()


def _unstorable(text: str) -> bool:
    """The oracle: text PostgreSQL cannot store (a NUL) or UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\x00" in text


def _texts_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from _texts_in(child)
    elif isinstance(value, list):
        for child in value:
            yield from _texts_in(child)


FIELDS = ("task_name", "queue", "dedup_key", "arg_key", "arg_value")


class Trial:
    """One enqueue: a random field gets random text, the others plain values."""

    def __init__(self, texts: Texts, index: int) -> None:
        rng = texts.rng
        self.field = rng.choice(FIELDS)
        self.name = f"fuzz.job_{index}"
        self.queue = "default"
        self.dedup_key: str | None = None
        self.args: dict[str, Any] = {"n": index}
        if self.field == "task_name":
            self.name = texts.text()
        elif self.field == "queue":
            self.queue = texts.queue()
        elif self.field == "dedup_key":
            # Unique per trial, so that no accepted key deduplicates against an earlier one.
            self.dedup_key = f"{index}:{texts.text()}" if rng.random() < 0.9 else texts.text()
        elif self.field == "arg_key":
            self.args = {texts.text(): texts.value()}
        else:
            self.args = {"v": texts.value()}
        self.many = self.dedup_key is None and rng.random() < 0.3
        self.use_async = rng.random() < 0.5

    def must_fail(self) -> bool:
        texts = [self.name, self.queue, *(_texts_in(self.args))]
        if self.dedup_key is not None:
            texts.append(self.dedup_key)
        return any(_unstorable(text) for text in texts) or not is_valid_queue_name(self.queue)

    def sync_call(self, app: Soniq) -> str:
        if self.many:
            [job_id] = app.enqueue_many_sync(self.name, [self.args], queue=self.queue)
            return job_id
        return app.enqueue_sync(
            self.name, args=self.args, queue=self.queue, dedup_key=self.dedup_key
        )

    async def async_call(self, app: Soniq) -> str:
        if self.many:
            [job_id] = await app.enqueue_many(self.name, [self.args], queue=self.queue)
            return job_id
        return await app.enqueue(
            self.name, args=self.args, queue=self.queue, dedup_key=self.dedup_key
        )

    def check(self, info: Any) -> None:
        assert info is not None, self.field
        assert info.task_name == self.name
        assert info.queue == self.queue
        assert info.dedup_key == self.dedup_key
        assert info.args == self.args


class Tally:
    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.refused = 0

    def outcome(self, trial: Trial, error: BaseException | None, job_id: str | None) -> None:
        if error is not None:
            # Only soniq's own errors, never UnicodeEncodeError, DataError, OverflowError...
            assert isinstance(error, SoniqError), (trial.field, repr(error)[:300])
            str(error).encode()  # and printable
            self.refused += 1
        else:
            assert not trial.must_fail(), (trial.field, "accepted unstorable text")
            assert job_id is not None
            self.accepted.add(job_id)


def _run_sync(app: Soniq, trials: list[Trial], tally: Tally) -> None:
    for trial in trials:
        try:
            job_id = trial.sync_call(app)
        except Exception as exc:
            tally.outcome(trial, exc, None)
            continue
        tally.outcome(trial, None, job_id)
        trial.check(app.get_job_sync(job_id))


async def _run_async(
    app: Soniq, trials: list[Trial], tally: Tally, get: Callable[[str], Awaitable[Any]]
) -> None:
    for trial in trials:
        try:
            job_id = await trial.async_call(app) if trial.use_async else trial.sync_call(app)
        except Exception as exc:
            tally.outcome(trial, exc, None)
            continue
        tally.outcome(trial, None, job_id)
        trial.check(await get(job_id))


def _trials(seed: int, count: int, long_left: int) -> list[Trial]:
    texts = Texts(seed, long_left)
    return [Trial(texts, index) for index in range(count)]


def _stored(app: Soniq, alias: str) -> int:
    backend = app.backend
    if isinstance(backend, MemoryBackend):
        return len(backend._jobs)
    return committed_job_count(alias)


@on_databases
@pytest.mark.parametrize("kind", ["memory", "url-postgres", "url-sqlite"])
def test_random_text_standalone(kind: str) -> None:
    """The standalone backends, sync and async paths mixed."""
    if kind == "memory":
        url, alias = "memory://", "default"
    elif kind == "url-postgres":
        url, alias = conninfo(), "default"
    else:
        url, alias = f"sqlite:///{connections['sqlite'].settings_dict['NAME']}", "sqlite"
    app = Soniq(database_url=url, max_args_bytes=MAX_ARGS_BYTES)
    trials = _trials(SEED, 150 if kind == "url-sqlite" else 300, long_left=3)
    tally = Tally()

    async def main() -> None:
        try:
            await _run_async(app, trials, tally, app.get_job)
        finally:
            await app.close()

    asyncio.run(main())
    assert tally.refused > 40 and len(tally.accepted) > 60  # both sides were exercised
    assert _stored(app, alias) == len(tally.accepted)  # a refused enqueue wrote nothing


@on_databases
@pytest.mark.parametrize("alias", ["default", "sqlite"])
def test_random_text_on_django_connection(alias: str) -> None:
    """Enqueue on Django's own connection (sync: Django's ORM is)."""
    app = Soniq(database=alias, max_args_bytes=MAX_ARGS_BYTES)
    trials = _trials(SEED + 1, 150, long_left=2)
    tally = Tally()
    _run_sync(app, trials, tally)
    assert tally.refused > 30 and len(tally.accepted) > 50
    assert committed_job_count(alias) == len(tally.accepted)


def test_random_results_through_the_worker_encoder() -> None:
    """What a job returns is stored as the worker encodes it: exactly, or, when it holds text
    the database cannot store, with that text escaped. Either way, text the database takes."""
    texts = Texts(SEED + 2, long_left=2)
    job = SimpleNamespace(id=str(uuid.uuid4()), task_name="fuzz.result")
    for _ in range(300):
        value = texts.value()
        # Long texts are part of the fuzz: no size cap here (MAX_RESULT_BYTES has its tests).
        encoded = encode_result(job, value, max_bytes=2**40)
        assert encoded is not None
        encoded.encode()
        assert "\x00" not in encoded
        stored = codec.loads(encoded)
        if any(_unstorable(text) for text in _texts_in(value)):
            assert stored == codec.escape_texts(value), "escaped, the rest kept"
        else:
            assert stored == value

"""Settings come lazily from settings.SONIQ (override_settings works); checks name the fix."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from soniq import ArgumentsTooLargeError, ConfigurationError, Soniq
from soniq.checks import check_soniq_settings
from soniq.django_backend import DjangoBackend
from tests.jobs import register_jobs


def _ids(**soniq: object) -> list[str]:
    with override_settings(SONIQ=soniq):
        return [message.id for message in check_soniq_settings()]


def test_settings_follow_override_settings() -> None:
    app = Soniq()
    assert app.settings.max_args_bytes == 256 * 1024
    with override_settings(SONIQ={"MAX_ARGS_BYTES": 10, "CONCURRENCY": 9}):
        assert app.settings.max_args_bytes == 10
        assert app.settings.concurrency == 9
    assert app.settings.max_args_bytes == 256 * 1024


def test_constructor_arguments_beat_django_settings() -> None:
    app = Soniq(concurrency=3)
    with override_settings(SONIQ={"CONCURRENCY": 9, "POLL_INTERVAL": 1}):
        assert (app.settings.concurrency, app.settings.poll_interval) == (3, 1.0)


def test_environment_is_the_lowest_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("SONIQ_CONCURRENCY", "6")
    with override_settings(SONIQ={"CONCURRENCY": 2}):
        settings = Soniq().settings
    assert (settings.poll_interval, settings.concurrency) == (0.5, 2)


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_database_alias_setting_picks_the_connection() -> None:
    app = Soniq()
    with override_settings(SONIQ={"DATABASE": "sqlite"}):
        backend = app.backend
        assert isinstance(backend, DjangoBackend) and backend.alias == "sqlite"
    backend = app.backend
    assert isinstance(backend, DjangoBackend) and backend.alias == "default"


@pytest.mark.django_db(databases=["default"])
def test_overridden_cap_applies_to_enqueue() -> None:
    jobs = register_jobs(Soniq())
    with override_settings(SONIQ={"MAX_ARGS_BYTES": 64}), pytest.raises(ArgumentsTooLargeError):
        jobs.send_email.enqueue(to="a", subject="s", body="x" * 100)


def test_bad_settings_raise_on_use() -> None:
    app = Soniq()
    with (
        override_settings(SONIQ={"CONCURRENCY": 0}),
        pytest.raises(ConfigurationError, match="CONCURRENCY"),
    ):
        _ = app.settings
    with (
        override_settings(SONIQ={"NOT_A_SETTING": 1}),
        pytest.raises(ConfigurationError, match="NOT_A_SETTING"),
    ):
        _ = app.settings


def test_unknown_alias_is_a_clear_error() -> None:
    with (
        override_settings(SONIQ={"DATABASE": "nope"}),
        pytest.raises(ConfigurationError, match="'nope'"),
    ):
        _ = Soniq().backend


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_checks_pass_on_the_project_settings() -> None:
    assert [m for m in run_checks() if m.id and m.id.startswith("soniq.")] == []


def test_check_ids() -> None:
    assert _ids(CONCURRENCY=0) == ["soniq.E001"]
    assert _ids(QUEUES=["ok", "not ok"]) == ["soniq.E001"]
    assert _ids(TYPO=1) == ["soniq.E001"]
    assert _ids(DATABASE="missing") == ["soniq.E002"]
    assert _ids(DATABASE_URL="postgresql://elsewhere/db") == ["soniq.W001"]
    assert _ids(DATABASE_URL="sqlite:///jobs.db") == ["soniq.E004"]
    with override_settings(SONIQ=["not", "a", "dict"]):
        assert [m.id for m in check_soniq_settings()] == ["soniq.E001"]
    with override_settings(USE_TZ=False, SONIQ={}):
        assert [m.id for m in check_soniq_settings()] == ["soniq.W002"]


def test_check_hint_names_the_setting() -> None:
    with override_settings(SONIQ={"HEARTBEAT_TIMEOUT": 1, "HEARTBEAT_INTERVAL": 5}):
        [message] = check_soniq_settings()
    assert "HEARTBEAT_TIMEOUT" in message.msg
    assert message.hint


def test_unsupported_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connections

    monkeypatch.setitem(
        connections.settings,
        "other",
        {**connections.settings["sqlite"], "ENGINE": "django.db.backends.dummy"},
    )
    with override_settings(SONIQ={"DATABASE": "other"}):
        assert [m.id for m in check_soniq_settings()] == ["soniq.E003"]

"""soniq.core.settings: layered, validated settings (defaults < env < Django dict < overrides)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from soniq import Soniq
from soniq.core.errors import ConfigurationError
from soniq.core.settings import (
    FIELD_NAMES,
    SoniqSettings,
    build_settings,
    is_valid_queue_name,
    settings_from_environ,
    worker_lease,
)

NO_ENV: dict[str, str] = {}


def test_defaults() -> None:
    settings = build_settings(environ=NO_ENV)
    assert settings.concurrency == 4
    assert settings.poll_interval == 5.0
    assert settings.heartbeat_interval == 5.0
    assert settings.heartbeat_timeout == 300.0
    assert settings.cleanup_interval == 300.0
    assert settings.error_retry_delay == 5.0
    assert settings.shutdown_timeout == 30.0
    assert settings.job_timeout == 300
    assert settings.jobs_modules == ()
    assert settings.queues is None
    assert settings.max_args_bytes == 262144
    assert settings.database == "default"
    assert settings.database_url is None
    assert settings.app is None
    assert settings.strict_enqueue is False
    assert settings.listen_notify is True


def test_settings_are_immutable() -> None:
    settings = build_settings(environ=NO_ENV)
    with pytest.raises(ValidationError):
        settings.concurrency = 9  # type: ignore[misc]


def test_soniq_settings_refuses_unknown_fields_directly() -> None:
    with pytest.raises(ValidationError):
        SoniqSettings(not_a_setting=1)  # type: ignore[call-arg]


# -- environment variables -------------------------------------------------------------------


def test_env_values_are_parsed() -> None:
    settings = build_settings(
        environ={
            "SONIQ_CONCURRENCY": "8",
            "SONIQ_POLL_INTERVAL": "0.5",
            "SONIQ_JOBS_MODULES": "a.jobs, b.jobs",
            "SONIQ_QUEUES": "emails,default , reports",
            "SONIQ_STRICT_ENQUEUE": "true",
            "SONIQ_LISTEN_NOTIFY": "0",
            "SONIQ_DATABASE_URL": "postgresql://db/app",
            "SONIQ_MAX_ARGS_BYTES": "1024",
        }
    )
    assert settings.concurrency == 8
    assert settings.poll_interval == 0.5
    assert settings.jobs_modules == ("a.jobs", "b.jobs")
    assert settings.queues == ("emails", "default", "reports")
    assert settings.strict_enqueue is True
    assert settings.listen_notify is False
    assert settings.database_url == "postgresql://db/app"
    assert settings.max_args_bytes == 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("False", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("OFF", False),
    ],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert build_settings(environ={"SONIQ_STRICT_ENQUEUE": text}).strict_enqueue is expected


def test_comma_separated_lists_skip_empty_parts() -> None:
    settings = build_settings(environ={"SONIQ_JOBS_MODULES": " a.jobs ,, b.jobs ,"})
    assert settings.jobs_modules == ("a.jobs", "b.jobs")


def test_unknown_soniq_env_vars_and_other_vars_are_ignored() -> None:
    environ = {
        "SONIQ_TEST_DATABASE_URL": "postgresql://elsewhere",
        "SONIQ_NOT_A_SETTING": "x",
        "PATH": "/usr/bin",
        "CONCURRENCY": "9",
        "soniq_concurrency": "9",
    }
    assert settings_from_environ(environ) == {}
    assert build_settings(environ=environ).concurrency == 4


def test_settings_from_environ_keys_by_field_name() -> None:
    found = settings_from_environ({"SONIQ_CONCURRENCY": "2", "SONIQ_QUEUES": "a"})
    assert found == {"concurrency": "2", "queues": "a"}


def test_settings_from_environ_reads_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SONIQ_CONCURRENCY", "11")
    assert settings_from_environ()["concurrency"] == "11"
    assert build_settings().concurrency == 11


def test_bad_env_value_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="CONCURRENCY") as info:
        build_settings(environ={"SONIQ_CONCURRENCY": "many"})
    assert "SONIQ_CONCURRENCY" in str(info.value)
    assert "'many'" in str(info.value)


# -- precedence and keys ---------------------------------------------------------------------


def test_precedence_env_then_django_then_overrides() -> None:
    environ = {"SONIQ_CONCURRENCY": "8", "SONIQ_POLL_INTERVAL": "2", "SONIQ_DATABASE": "env"}
    django_values = {"CONCURRENCY": 6, "POLL_INTERVAL": 3}
    overrides = {"concurrency": 7}
    settings = build_settings(environ=environ, django_values=django_values, overrides=overrides)
    assert settings.concurrency == 7  # overrides win
    assert settings.poll_interval == 3.0  # Django beats the environment
    assert settings.database == "env"  # the environment beats the defaults

    assert build_settings(environ=environ, django_values=django_values).concurrency == 6
    assert build_settings(environ=environ).concurrency == 8


@pytest.mark.parametrize(
    "key", ["CONCURRENCY", "concurrency", "Concurrency", "SONIQ_CONCURRENCY", "soniq_concurrency"]
)
def test_dict_keys_are_case_insensitive_and_may_carry_the_prefix(key: str) -> None:
    assert build_settings(environ=NO_ENV, django_values={key: 12}).concurrency == 12
    assert build_settings(environ=NO_ENV, overrides={key: 13}).concurrency == 13


def test_django_dict_accepts_lists_for_tuple_settings() -> None:
    settings = build_settings(
        environ=NO_ENV, django_values={"JOBS_MODULES": ["a.jobs"], "QUEUES": ["x", "y"]}
    )
    assert settings.jobs_modules == ("a.jobs",)
    assert settings.queues == ("x", "y")


def test_unknown_key_in_django_values_lists_the_known_keys() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_settings(environ=NO_ENV, django_values={"CONCURENCY": 4})
    message = str(info.value)
    assert "'CONCURENCY'" in message
    assert "settings.SONIQ" in message
    assert "Known:" in message
    for name in FIELD_NAMES:
        assert name.upper() in message


def test_unknown_key_in_overrides_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"Soniq\(\.\.\.\) arguments"):
        build_settings(environ=NO_ENV, overrides={"workers": 4})


# -- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"concurrency": 0}, "CONCURRENCY"),
        ({"concurrency": 1001}, "CONCURRENCY"),
        ({"concurrency": "four"}, "CONCURRENCY"),
        ({"poll_interval": 0}, "POLL_INTERVAL"),
        ({"heartbeat_interval": -1}, "HEARTBEAT_INTERVAL"),
        ({"heartbeat_timeout": 5.0}, "HEARTBEAT_TIMEOUT"),
        ({"heartbeat_interval": 60, "heartbeat_timeout": 30}, "HEARTBEAT_TIMEOUT"),
        ({"cleanup_interval": 0}, "CLEANUP_INTERVAL"),
        ({"error_retry_delay": -1}, "ERROR_RETRY_DELAY"),
        ({"job_timeout": 0}, "JOB_TIMEOUT"),
        ({"max_args_bytes": 0}, "MAX_ARGS_BYTES"),
        ({"database": ""}, "DATABASE"),
        ({"queues": ["ok", "bad name"]}, "QUEUES"),
        ({"queues": "-leading"}, "QUEUES"),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_setting(
    values: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_settings(environ=NO_ENV, overrides=values)
    message = str(info.value)
    assert message.startswith("Invalid soniq settings: ")
    assert f"SONIQ[{setting!r}]" in message
    assert f"SONIQ_{setting}" in message


def test_heartbeat_timeout_message_explains_the_rule() -> None:
    with pytest.raises(ConfigurationError, match=r"more than 1\.333 x HEARTBEAT_INTERVAL"):
        build_settings(
            environ=NO_ENV, overrides={"heartbeat_interval": 10, "heartbeat_timeout": 10}
        )


@pytest.mark.parametrize(("timeout", "valid"), [(13.3, False), (13.4, True), (300, True)])
def test_the_timeout_leaves_the_lease_longer_than_a_heartbeat(timeout: float, valid: bool) -> None:
    """A worker fences itself at 75% of the timeout: a heartbeat must come before that."""
    values = {"heartbeat_interval": 10, "heartbeat_timeout": timeout}
    if valid:
        settings = build_settings(environ=NO_ENV, overrides=values)
        for session in (False, True):
            assert worker_lease(settings, session=session) > settings.heartbeat_interval
        assert worker_lease(settings, session=True) == 0.75 * min(timeout, 20)
    else:
        with pytest.raises(ConfigurationError, match="HEARTBEAT_TIMEOUT"):
            build_settings(environ=NO_ENV, overrides=values)


def test_bad_queue_name_message_quotes_the_name() -> None:
    with pytest.raises(ConfigurationError, match="queue name 'bad name' is not valid"):
        build_settings(environ=NO_ENV, django_values={"QUEUES": ["bad name"]})


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_settings(environ=NO_ENV, overrides={"concurrency": 0, "poll_interval": -1})
    assert "CONCURRENCY" in str(info.value)
    assert "POLL_INTERVAL" in str(info.value)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="CONCURRENCY"):
        build_settings(environ=NO_ENV, overrides={"concurrency": 0})


def test_is_valid_queue_name() -> None:
    assert is_valid_queue_name("default")
    assert not is_valid_queue_name("bad name")
    assert not is_valid_queue_name(None)


# -- Soniq(...) construction -----------------------------------------------------------------


def test_soniq_with_bad_setting_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="CONCURRENCY"):
        Soniq(concurrency=0)


def test_soniq_with_unknown_setting_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="Unknown soniq setting 'workers'"):
        Soniq(database_url="postgresql://unused", workers=2)


def test_soniq_accepts_setting_names_in_any_case() -> None:
    app = Soniq(database_url="postgresql://unused", STRICT_ENQUEUE=True, Max_Args_Bytes=10)
    assert app.settings.strict_enqueue is True
    assert app.settings.max_args_bytes == 10


def test_soniq_construction_ignores_a_broken_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_CONCURRENCY", "not a number")
    Soniq(database_url="postgresql://unused")  # does not raise: only the arguments are checked


def test_soniq_settings_layer_its_arguments_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SONIQ_CONCURRENCY", "9")
    monkeypatch.setenv("SONIQ_POLL_INTERVAL", "0.25")
    app = Soniq(database_url="postgresql://unused", concurrency=2)
    assert app.settings.concurrency == 2
    assert app.settings.poll_interval == 0.25
    assert app.settings.database_url == "postgresql://unused"


def test_empty_queues_variable_means_every_queue() -> None:
    assert build_settings(environ={"SONIQ_QUEUES": ""}).queues is None
    assert build_settings(environ={"SONIQ_QUEUES": " , "}).queues is None
    assert build_settings(environ={"SONIQ_JOBS_MODULES": ""}).jobs_modules == ()

"""soniq.core.masking: what the admin and the worker's log lines hide."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import html
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable

import pydantic
import pytest

from soniq.core.masking import (
    DEFAULT_MASKED_NAMES,
    MASK,
    is_masked,
    mask,
    masked_repr,
    plain,
    redact,
    secrets_in,
)

NAMES = DEFAULT_MASKED_NAMES
SECRET = "tok_live_SECRET123"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "passwd",
        "db_pwd",
        "passphrase",
        "private_key",
        "privateKey",
        "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY",
        "session_cookie",
        "sessionid",
        "credentials",
        "X-API-KEY",
        "apiKey",
        "Authorization",
        "refresh_token",
        "jwt",
    ],
)
def test_default_names_cover_common_spellings(key: str) -> None:
    assert is_masked(key, NAMES)
    assert mask({key: "v", "user": "bob"}, NAMES) == {key: MASK, "user": "bob"}


@pytest.mark.parametrize("key", ["user", "email", "queue", "author", "amount", "count"])
def test_ordinary_names_are_shown(key: str) -> None:
    assert not is_masked(key, NAMES)


def test_a_masked_key_hides_everything_under_it_at_any_depth() -> None:
    value = {"a": [{"credentials": {"pw": "x", "user": "u"}}], "b": 1}
    assert mask(value, NAMES) == {"a": [{"credentials": MASK}], "b": 1}
    assert secrets_in({"credentials": {"pw": "hunter22"}}, NAMES) == {"hunter22"}


def test_an_empty_list_masks_nothing() -> None:
    assert mask({"password": "x"}, ()) == {"password": "x"}
    assert redact("password=abcdef", {"abcdef"}, ()) == f"password={MASK}"
    assert redact("password=abcdef", (), ()) == "password=abcdef"


@pytest.mark.parametrize(
    "written",
    [
        SECRET,
        SECRET.upper(),
        SECRET.lower(),
        repr(SECRET + "\n")[1:-1],
        json.dumps(SECRET + "é")[1:-1],
        json.dumps(SECRET + "é", ensure_ascii=False)[1:-1],
        urllib.parse.quote(SECRET + "/!", safe=""),
        urllib.parse.quote_plus(SECRET + " x"),
        html.escape(SECRET + "<&>"),
    ],
)
def test_secrets_are_hidden_in_their_written_forms(written: str) -> None:
    suffixes = ("", "\n", "é", "/!", " x", "<&>")
    secrets = secrets_in({"tokens": [SECRET + suffix for suffix in suffixes]}, NAMES)
    text = redact(f"before {written} after", secrets)
    assert SECRET.lower() not in text.lower(), text
    assert text.startswith("before ") and text.endswith(" after")


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("connect failed: password=hunter2222 host=db", "hunter2222"),
        ('{"api_key": "sk-0000001", "n": 1}', "sk-0000001"),
        ("{'client_secret': 'abc def ghi'}", "abc def ghi"),
        ("Authorization: Bearer eyJabc.def.ghi", "eyJabc.def.ghi"),
        ("call failed: token tok_live_SECRET123", "tok_live_SECRET123"),
        ("DB_PASSWORD: s3cr3tvalue", "s3cr3tvalue"),
        ("https://x/?access_key=AKIA1234&user=bob", "AKIA1234"),
    ],
)
def test_values_written_after_a_masked_name_are_hidden(text: str, hidden: str) -> None:
    result = redact(text, (), NAMES)
    assert hidden not in result and MASK in result, result


@pytest.mark.parametrize(
    "text",
    [
        "token expired",
        "the tokenizer failed at line 3",
        "password for bob was wrong",
        "session ended",
        "no credentials given",
    ],
)
def test_prose_about_secrets_is_left_alone(text: str) -> None:
    assert redact(text, (), NAMES) == text


def test_short_values_are_not_looked_for_in_text() -> None:
    assert secrets_in({"token": "eu"}, NAMES) == set()


def test_redaction_stays_fast_on_long_texts() -> None:
    started = time.perf_counter()
    redact("ab " * 1_000_000, {SECRET}, NAMES)
    redact("x" * 4_000_000 + " token=abcdef", {SECRET}, NAMES)
    # Linear: a few hundred milliseconds at most on 7 MB (not a timing test: a guard against a
    # pattern that rescans words, which took minutes).
    assert time.perf_counter() - started < 30


@dataclasses.dataclass
class Login:
    user: str
    password: str


class Keys(pydantic.BaseModel):
    api_key: str
    region: str


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(token='tok_opaque_123456')"


def test_a_repr_is_masked_as_structures_first() -> None:
    value = {
        "password": "hunter22",
        "when": {1, 2},
        "login": Login("bob", "pw-123456"),
        "keys": Keys(api_key="sk-live-9999", region="eu"),
        "opaque": Opaque(),
        "list": [("x", {"secret": "s3cr3t!"})],
    }
    shown = masked_repr(value, NAMES)
    for secret in ("hunter22", "pw-123456", "sk-live-9999", "tok_opaque_123456", "s3cr3t!"):
        assert secret not in shown, shown
    assert "{1, 2}" in shown and "Login(user='bob', password='********')" in shown
    assert "Keys(api_key='********', region='eu')" in shown


def test_a_repr_that_fails_is_described() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "repr failed" in masked_repr([Broken()], NAMES)


def test_plain_turns_objects_into_structures() -> None:
    assert plain({"k": Login("bob", "pw")}) == {
        "k": {"__type__": "Login", "user": "bob", "password": "pw"}
    }
    assert plain((1, {2})) == [1, [2]]
    deep: list[object] = []
    for _ in range(500):
        deep = [deep]
    plain(deep)  # bounded depth, no RecursionError
    mask(deep, NAMES)


def _finishes(call: Callable[[], object], within: float = 20.0) -> None:
    """Runs ``call`` in a thread and fails if it has not returned within ``within`` seconds:
    a guard against exponential or endless walks, not a timing target."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(within), "did not finish"


@pytest.mark.parametrize(
    "text",
    [
        'password="' + "\\" * 4000,
        "password" * 32000,
        "password-" * 30000,
        "password='" * 20000,
        "password={" * 20000,
        ("token " + "a1" * 2000 + " ") * 200,
    ],
    ids=["backslashes", "names", "names-dashes", "quotes", "braces", "long-words"],
)
def test_adversarial_texts_are_redacted_in_linear_time(text: str) -> None:
    _finishes(lambda: redact(text, {SECRET}, NAMES))


def test_values_that_contain_themselves_or_share_parts_are_walked_once() -> None:
    looped: list[object] = []
    looped.append(looped)
    looped.append(looped)
    shared: list[object] = [1]
    for _ in range(60):
        shared = [shared, shared]  # 2**60 paths to the same list
    for value in (
        logging.getLogger("soniq.tests.masking"),
        argparse.ArgumentParser(),
        looped,
        shared,
    ):
        _finishes(lambda value=value: masked_repr(value, NAMES, limit=2000))
        _finishes(lambda value=value: plain(value))
        _finishes(lambda value=value: secrets_in(value, NAMES))
        _finishes(lambda value=value: mask(value, NAMES))


def test_named_tuples_slots_and_name_value_pairs_are_masked() -> None:
    pair = collections.namedtuple("Pair", "user password")
    assert masked_repr(pair("bob", "hunter22"), NAMES) == "Pair(user='bob', password='********')"

    class Slotted:
        __slots__ = ("pwd",)

        def __init__(self, pwd: str) -> None:
            self.pwd = pwd

        def __repr__(self) -> str:
            return f"Slotted({self.pwd})"

    assert "hunter22" not in masked_repr(Slotted("hunter22"), NAMES)
    value = {
        "headers": [["Authorization", "Bearer abcdef123"]],
        "env": [{"name": "DB_PASSWORD", "value": "hunter22"}],
    }
    assert mask(value, NAMES) == {
        "headers": [["Authorization", MASK]],
        "env": [{"name": "DB_PASSWORD", "value": MASK}],
    }
    assert secrets_in(value, NAMES) == {"Bearer abcdef123", "hunter22"}


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("connection to postgres://app:hunter22@db:5432/x failed", "hunter22"),
        ("secret => abcdef123", "abcdef123"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----", "MIIEabc"),
        ('password="abc\\"def', "abc"),
    ],
)
def test_urls_arrows_keys_and_unclosed_quotes(text: str, hidden: str) -> None:
    assert hidden not in redact(text, (), NAMES)

"""Masking that holds on every admin page: the default names, a secret repeated in text in any
of its written forms, results that were no JSON, dedup keys, and error histories cut short."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from soniq.admin.display import MASK
from tests.admin.conftest import Rows, change, changelist, html, soniq_on

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

JOBS = changelist("job")
DEAD = changelist("deadletterjob")


def leaked(page: str, *secrets: str) -> list[str]:
    """The secrets (or a 6-character piece of one: they are random, a piece is no English
    word) that reach ``page``, in any case."""
    lowered = page.lower()
    return [
        secret
        for secret in secrets
        if any(secret[i : i + 6].lower() in lowered for i in range(len(secret) - 5))
    ]


# -- the default names ------------------------------------------------------------------------

# Each under a key the default ADMIN_MASKED_ARGS covers, though the key is not one of the names.
DEFAULT_NAMED = {
    "passwd": "Qx7pwdV4lu3a",
    "private_key": "Qx7pkV4lu3b",
    "aws_access_key_id": "Qx7AKIAz9c",
    "session_cookie": "Qx7ck1eV4ld",
    "credentials": {"user": "Qx7crUs3re", "pw": "Qx7crPw9f"},
}
DEFAULT_SECRETS = (
    "Qx7pwdV4lu3a",
    "Qx7pkV4lu3b",
    "Qx7AKIAz9c",
    "Qx7ck1eV4ld",
    "Qx7crUs3re",
    "Qx7crPw9f",
)


def test_the_default_names_are_masked_on_every_job_page(rows: Rows, superuser: Client) -> None:
    job = rows.job(status="done", args=DEFAULT_NAMED, result=DEFAULT_NAMED)
    dead = rows.dead_letter(args=DEFAULT_NAMED, errors=[{"attempt": 1, "message": DEFAULT_NAMED}])
    pages = {
        "job list": html(superuser.get(JOBS)),
        "job": html(superuser.get(change("job", job.pk))),
        "dead letter list": html(superuser.get(DEAD)),
        "dead letter": html(superuser.get(change("deadletterjob", dead.pk))),
    }
    for name, page in pages.items():
        assert leaked(page, *DEFAULT_SECRETS) == [], name
    for key in DEFAULT_NAMED:  # each key still shown, its whole value replaced
        assert f"&quot;{key}&quot;: &quot;{MASK}&quot;" in pages["job"], key


def test_the_default_names_are_masked_in_schedules(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule(args=DEFAULT_NAMED)
    for url in (changelist("schedule"), change("schedule", schedule.pk)):
        assert leaked(html(superuser.get(url)), *DEFAULT_SECRETS) == [], url


# -- a secret repeated in text -----------------------------------------------------------------

SECRET = "Tr0ub4dor&3 'horse' \"staple\" \\ é"


def _written_forms() -> dict[str, str]:
    """The ways code commonly writes a secret into a message or a traceback."""
    return {
        "repr": repr(SECRET),
        "json": json.dumps(SECRET),
        "json ascii": json.dumps(SECRET, ensure_ascii=True),
        "url": quote(SECRET, safe=""),
        "upper": SECRET.upper(),
    }


@pytest.mark.parametrize("form", sorted(_written_forms()))
def test_an_argument_secret_is_hidden_in_every_written_form(
    rows: Rows, superuser: Client, form: str
) -> None:
    written = _written_forms()[form]
    error = {
        "attempt": 1,
        "error_type": "requests.HTTPError",
        "message": f"login failed for {written}",
        "traceback": f"Traceback (most recent call last):\n  call(secret={written})\nHTTPError",
    }
    args = {"user": "ada", "password": SECRET}
    job = rows.job(status="done", args=args, errors=[error], result={"echo": f"got {written}"})
    dead = rows.dead_letter(args=args, errors=[error])
    for url in (JOBS, change("job", job.pk), DEAD, change("deadletterjob", dead.pk)):
        page = html(superuser.get(url))
        assert written not in page and html_escaped(written) not in page, url
        assert "Tr0ub4dor" not in page and "TR0UB4DOR" not in page, url


def html_escaped(text: str) -> str:
    from html import escape

    return escape(text)


def test_values_written_after_a_masked_name_are_hidden_without_being_arguments(
    rows: Rows, superuser: Client
) -> None:
    message = (
        "GET https://api.example.com/?api_key=sk_live_4242abcd failed; "
        "headers {'Authorization': 'Bearer eyJhbGciOi.payload.sig'}; token tok_live_123456789"
    )
    error = {"attempt": 1, "error_type": "HTTPError", "message": message, "traceback": message}
    job = rows.job(args={"note": "db password=pg-pass-9876 please"}, errors=[error])
    dead = rows.dead_letter(errors=[error])
    hidden = ("sk_live_4242abcd", "eyJhbGciOi", "tok_live_123456789", "pg-pass-9876")
    for url in (JOBS, change("job", job.pk), DEAD, change("deadletterjob", dead.pk)):
        assert leaked(html(superuser.get(url)), *hidden) == [], url
    assert "api.example.com" in html(superuser.get(change("job", job.pk)))


def test_a_secret_across_the_list_cut_is_not_half_shown(rows: Rows, superuser: Client) -> None:
    # The cut of the last-error column (80 characters) falls in the middle of the secret.
    secret = "sk_Zq81Hw03Jd77Vb52Lm"
    message = "x" * 60 + secret + " and more"
    rows.dead_letter(args={"api_key": secret}, errors=[{"error_type": "E", "message": message}])
    rows.job(args={"blob": "y" * 50 + "api_key=" + secret})
    assert leaked(html(superuser.get(DEAD)), secret) == []
    assert leaked(html(superuser.get(JOBS)), secret) == []


# -- results that were no JSON -----------------------------------------------------------------


def test_an_unserializable_result_is_shown_masked(rows: Rows, superuser: Client) -> None:
    secret = "res-secret-5678"
    stored = {  # how the worker stores a result that was no JSON: a masked structure
        "unserializable_result": {
            "__repr__": f"Creds(user='ada', password='{secret}')",
            "__attributes__": {"user": "ada", "password": MASK},
        }
    }
    job = rows.job(status="done", args={"user": "ada"}, result=stored)
    page = html(superuser.get(change("job", job.pk)))
    assert leaked(page, secret) == []
    assert "unserializable_result" in page and "Creds(user=" in page


def test_a_result_stored_as_its_repr_is_redacted(rows: Rows, superuser: Client) -> None:
    # Written before the worker stored structures: the repr of an object, unmasked.
    job = rows.job(
        status="done",
        args={"token": "arg-token-4321"},
        result="Session(token='arg-token-4321', api_key='repr-key-8765')",
    )
    page = html(superuser.get(change("job", job.pk)))
    assert leaked(page, "arg-token-4321", "repr-key-8765") == []
    assert "Session(" in page


def test_a_numeric_secret_is_hidden_under_another_key(rows: Rows, superuser: Client) -> None:
    job = rows.job(args={"card_pin_secret": 482913, "reference": 482913, "count": 3})
    page = html(superuser.get(change("job", job.pk)))
    assert "482913" not in page
    assert "&quot;count&quot;: 3" in page


# -- dedup keys --------------------------------------------------------------------------------


def test_a_dedup_key_is_shown_redacted(rows: Rows, superuser: Client) -> None:
    job = rows.job(args={"user": 7}, dedup_key="reset:user=7:token=tok_9f8e7d6c5b4a")
    page = html(superuser.get(change("job", job.pk)))
    assert "tok_9f8e7d6c5b4a" not in page
    assert f"reset:user=7:token={MASK}" in page


def _dedup_rows(rows: Rows) -> tuple[Any, Any, str]:
    key = "order-77-dedup-visible-key"
    job = rows.job(args={"order": 77}, dedup_key=key)
    dead = rows.dead_letter(args={"order": 77}, dedup_key=key)
    return job, dead, key


def test_dedup_keys_are_shown_by_default(rows: Rows, superuser: Client) -> None:
    job, dead, key = _dedup_rows(rows)
    assert key in html(superuser.get(change("job", job.pk)))
    assert key in html(superuser.get(change("deadletterjob", dead.pk)))


def test_admin_hide_dedup_keys_shows_them_nowhere(rows: Rows, superuser: Client) -> None:
    job, dead, key = _dedup_rows(rows)
    with soniq_on(rows.alias, ADMIN_HIDE_DEDUP_KEYS=True):
        for url in (JOBS, DEAD, change("job", job.pk), change("deadletterjob", dead.pk)):
            page = html(superuser.get(url))
            assert key not in page, url
            assert "dedup key" not in page.lower(), url  # not even the field's label
        for url in (JOBS, DEAD):
            # No oracle: neither a filter on the key nor a search finds rows by it.
            assert superuser.get(url, {"dedup_key": key}).status_code == 400
            assert superuser.get(url, {"dedup_key__startswith": "order"}).status_code == 400
            searched = superuser.get(url, {"q": key})
            assert searched.context["cl"].result_count == 0, url


# -- locks -------------------------------------------------------------------------------------


def test_a_lock_is_shown_on_both_detail_pages_redacted(rows: Rows, superuser: Client) -> None:
    job = rows.job(args={"customer": 42}, lock="customer:42")
    dead = rows.dead_letter(args={"api_token": "tok_1a2b3c4d5e"}, lock="key:tok_1a2b3c4d5e")
    assert "customer:42" in html(superuser.get(change("job", job.pk)))
    page = html(superuser.get(change("deadletterjob", dead.pk)))
    assert "tok_1a2b3c4d5e" not in page
    assert f"key:{MASK}" in page


# -- error histories cut short -----------------------------------------------------------------


def test_dropped_error_entries_are_counted_on_the_detail_pages(
    rows: Rows, superuser: Client
) -> None:
    kept = [{"attempt": 24, "error_type": "ValueError", "message": "last"}]
    job = rows.job(errors=kept, errors_dropped=23)
    dead = rows.dead_letter(errors=kept, errors_dropped=1)
    plain = rows.dead_letter(errors=kept)
    job_page = html(superuser.get(change("job", job.pk)))
    assert "23 earlier failed attempts not kept" in job_page
    dead_page = html(superuser.get(change("deadletterjob", dead.pk)))
    assert "1 earlier failed attempt not kept" in dead_page
    assert "not kept" not in html(superuser.get(change("deadletterjob", plain.pk)))
    # The note comes before the attempts it explains.
    assert re.search(r"23 earlier failed attempts not kept.*Attempt 24", job_page, re.DOTALL)

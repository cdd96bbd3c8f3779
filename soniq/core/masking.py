"""Masking of secrets in job data, for everything soniq shows: the admin, the worker's log lines.

Two layers, both driven by one list of names (the ``ADMIN_MASKED_ARGS`` setting):

- **Structures.** Any key, at any depth of a job's arguments, result or error entries, whose
  name contains one of the names (ignoring case and punctuation: ``api_key`` also covers
  ``apiKey``, ``API-KEY`` and ``x_api_key``) has its value replaced by :data:`MASK`. Values that
  are not JSON are turned into structures first (:func:`plain`), so a masked key inside an
  object is masked before any ``repr`` could print it.
- **Free text** (error messages, tracebacks, a ``repr``). The values hidden under masked keys are
  hidden wherever they appear, also in their escaped (``repr``, JSON), URL-encoded,
  HTML-escaped and case-changed forms; and text shaped like ``password=...``,
  ``"api_key": "..."`` or ``token tok_live_...`` has its value hidden even when the job's data
  never held it.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "********"

# Common spellings of credentials; a key matches when its name contains one of them, ignoring
# case and punctuation.
DEFAULT_MASKED_NAMES: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "api_key",
    "access_key",
    "private_key",
    "credential",
    "authorization",
    "session",
    "cookie",
    "jwt",
)

# Shorter masked values are not looked for in free text: "1" or "eu" would mask half a page.
MIN_SECRET_CHARS = 4
# Deeper structures are summarised: masking must not recurse without end on a crafted value.
MAX_DEPTH = 100


def normalized(name: object) -> str:
    """A name as masking compares it: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@functools.lru_cache(maxsize=64)
def _needles(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(needle for name in names if (needle := normalized(name))))


def is_masked(key: object, names: Iterable[str]) -> bool:
    """Whether a key called ``key`` is masked under ``names``."""
    text = normalized(key)
    return any(needle in text for needle in _needles(tuple(names)))


def mask(value: Any, names: Iterable[str]) -> Any:
    """``value`` with every dict entry whose key is masked (:func:`is_masked`) replaced by
    :data:`MASK`, in nested dicts and lists too. Other values are returned as they are."""
    needles = _needles(tuple(names))
    return _mask(value, needles, 0) if needles else value


def _mask(value: Any, needles: tuple[str, ...], depth: int) -> Any:
    if depth > MAX_DEPTH:
        return MASK
    if isinstance(value, dict):
        return {
            key: MASK if _hit(key, needles) else _mask(item, needles, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, needles, depth + 1) for item in value]
    return value


def _hit(key: object, needles: tuple[str, ...]) -> bool:
    text = normalized(key)
    return any(needle in text for needle in needles)


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-like structures (dicts with text keys, lists, scalars), so that it can
    be masked before it is shown: pydantic models and dataclasses become dicts of their
    fields, other mappings dicts, sequences and sets lists; an object that is none of these
    becomes ``{"__repr__": repr(value)}`` with its attributes, when it has any, beside it."""
    if depth > MAX_DEPTH:
        return "..."
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    nested = depth + 1
    if isinstance(value, dict):
        return {str(key): plain(item, nested) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item, nested) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return {"__type__": type(value).__name__, **plain(dump(), nested)}
        except Exception:  # a broken model is shown by its repr below
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **plain(fields, nested)}
    shown: dict[str, Any] = {"__repr__": _safe_repr(value)}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and attributes:
        shown["__attributes__"] = plain(attributes, nested)
    return shown


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a repr that fails must not fail the caller
        return f"<{type(value).__name__} whose repr failed: {type(exc).__name__}>"


class _Shown:
    """Prints as the text it holds: a masked stand-in inside a structure being repr'd."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def masked_repr(value: Any, names: Iterable[str]) -> str:
    """``repr(value)`` with masked keys masked first, in dicts and in the fields of pydantic
    models and dataclasses at any depth, and then the hidden values, and values written after
    a masked name, redacted from the text (an object's own ``repr`` may print them)."""
    names = tuple(names)
    needles = _needles(names)
    text = _safe_repr(_masked_copy(value, needles, 0))
    return redact(text, secrets_in(plain(value), names), names)


def _masked_copy(value: Any, needles: tuple[str, ...], depth: int) -> Any:
    if depth > MAX_DEPTH:
        return _Shown("...")
    nested = depth + 1
    if isinstance(value, dict):
        return {
            key: _Shown(repr(MASK)) if _hit(key, needles) else _masked_copy(item, needles, nested)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        items = [_masked_copy(item, needles, nested) for item in value]
        return items if isinstance(value, list) else tuple(items)
    fields = _fields_of(value)
    if fields is None:
        return value
    shown = ", ".join(
        f"{name}={MASK!r}"
        if _hit(name, needles)
        else f"{name}={_safe_repr(_masked_copy(item, needles, nested))}"
        for name, item in fields.items()
    )
    return _Shown(f"{type(value).__name__}({shown})")


def _fields_of(value: Any) -> dict[str, Any] | None:
    """The fields of a pydantic model or a dataclass instance, else ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    model_fields = getattr(type(value), "model_fields", None)
    if isinstance(model_fields, dict) and not isinstance(value, type):
        return {name: getattr(value, name, None) for name in model_fields}
    return None


def secrets_in(value: Any, names: Iterable[str]) -> set[str]:
    """The values :func:`mask` hides in ``value`` (every scalar under a masked key, as text),
    so that they can be hidden in free text too: messages, tracebacks."""
    needles = _needles(tuple(names))
    found: set[str] = set()
    if needles:
        _collect(value, needles, found, hidden=False, depth=0)
    return {secret for secret in found if len(secret) >= MIN_SECRET_CHARS}


def _collect(
    value: Any, needles: tuple[str, ...], found: set[str], *, hidden: bool, depth: int
) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _collect(item, needles, found, hidden=hidden or _hit(key, needles), depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _collect(item, needles, found, hidden=hidden, depth=depth + 1)
    elif hidden and value is not None and not isinstance(value, bool):
        found.add(str(value))


def _forms(secret: str) -> set[str]:
    """The ways a secret is commonly written into text besides itself."""
    forms = {
        secret,
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


@functools.lru_cache(maxsize=256)
def _secrets_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        forms |= _forms(secret)
    if not forms:
        return None
    # Longest first, so that a secret containing another is hidden whole.
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    return re.compile("|".join(re.escape(form) for form in ordered), re.IGNORECASE)


# A value after a masked name in text: `password=hunter2`, `"api_key": "sk-1"`,
# `Authorization: Bearer abc`, `token='x'`. Quoted values run to their closing quote; bare ones to
# the next blank or delimiter.
_ASSIGNED = (
    r"(?P<key>{names})(?P<sep>[\"']?\s*[:=]\s*(?:(?:bearer|basic|token)\s+)?)"
    r"(?:(?P<quote>[\"'])(?P<quoted>(?:\\.|(?!(?P=quote)).)*)(?P=quote)"
    r"|(?P<braced>\{{[^{{}}]*\}}|\[[^\[\]]*\])"
    r"|(?P<bare>[^\s,;&\"'(){{}}\[\]<>]+))"
)
# A credential-looking word after a masked name in prose: "token tok_live_SECRET123". Only words
# with a digit or an underscore, of 8 characters or more, so that "token expired" stays.
_SPOKEN = r"(?P<skey>{names})(?P<ssep>\s+)(?P<word>(?=[^\s]*[\d_])[\w\-.~+/=]{{8,}})"


@functools.lru_cache(maxsize=64)
def _named_pattern(needles: tuple[str, ...]) -> re.Pattern[str] | None:
    if not needles:
        return None
    # A masked name as written, its letters optionally split by _ - or ., and the rest of its
    # word. What precedes it in its word ("my_" of "my_password") is left as it is: only the
    # value after it is replaced, and no match has to rescan a long word from its start.
    spelled = "|".join(
        r"[_.-]?".join(re.escape(char) for char in needle)
        for needle in sorted(needles, key=len, reverse=True)
    )
    names = rf"(?:{spelled})[\w.-]*"
    return re.compile(
        f"{_ASSIGNED.format(names=names)}|{_SPOKEN.format(names=names)}", re.IGNORECASE
    )


def _hide_named(found: re.Match[str]) -> str:
    if found.group("key") is not None:
        quote = found.group("quote") or ""
        return f"{found.group('key')}{found.group('sep')}{quote}{MASK}{quote}"
    return f"{found.group('skey')}{found.group('ssep')}{MASK}"


def redact(text: str, secrets: Iterable[str], names: Iterable[str] = ()) -> str:
    """``text`` with every occurrence of a secret (in any of its usual written forms, in any
    case) replaced by :data:`MASK`, and, when ``names`` are given, every value written after
    one of those names (``password=...``, ``"token": "..."``) as well."""
    pattern = _secrets_pattern(frozenset(secret for secret in secrets if secret))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    needles = _needles(tuple(names))
    named = _named_pattern(needles)
    # The pattern tries every name at every position: look for it only in text that has the
    # start of a name somewhere (a fast scan in C).
    if named is not None and _mentions(text.lower(), needles):
        text = named.sub(_hide_named, text)
    return text


_SEPARATORS = str.maketrans("", "", "_.-")


def _mentions(lowered: str, needles: tuple[str, ...]) -> bool:
    # As the pattern spells names: separators between the letters are allowed.
    squeezed = lowered.translate(_SEPARATORS)
    return any(needle in squeezed for needle in needles)

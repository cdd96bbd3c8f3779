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

import contextlib
import dataclasses
import functools
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
# Containers one walk enters at most (see _Budget).
MAX_NODES = 10_000


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
    :data:`MASK`, in nested dicts and lists too, and the value of a name/value pair whose name
    is masked (``["Authorization", "Bearer ..."]``, ``{"name": "DB_PASSWORD", "value": ...}``).
    Other values are returned as they are."""
    needles = _needles(tuple(names))
    return _mask(value, needles, _Budget()) if needles else value


class _Budget:
    """Bounds one walk through a structure: at most :data:`MAX_NODES` containers, each
    entered once and never deeper than :data:`MAX_DEPTH`. A value shared in many places, or
    that contains itself (a logger, a parser, a list appended to itself), must not make a walk
    take exponential time or never end."""

    __slots__ = ("kept", "left", "seen")

    def __init__(self) -> None:
        self.left = MAX_NODES
        self.seen: set[int] = set()
        # The values entered, kept alive for the walk: an id is unique only among live
        # objects, and a temporary (a model's field dict) freed meanwhile would lend its id
        # to the next one.
        self.kept: list[Any] = []

    def enter(self, value: Any, depth: int) -> bool:
        if depth > MAX_DEPTH or self.left <= 0 or id(value) in self.seen:
            return False
        self.left -= 1
        self.seen.add(id(value))
        self.kept.append(value)
        return True


# Keys that name the value beside them: {"name": "DB_PASSWORD", "value": "..."}.
_NAMING_KEYS = ("name", "key", "header", "field", "variable")
_VALUE_KEYS = ("value", "val")


def _named_pair(value: Any, needles: tuple[str, ...]) -> Any:
    """The key (or index) of the value a name/value pair hides, else ``None``: ``[name,
    value]`` whose name is masked, or a dict whose naming key holds a masked name."""
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and _hit(value[0], needles):
            return 1
        return None
    for naming in _NAMING_KEYS:
        named = value.get(naming)
        if isinstance(named, str) and _hit(named, needles):
            return next((key for key in _VALUE_KEYS if key in value), None)
    return None


def _mask(value: Any, needles: tuple[str, ...], budget: _Budget, depth: int = 0) -> Any:
    if not isinstance(value, (dict, list)):
        return value
    if not budget.enter(value, depth):
        return MASK
    hidden = _named_pair(value, needles)
    if isinstance(value, dict):
        return {
            key: MASK
            if key == hidden or _hit(key, needles)
            else _mask(item, needles, budget, depth + 1)
            for key, item in value.items()
        }
    return [
        MASK if index == hidden else _mask(item, needles, budget, depth + 1)
        for index, item in enumerate(value)
    ]


def _hit(key: object, needles: tuple[str, ...]) -> bool:
    text = normalized(key)
    return any(needle in text for needle in needles)


def plain(value: Any) -> Any:
    """``value`` as JSON-like structures (dicts with text keys, lists, scalars), so that it can
    be masked before it is shown: pydantic models, dataclasses and named tuples become dicts
    of their fields, other mappings dicts, sequences and sets lists; an object that is none of
    these becomes ``{"__repr__": repr(value)}`` with its attributes (``__dict__`` or
    ``__slots__``), when it has any, beside it. Bounded like :func:`mask`: what the budget
    does not reach, or a value met again, is ``"..."``."""
    return _plain(value, _Budget(), 0)


def _plain(value: Any, budget: _Budget, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not budget.enter(value, depth):
        return "..."
    nested = depth + 1
    if isinstance(value, dict):
        return {str(key): _plain(item, budget, nested) for key, item in value.items()}
    fields = _fields_of(value)
    if fields is not None:
        shown_fields = _plain(fields, budget, nested)
        if not isinstance(shown_fields, dict):  # out of budget
            return "..."
        return {"__type__": type(value).__name__, **shown_fields}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item, budget, nested) for item in value]
    shown: dict[str, Any] = {"__repr__": _safe_repr(value)}
    attributes = _attributes_of(value)
    if attributes:
        shown["__attributes__"] = _plain(attributes, budget, nested)
    return shown


def _attributes_of(value: Any) -> dict[str, Any]:
    """An object's attributes: its ``__dict__`` and the ``__slots__`` of its classes."""
    found: dict[str, Any] = {}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        found.update(attributes)
    for kind in type(value).__mro__:
        slots = kind.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if isinstance(slot, str) and slot not in ("__dict__", "__weakref__"):
                with contextlib.suppress(AttributeError):  # a slot never set
                    found.setdefault(slot, getattr(value, slot))
    return found


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


def masked_repr(value: Any, names: Iterable[str], limit: int | None = None) -> str:
    """``repr(value)`` with masked keys masked first, in dicts, name/value pairs and the
    fields of pydantic models, dataclasses and named tuples at any depth, and then the hidden
    values, and values written after a masked name, redacted from the text (an object's own
    ``repr`` may print them). With ``limit``, the text is cut to about that many characters
    (before the redaction, which a long text would make slow; a secret cut in two is not
    found, so cut twice as long, redact, and cut again)."""
    names = tuple(names)
    needles = _needles(names)
    text = _safe_repr(_masked_copy(value, needles, _Budget(), 0))
    if limit is not None:
        text = text[: 2 * limit]
    text = redact(text, secrets_in(plain(value), names), names)
    return text if limit is None else text[:limit]


def _masked_copy(value: Any, needles: tuple[str, ...], budget: _Budget, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not budget.enter(value, depth):
        return _Shown("...")
    nested = depth + 1
    fields = _fields_of(value)
    if fields is not None:
        shown = ", ".join(
            f"{name}={MASK!r}"
            if _hit(name, needles)
            else f"{name}={_safe_repr(_masked_copy(item, needles, budget, nested))}"
            for name, item in fields.items()
        )
        return _Shown(f"{type(value).__name__}({shown})")
    if isinstance(value, dict):
        hidden = _named_pair(value, needles)
        return {
            key: _Shown(repr(MASK))
            if key == hidden or _hit(key, needles)
            else _masked_copy(item, needles, budget, nested)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        hidden = _named_pair(value, needles)
        items = [
            _Shown(repr(MASK)) if index == hidden else _masked_copy(item, needles, budget, nested)
            for index, item in enumerate(value)
        ]
        return items if isinstance(value, list) else tuple(items)
    return value


def _fields_of(value: Any) -> dict[str, Any] | None:
    """The fields of a pydantic model, a dataclass instance or a named tuple, else ``None``."""
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    model_fields = getattr(type(value), "model_fields", None)
    if isinstance(model_fields, dict):
        return {name: getattr(value, name, None) for name in model_fields}
    if isinstance(value, tuple) and hasattr(value, "_asdict") and hasattr(value, "_fields"):
        return dict(zip(value._fields, value, strict=False))
    return None


def secrets_in(value: Any, names: Iterable[str]) -> set[str]:
    """The values :func:`mask` hides in ``value`` (every scalar under a masked key or in a
    masked name/value pair, as text), so that they can be hidden in free text too: messages,
    tracebacks."""
    needles = _needles(tuple(names))
    found: set[str] = set()
    if needles:
        _collect(value, needles, found, _Budget(), hidden=False, depth=0)
    return {secret for secret in found if len(secret) >= MIN_SECRET_CHARS}


def _collect(
    value: Any,
    needles: tuple[str, ...],
    found: set[str],
    budget: _Budget,
    *,
    hidden: bool,
    depth: int,
) -> None:
    if isinstance(value, (dict, list)):
        if not budget.enter(value, depth):
            return
        pair = _named_pair(value, needles)
        entries = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in entries:
            secret = hidden or key == pair or (isinstance(value, dict) and _hit(key, needles))
            _collect(item, needles, found, budget, hidden=secret, depth=depth + 1)
    elif hidden and value is not None and not isinstance(value, bool):
        found.add(str(value))


def _forms(secret: str) -> set[str]:
    """The ways a secret is commonly written into text besides itself."""
    # Imported here: the html package loads its table of entities (about 0.5 MiB), which a
    # worker whose jobs never fail never needs.
    import html

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
# `Authorization: Bearer abc`, `token='x'`, `secret => x`. Quoted values run to their closing
# quote (or, unclosed, as far as a value goes); bare ones to the next blank or delimiter. Every
# repetition is bounded, and no two branches can match the same characters, so that no text
# (an unclosed quote followed by backslashes, a name repeated thousands of times) makes the
# search backtrack: the time stays linear in the text.
_VALUE_CHARS = 512
_ASSIGNED = (
    r"(?P<key>{names})(?P<sep>[\"']?\s{{0,8}}(?:=>|[:=])\s{{0,8}}"
    r"(?:(?:bearer|basic|token)\s{{1,8}})?)"
    r"(?:(?P<quote>[\"'])(?P<quoted>(?:\\.|(?!(?P=quote))[^\\\n]){{0,{chars}}})(?P<close>(?P=quote))?"
    r"|(?P<braced>\{{[^{{}}]{{0,{chars}}}\}}|\[[^\[\]]{{0,{chars}}}\])"
    r"|(?P<bare>[^\s,;&\"'(){{}}\[\]<>]{{1,{chars}}}))"
)
# A credential-looking word after a masked name in prose: "token tok_live_SECRET123". Only words
# with a digit or an underscore, of 8 characters or more, so that "token expired" stays.
_SPOKEN = (
    r"(?P<skey>{names})(?P<ssep>\s{{1,8}})"
    r"(?P<word>(?=[^\s]{{0,{chars}}}?[\d_])[\w\-.~+/=]{{8,{chars}}})"
)
# The password of a URL: scheme://user:password@host.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]{0,30}://[^\s:/@]{0,256}:)[^\s/@]{1,512}@")
# The body of a PEM private key.
_PEM_KEY = re.compile(
    r"(?P<begin>-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----).{0,100000}?(?P<end>-----END [A-Z ]{0,40}"
    r"PRIVATE KEY-----)",
    re.DOTALL,
)


@functools.lru_cache(maxsize=64)
def _named_pattern(needles: tuple[str, ...]) -> re.Pattern[str] | None:
    if not needles:
        return None
    # A masked name as written, its letters optionally split by _ - or ., and the rest of its
    # word (at most 64 characters of it). What precedes it in its word ("my_" of
    # "my_password") is left as it is: only the value after it is replaced.
    spelled = "|".join(
        r"[_.-]?".join(re.escape(char) for char in needle)
        for needle in sorted(needles, key=len, reverse=True)
    )
    names = rf"(?:{spelled})[\w.-]{{0,64}}"
    assigned = _ASSIGNED.format(names=names, chars=_VALUE_CHARS)
    spoken = _SPOKEN.format(names=names, chars=_VALUE_CHARS)
    return re.compile(f"{assigned}|{spoken}", re.IGNORECASE)


def _hide_named(found: re.Match[str]) -> str:
    if found.group("key") is not None:
        quote = found.group("quote") or ""
        close = quote if found.group("close") else ""
        return f"{found.group('key')}{found.group('sep')}{quote}{MASK}{close}"
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
    if named is None:
        return text
    # The pattern tries every name at every position: look for it only in text that has a
    # name somewhere (a fast scan in C).
    if _mentions(text.lower(), needles):
        text = named.sub(_hide_named, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda found: f"{found.group('head')}{MASK}@", text)
    if "PRIVATE KEY-----" in text:
        text = _PEM_KEY.sub(lambda found: f"{found.group('begin')}{MASK}{found.group('end')}", text)
    return text


_SEPARATORS = str.maketrans("", "", "_.-")


def _mentions(lowered: str, needles: tuple[str, ...]) -> bool:
    # As the pattern spells names: separators between the letters are allowed.
    squeezed = lowered.translate(_SEPARATORS)
    return any(needle in squeezed for needle in needles)

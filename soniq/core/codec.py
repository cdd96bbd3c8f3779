"""The JSON codec for job arguments and results.

Strict on purpose: a value that JSON would store differently from what the caller passed
(a set, bytes, a tuple key, NaN, an arbitrary object, a non-string dict key) is refused with the
path of the offending value, instead of being silently changed or crashing the worker later.
Tuples are the one tolerated conversion: they arrive in the job as lists.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

_SCALARS = (int, bool, type(None))
# PostgreSQL's jsonb cannot hold U+0000; refusing it here beats a database error mid-insert.
_NUL = "text contains a NUL character (\\x00), which PostgreSQL cannot store"
# A lone surrogate (U+D800 to U+DFFF) is not valid Unicode and has no UTF-8 encoding: it usually
# comes from bytes decoded with errors="surrogateescape" (file names, environment variables).
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as it is (a NUL, a lone surrogate), or ``None``."""
    if "\x00" in text:
        return _NUL
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            return (
                f"text contains a lone surrogate ({found.group()!r} at index {found.start()}), "
                "which is not valid Unicode and cannot be encoded as UTF-8; decode the "
                "original bytes with errors='replace', or fix the text at its source"
            )
    return None


def storable_text(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` made storable and bounded, for what soniq writes itself (error messages and
    tracebacks): a NUL becomes the four characters ``\\x00`` and a lone surrogate its
    ``\\udXXX`` escape, so the text is still readable and the write cannot fail; beyond
    ``limit`` characters it is cut, keeping the start (or, with ``keep_end``, the end, where a
    traceback names the failing line), with a note of how much went."""
    text = escape_text(text)
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:
        return f"[{cut} characters cut] ...{text[-limit:]}"
    return f"{text[:limit]}... [{cut} more characters cut]"


def escape_text(text: str) -> str:
    """``text`` with a NUL as the four characters ``\\x00`` and each lone surrogate as its
    ``\\udXXX`` escape: readable, and storable as UTF-8 and in jsonb."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text


def escape_texts(value: Any) -> Any:
    """``value`` with :func:`escape_text` applied to every string in it, dict keys included
    (dicts and lists are copied; anything else is returned as it is)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {
            escape_text(key) if isinstance(key, str) else key: escape_texts(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [escape_texts(item) for item in value]
    return value


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, for a log line that
    job data must not be able to split or forge."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class NotJSONError(ValueError):
    """A value cannot be stored as JSON. ``path`` locates it, e.g. ``items[2]``."""

    def __init__(self, path: str, reason: str, *, unstorable_text: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        # The value is JSON, but holds text PostgreSQL cannot store (a NUL, a lone surrogate).
        self.unstorable_text = unstorable_text


def _describe(value: object) -> str:
    kind = type(value).__name__
    hint = ""
    if isinstance(value, (set, frozenset)):
        hint = "; pass a list"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        hint = "; decode it or pass base64 text"
    elif hasattr(value, "isoformat"):
        hint = "; pass value.isoformat()"
    elif hasattr(value, "pk"):
        hint = "; pass its primary key"
    return f"{kind} is not JSON{hint}"


# Where a value sits, as check_json walks: the root's name, or (parent, key or index). Made
# into text only for an error: formatting a path for every value cost more than checking it.
_Where = str | tuple[Any, Any]


def _path_text(where: _Where) -> str:
    steps: list[str] = []
    while isinstance(where, tuple):
        where, step = where
        steps.append(f"[{step!r}]")
    return where + "".join(reversed(steps))


def check_json(value: Any, path: str) -> None:
    """Raise :class:`NotJSONError` unless ``value`` round-trips through JSON unchanged."""
    # An explicit stack instead of recursion: deep structures must not hit the recursion limit.
    stack: list[tuple[Any, _Where, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > 200:
            raise NotJSONError(_path_text(where), "nested more than 200 levels deep")
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotJSONError(_path_text(where), f"{item!r} is not a JSON number")
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise NotJSONError(_path_text(where), problem, unstorable_text=True)
        elif isinstance(item, _SCALARS):
            continue
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NotJSONError(
                        _path_text(where),
                        f"dict key {key!r} is {type(key).__name__}; JSON keys are strings",
                    )
                problem = text_problem(key)
                if problem is not None:
                    raise NotJSONError(
                        _path_text(where), f"dict key {key!r}: {problem}", unstorable_text=True
                    )
                if depth < 200 and (type(child) is int or child is None):
                    continue  # the common leaf, settled here (its depth is checked above)
                stack.append((child, (where, key), depth + 1))
        elif isinstance(item, (list, tuple)):
            for index, child in enumerate(item):
                stack.append((child, (where, index), depth + 1))
        else:
            raise NotJSONError(_path_text(where), _describe(item))


# Built once: json.dumps() with non-default options builds a new encoder on every call, which
# is a measurable share of a 20,000-job enqueue_many.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Encode a value already accepted by :func:`check_json`."""
    text = _ENCODER.encode(value)
    if "e+" in text or "E+" in text:
        # A float like 1e+20 (or a string that merely contains "e+": harmless, just slower).
        # PostgreSQL's jsonb keeps numbers as numeric and would print 1e+20 back as
        # 100000000000000000000, an int to json.loads; positional notation with a decimal
        # point keeps it a float.
        text = "".join(_POSITIONAL_ITERENCODE(value, 0))
    return text


def _float_text(number: float) -> str:
    if not math.isfinite(number):
        raise ValueError(f"{number!r} is not a JSON number")
    text = float.__repr__(number)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
        if "." not in text:
            text += ".0"
    return text


# The standard library's pure-Python encoder, with our float formatting. (The C encoder has no
# hook for floats.) Arguments: markers, default, encoder, indent, floatstr, key separator,
# item separator, sort_keys, skipkeys, one-shot.
_POSITIONAL_ITERENCODE = json.encoder._make_iterencode(  # type: ignore[attr-defined]
    {},
    _ENCODER.default,
    json.encoder.encode_basestring,
    None,
    _float_text,
    ":",
    ",",
    False,
    False,
    True,
)


def canonical_dumps(value: Any) -> str:
    """A stable encoding (sorted keys) used to hash arguments for ``unique`` jobs."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
    )


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)

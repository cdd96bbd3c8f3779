"""What a job returned, made storable: JSON as it is, or escaped, or a readable trace; never a
write the database refuses, and never more than ``MAX_RESULT_BYTES``."""

from __future__ import annotations

import logging
from typing import Any

from soniq.core import codec, masking
from soniq.core.settings import SoniqSettings

logger = logging.getLogger("soniq.worker")

# The default of the MAX_RESULT_BYTES setting.
MAX_RESULT_BYTES: int = SoniqSettings.model_fields["max_result_bytes"].default
# Characters of a trace stored for a value JSON cannot hold.
TRACE_CHARS = 2000


class ResultTooLargeError(Exception):
    """The job returned a result larger than ``MAX_RESULT_BYTES``: it is not stored, and the
    job is dead-lettered (reason ``result_too_large``) rather than run again."""

    reason = "result_too_large"


def encode_result(
    job: Any,
    value: Any,
    *,
    max_bytes: int = MAX_RESULT_BYTES,
    masked_names: tuple[str, ...] = masking.DEFAULT_MASKED_NAMES,
) -> str | None:
    """``value`` as the JSON text stored for ``job`` (``None`` for ``None``).

    - JSON is stored as it is.
    - Text PostgreSQL cannot store (a NUL, a lone surrogate) is escaped as in error messages
      (``\\x00``, ``\\udXXX``), the rest of the value kept; a warning says so.
    - Anything else JSON cannot hold (a set, an object, NaN) becomes
      ``{"unserializable_result": "<repr>"}``, masked (``ADMIN_MASKED_ARGS``) and cut to
      :data:`TRACE_CHARS`; a warning says so. The job is not failed: its work is done.

    Raises :class:`ResultTooLargeError` when the JSON is over ``max_bytes`` (UTF-8)."""
    if value is None:
        return None
    text = _as_json(job, value, masked_names)
    if _over(text, max_bytes):
        size = len(text.encode("utf-8", "surrogatepass"))
        raise ResultTooLargeError(
            f"{job.task_name} returned a result of {size} bytes as JSON, over MAX_RESULT_BYTES "
            f"({max_bytes}); it was not stored. Store large data elsewhere and return its id"
        )
    return text


def _as_json(job: Any, value: Any, masked_names: tuple[str, ...]) -> str:
    try:
        codec.check_json(value, "result")
        return codec.dumps(value)
    except codec.NotJSONError as exc:
        problem = exc
    except (ValueError, RecursionError) as exc:  # e.g. an int too long to write out
        return _trace(job, value, exc, masked_names)
    if problem.unstorable_text:
        try:
            escaped = codec.escape_texts(value)
            codec.check_json(escaped, "result")
            text = codec.dumps(escaped)
        except (ValueError, RecursionError):
            pass
        else:
            logger.warning(
                "job %s (%s) returned text the database cannot store (%s); stored escaped",
                job.id,
                job.task_name,
                codec.one_line(str(problem.path)),
            )
            return text
    return _trace(job, value, problem, masked_names)


def _trace(job: Any, value: Any, problem: Exception, masked_names: tuple[str, ...]) -> str:
    logger.warning(
        "job %s (%s) returned a value that is not JSON: %s",
        job.id,
        job.task_name,
        codec.one_line(
            codec.storable_text(
                masking.redact(codec.storable_text(str(problem), 1000), (), masked_names), 500
            )
        ),
    )
    shown = masking.masked_repr(value, masked_names, limit=TRACE_CHARS)
    return codec.dumps({"unserializable_result": codec.storable_text(shown, TRACE_CHARS)})


def _over(text: str, max_bytes: int) -> bool:
    # A character is 1 to 4 bytes in UTF-8: only the uncertain middle needs encoding.
    if len(text) > max_bytes:
        return True
    if len(text) * 4 <= max_bytes:
        return False
    return len(text.encode("utf-8")) > max_bytes


def refused_result(refusal: BaseException) -> str:
    """What is stored instead of a result the database refused (``refusal``, its error):
    ``{"unstorable_result": "not stored: <why>"}``."""
    return codec.dumps({"unstorable_result": f"not stored: {refusal_text(refusal)}"})


def refusal_text(refusal: BaseException, limit: int = 500) -> str:
    """A database's refusal as soniq logs and stores it: its first line only (psycopg adds
    DETAIL and CONTEXT lines, which may quote the data refused), masked, on one line, cut."""
    first = str(refusal).split("\n", 1)[0]
    text = codec.storable_text(first, 2 * limit)
    names = masking.DEFAULT_MASKED_NAMES
    return codec.one_line(codec.storable_text(masking.redact(text, (), names), limit))

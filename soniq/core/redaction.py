"""What the admin and the ``soniq`` commands show of one job's data: masked structures, then
redacted text.

Both passes come from :mod:`soniq.core.masking`, driven by ``ADMIN_MASKED_ARGS``:

1. **Structure.** A key named like a credential (``password``, ``credentials``, ``apiKey``)
   has its value replaced by ``********``, at any depth.
2. **Text.** Every string left, keys included, then has the job's own secrets hidden (the
   values step 1 found under masked keys of its arguments and result), in their raw, escaped,
   URL-encoded or upper-cased forms, and any value written after a masked name
   (``password=...``, ``Authorization: Bearer ...``). A secret the job copied into another
   argument, an error message, a traceback, a ``repr`` of its result or its dedup key is hidden
   there too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from soniq.core import masking


@dataclass(frozen=True)
class Redaction:
    """The masked names, and the secrets of one job (or schedule) to hide in its text."""

    names: tuple[str, ...]
    secrets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str], *sources: Any) -> Redaction:
        """The redaction of a job whose secrets are the values under masked keys in
        ``sources`` (its arguments, and its result when it was read)."""
        names = tuple(names)
        secrets: set[str] = set()
        for source in sources:
            secrets |= masking.secrets_in(source, names)
        return cls(names, frozenset(secrets))

    def text(self, text: str) -> str:
        """``text`` with the secrets and the values after masked names hidden."""
        return masking.redact(text, self.secrets, self.names)

    def masked(self, value: Any) -> Any:
        """``value`` with the values of masked keys replaced (structure only)."""
        return masking.mask(value, self.names)

    def value(self, value: Any) -> Any:
        """``value`` masked, then every string in it (keys too) redacted: what a page may show
        of arguments, a result or an error entry."""
        return self._strings(self.masked(value), 0)

    def _strings(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth > masking.MAX_DEPTH:  # mask() already summarised deeper levels
            return masking.MASK
        if isinstance(value, dict):
            shown: dict[Any, Any] = {}
            for key, item in value.items():
                shown[self._key(key, shown)] = self._strings(item, depth + 1)
            return shown
        if isinstance(value, list):
            return [self._strings(item, depth + 1) for item in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A numeric secret (a PIN) repeated under another key.
            return masking.MASK if str(value) in self.secrets else value
        return value

    def _key(self, key: Any, taken: dict[Any, Any]) -> Any:
        """A key redacted like any text; two keys that redact alike both stay listed."""
        if not isinstance(key, str):
            return key
        shown = self.text(key)
        candidate, number = shown, 2
        while candidate in taken:
            candidate = f"{shown} ({number})"
            number += 1
        return candidate

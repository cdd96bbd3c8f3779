"""The jobs an application knows, by task name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from soniq.core.errors import DuplicateJobError
from soniq.core.spec import JobSpec


class JobRegistry:
    """Task name -> :class:`JobSpec`, with a reverse look-up by function."""

    def __init__(self) -> None:
        self._by_name: dict[str, JobSpec] = {}
        self._by_func: dict[Callable[..., Any], JobSpec] = {}

    def register(self, spec: JobSpec) -> JobSpec:
        existing = self._by_name.get(spec.name)
        if existing is not None and not _same_function(existing.func, spec.func):
            raise DuplicateJobError(
                f"task name {spec.name!r} is already registered for "
                f"{existing.func.__module__}.{existing.func.__qualname__}; "
                "pass a distinct name= to @app.job()"
            )
        # Re-registering the same function (a module imported twice, e.g. as __main__ and by
        # name, or reloaded by the dev server) replaces the entry instead of failing.
        if existing is not None:
            self._by_func.pop(existing.func, None)
        self._by_name[spec.name] = spec
        self._by_func[spec.func] = spec
        return spec

    def get(self, name: str) -> JobSpec | None:
        return self._by_name.get(name)

    def for_function(self, func: Callable[..., Any]) -> JobSpec | None:
        return self._by_func.get(func)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    return a is b or (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    )

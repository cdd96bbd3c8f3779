"""A typed reference to a job defined in another code base."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from soniq.core import options
from soniq.core.errors import JobDefinitionError


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Names a job this process may not import, optionally with its argument model.

    ``app.enqueue(ref, args={...})`` validates ``args`` against ``args_model`` (if set) and
    applies ``queue``/``priority`` as defaults, exactly like a local registration would.
    """

    name: str
    args_model: type[BaseModel] | None = None
    queue: str | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        try:
            options.check_task_name(self.name)
            if self.queue is not None:
                options.check_queue(self.queue)
            if self.priority is not None:
                options.check_priority(self.priority)
        except ValueError as exc:
            raise JobDefinitionError(f"TaskRef({self.name!r}): {exc}") from None
        model = self.args_model
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise JobDefinitionError(
                f"TaskRef({self.name!r}): args_model must be a pydantic BaseModel subclass"
            )

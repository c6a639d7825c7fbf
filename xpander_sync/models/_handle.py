"""The private link from a model to the platform client that loaded it.

Models are plain data: they never import ``resources`` and never talk HTTP. The official
SDK's conveniences (``agent.create_task``, ``task.reload``/``save``/``stop``/``to_message``,
``item.load``) are kept as thin delegates to the resource that structured the model
(``Resource.bind``), typed here by the :class:`TaskClient` and :class:`AgentClient`
protocols. So a task
loaded through a ``Backend(transport=t)`` reloads through ``t``, and a model built by hand
has no handle: its I/O methods raise :class:`~xpander_sync.errors.InvalidInputError` with
the call to use instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

import attrs

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .agent import Agent
    from .task import Task


class TaskClient(Protocol):
    """What a bound :class:`~xpander_sync.Task` delegates to (``resources.Tasks``)."""

    def get(self, task_id: str) -> Task: ...

    def save(self, task: Task, *, with_deep_plan_update: bool = False) -> Task: ...

    def stop(self, task_id: str) -> Task: ...

    def download_text(self, url: str, timeout: float = 10.0) -> str: ...


class AgentClient(Protocol):
    """What a bound ``Agent``/``AgentsListItem`` delegates to (``resources.Agents``)."""

    def get(self, agent_id: Optional[str] = None, version: Union[int, str, None] = None) -> Agent: ...

    def create_task(self, agent_id: str, prompt: str = "", **options: Any) -> Task: ...


#: attrs metadata of a field that is not part of the wire JSON (the converter skips it).
NOT_WIRE = {"wire": False}


def handle_field() -> Any:
    """The ``_handle`` attrs field: not in ``__init__``, ``repr``, ``eq`` or the wire JSON."""
    return attrs.field(default=None, init=False, repr=False, eq=False, metadata=NOT_WIRE)


def require_handle(model: Any, call: str) -> Any:
    """The model's handle, or a clear error saying how to get a bound copy.

    Args:
        model: an ``Agent``, ``AgentsListItem`` or ``Task``.
        call: the method that needs the platform (for the message).

    Returns:
        The handle the loading resource attached.

    Raises:
        InvalidInputError: the model was built by hand (or copied), so it has no client.
    """
    handle = getattr(model, "_handle", None)
    if handle is None:
        kind = type(model).__name__
        raise InvalidInputError(
            f"{kind}.{call}() needs the platform client this {kind} was loaded with, and this one was built "
            f"by hand: load it through xpander_sync (Backend, Agents or Tasks) or bind it first with "
            f"xpander_sync.Tasks(...).bind(obj)"
        )
    return handle

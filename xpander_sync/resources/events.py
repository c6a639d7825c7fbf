"""``Events``: push task events (auth events of the MCP login flow) to the platform."""

from __future__ import annotations

from typing import Sequence

from .._async import async_twin
from .._converter import unstructure
from ..models.events import TaskUpdateEvent
from ._base import Resource, route


class Events(Resource):
    """Task events.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def push(self, task_id: str, events: Sequence[TaskUpdateEvent]) -> None:
        """Push events for a task (``POST /agent-execution/{task_id}/events/push``, a JSON array).

        Args:
            task_id: the task the events are about.
            events: the events, sent in order.

        Raises:
            InvalidInputError: a bad ``task_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/agent-execution/{task_id}/events/push", task_id=task_id)
        self._transport.request("POST", path, json=[unstructure(event) for event in events])

    apush = async_twin(push)

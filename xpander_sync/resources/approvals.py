"""``Approvals``: the platform's tool-approval decisions (an agent's approval rules on its tools)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .._async import async_twin
from .._retry import RetryPolicy
from ._base import Resource, check_id, route

#: One poll of a decision waits at most this long (seconds), as the official SDK.
POLL_TIMEOUT = 10.0
_NO_RETRY = RetryPolicy(max_retries=0)


def check_body(execution_id: Optional[str], operation_id: str, tool_name: str, payload: Any) -> Dict[str, Any]:
    """The body of :meth:`Approvals.check` (pure).

    Args:
        execution_id: the task the call is made for (``None`` without a task).
        operation_id: the tool's operation id.
        tool_name: the tool's name as the model called it.
        payload: the call's arguments.

    Returns:
        ``{"execution_id", "operation_id", "tool_name", "payload"}``.
    """
    return {"execution_id": execution_id, "operation_id": operation_id, "tool_name": tool_name, "payload": payload}


class Approvals(Resource):
    """Tool approvals of the organization's agents.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def get(self, agent_id: str, request_id: str, *, timeout: float = POLL_TIMEOUT) -> Any:
        """One approval request's state (``GET /agents/{agent_id}/tool-approvals/{request_id}``).

        One attempt (the caller polls), at most ``timeout`` seconds.

        Args:
            agent_id: the agent whose tool call waits.
            request_id: the approval request id the tool call answered with.
            timeout: seconds to connect and to wait for the answer.

        Returns:
            The decoded answer: a dict with ``settled`` (bool), and once settled ``approved``
            (bool) and an optional ``message``/``reason``.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``request_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/agents/{agent_id}/tool-approvals/{request_id}", agent_id=agent_id, request_id=request_id)
        return self._transport.request("GET", path, timeout=(timeout, timeout), retry=_NO_RETRY).data

    def check(self, agent_id: str, execution_id: Optional[str], operation_id: str, tool_name: str,
              payload: Any) -> Any:
        """Ask whether a call needs approval first (``POST /agents/{agent_id}/tool-approvals/check``).

        The official SDK asks this before calling a tool of an MCP server that has an approval
        rule; the body is :func:`check_body`.

        Args:
            agent_id: the agent making the call.
            execution_id: the task the call is made for.
            operation_id: the tool's operation id.
            tool_name: the tool's name.
            payload: the call's arguments.

        Returns:
            The decoded answer (an ``approval_required`` dict when the call must wait).

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``execution_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        if execution_id is not None:
            check_id("execution_id", execution_id)
        path = route("/agents/{agent_id}/tool-approvals/check", agent_id=agent_id)
        body = check_body(execution_id, operation_id, tool_name, payload)
        return self._transport.request("POST", path, json=body).data

    aget = async_twin(get)
    acheck = async_twin(check)

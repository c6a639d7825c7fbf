"""``Tools``: call an agent's xpander tool (an "operation") on the platform."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from .._async import async_twin
from .._retry import RetryPolicy
from ..models.tools import ToolInvocationResult
from ._base import Resource, check_id, route, version_header


class Tools(Resource):
    """The tools (operations) of the organization's agents.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def invoke(
        self,
        agent_id: str,
        tool_id: str,
        payload: Dict[str, Any],
        *,
        agent_version: Union[int, str, None] = None,
        task_id: Optional[str] = None,
        tool_call_id: Optional[str] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> ToolInvocationResult:
        """Call a tool for an agent (``POST /agents/{agent_id}/operations/{tool_id}``).

        Args:
            agent_id: the agent the tool belongs to.
            tool_id: the tool (operation) id.
            payload: the body (``query_params``/``path_params``/``body_params`` for server tools).
            agent_version: sent as ``x-agent-version``.
            task_id: the task the call is made for, sent as ``x-execution-id``.
            tool_call_id: this call's id, sent as ``x-tool-call-id`` (the ``request_id`` of its
                activity events).
            retry: the transport's retry policy for this call (default: the configuration's);
                the tool-call layer passes ``RetryPolicy(max_retries=0)`` as it retries itself.

        Returns:
            A successful :class:`~xpander_sync.models.tools.ToolInvocationResult` (status and
            decoded answer).

        Raises:
            InvalidInputError: a bad ``agent_id``, ``tool_id`` or ``agent_version``.
            ModuleException: the platform refused the call or could not be reached (the
                caller turns it into an error result for the LLM).
        """
        path = route("/agents/{agent_id}/operations/{tool_id}", agent_id=agent_id, tool_id=tool_id)
        headers = version_header(agent_version)
        if task_id:
            headers["x-execution-id"] = check_id("task_id", task_id)
        if tool_call_id:
            headers["x-tool-call-id"] = check_id("tool_call_id", tool_call_id)
        response = self._transport.request("POST", path, json=payload, headers=headers, retry=retry)
        return ToolInvocationResult(
            tool_id=tool_id, payload=payload, status_code=response.status_code, result=response.data,
            is_success=True, is_error=False, task_id=task_id, tool_call_id=tool_call_id,
        )

    ainvoke = async_twin(invoke)

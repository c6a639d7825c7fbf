"""Tool specs: what every framework adapter wraps into its own tool type.

A :class:`ToolSpec` is framework-neutral: a name, a description, a JSON schema of the
arguments, and a blocking :meth:`ToolSpec.invoke` that never raises for a failure the
LLM should see (it answers a result with ``is_error``). Each adapter turns a spec into
its framework's tool (agno ``Function``, openai-agents ``FunctionTool``, ...), using only
``name``, ``description``, ``schema`` and ``invoke``/``call``/``call_json``/``acall_json``,
so a tool added by a platform feature (:mod:`~xpander_sync.frameworks.features`) reaches
every framework the same way as an xpander tool.

* :class:`XpanderToolSpec`: an xpander tool of the agent, called on the platform for this
  call's agent and task.
* :class:`FunctionToolSpec`: a tool the library implements itself (a knowledge-base
  search, the memory tool, the dynamic-tools meta-tools, ...).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Dict, Optional

from ..errors import XpanderError
from ..models.agent import Agent, Tool
from ..models.task import Task
from ..models.tools import ToolInvocationResult
from . import _tools
from ._toolcall import coerce_arguments
from ._tools import render_tool_result


class ToolSpec:
    """A tool ready to wrap for any framework.

    Attributes:
        name: the name the LLM calls.
        description: the description shown to the LLM.
        schema: the JSON schema of the arguments.
    """

    name: str = ""
    description: str = ""
    schema: Dict[str, Any] = {}

    def invoke(self, arguments: Any) -> Any:  # pragma: no cover - abstract
        """Run the tool with the LLM's arguments (a dict).

        Returns:
            A :class:`~xpander_sync.models.tools.ToolInvocationResult` (``is_error`` on a
            failure); never raises for a failure the LLM should see.
        """
        raise NotImplementedError

    def call(self, **arguments: Any) -> str:
        """:meth:`invoke`, rendered for the LLM (:func:`~._tools.render_tool_result`)."""
        return render_tool_result(self.invoke(arguments))

    def call_json(self, args_json: Optional[str]) -> str:
        """:meth:`call` for a JSON text of arguments, as the LLM sent it."""
        try:
            arguments = json.loads(args_json) if args_json and args_json.strip() else {}
        except ValueError:
            return json.dumps({"is_error": True, "status_code": None, "result": "tool arguments are not valid JSON"})
        return render_tool_result(self.invoke(arguments))

    async def acall_json(self, args_json: Optional[str]) -> str:
        """:meth:`call_json` in a worker thread: the call blocks."""
        return await asyncio.to_thread(self.call_json, args_json)


class FunctionToolSpec(ToolSpec):
    """A tool implemented here: ``function(arguments) -> value``.

    The value is the tool's result (text as is, anything else rendered as JSON). An
    :class:`~xpander_sync.errors.XpanderError` or ``ValueError`` raised by the function
    becomes an error result with its message (the LLM can react); anything else propagates.

    Args:
        name: the name the LLM calls.
        description: the description shown to the LLM.
        schema: the JSON schema of the arguments.
        function: called with the arguments dict.
    """

    def __init__(self, name: str, description: str, schema: Dict[str, Any],
                 function: Callable[[Dict[str, Any]], Any]) -> None:
        self.name = name
        self.description = description
        self.schema = schema
        self.function = function

    def invoke(self, arguments: Any) -> Any:
        """Call the function with the arguments (a JSON object), as a tool result."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return ToolInvocationResult(tool_id=self.name, payload={}, result="tool arguments must be a JSON object",
                                        is_success=False, is_error=True)
        try:
            value = self.function(arguments)
        except (XpanderError, ValueError) as exc:
            return ToolInvocationResult(tool_id=self.name, payload=arguments, result=str(exc), status_code=None,
                                        is_success=False, is_error=True, is_local=True)
        return ToolInvocationResult(tool_id=self.name, payload=arguments, result=value, is_success=True,
                                    is_local=True)


class XpanderToolSpec(ToolSpec):
    """An xpander tool ready to wrap: its name, description, LLM schema and blocking calls.

    Attributes:
        tool: the xpander tool.
        name: the tool id (the name the LLM calls).
        description: the description shown to the LLM.
        schema: the JSON schema of the arguments (:func:`~._tools.llm_schema`), verbatim.
    """

    def __init__(self, context: Any, agent: Agent, task: Optional[Task], tool: Tool) -> None:
        self.context = context
        self.agent = agent
        self.task = task
        self.tool = tool
        self.override = _tools.input_override(agent, tool)
        self.name = tool.id
        self.description = _tools.tool_description(tool)
        self.schema = _tools.llm_schema(tool, self.override)
        #: the agent graph node of the tool (named in its activity events), if any.
        self.graph_node_id = next((item.id for item in agent.graph if item.item_id == tool.id and item.id), None)

    def invoke(self, arguments: Any) -> Any:
        """Build the body from the LLM's arguments and POST the operation for this call's agent and task.

        The arguments go through the tool-call layer (:mod:`~._toolcall`): stringified JSON
        where the schema wants an object or an array (or the whole arguments as a JSON string)
        is parsed first; the call itself is retried on transient failures, honours the agent's
        approval rules and is reported as activity events of the task.

        Returns:
            The :class:`~xpander_sync.models.tools.ToolInvocationResult` (``is_error`` on a
            failure; never raises for a platform or network error). Arguments that are not
            a JSON object give an error result without a call.
        """
        if arguments is None:
            arguments = {}
        arguments = coerce_arguments(arguments, self.schema)
        if not isinstance(arguments, dict):
            return ToolInvocationResult(tool_id=self.tool.id, payload={}, result="tool arguments must be a JSON object",
                                        is_success=False, is_error=True)
        extension = self.task.payload_extension if self.task is not None else None
        if isinstance(extension, dict) and "llm_gateway" in extension:  # the gateway's token is for the model only
            extension = {k: v for k, v in extension.items() if k != "llm_gateway"}
        payload = _tools.build_payload(self.tool, arguments, override=self.override, payload_extension=extension)
        return self.context.invoke_tool(self.agent, self.task, self.tool.id, payload, arguments=arguments,
                                        tool_name=self.tool.name or self.tool.id, graph_node_id=self.graph_node_id)

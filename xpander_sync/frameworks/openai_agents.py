"""The openai-agents adapter: an xpander agent as ``agents.Agent(**args)`` (openai-agents 0.24).

openai-agents is imported inside the functions of this module only, so ``import
xpander_sync`` works without it; building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[openai-agents]"``). Every key returned is an ``Agent``
dataclass field.

What :class:`OpenAIAgentsAdapter` builds:

* ``name`` = ``agent.name``; ``handoff_description`` = ``agent.description`` or
  ``instructions.general`` (what a leader reads before handing off to this agent).
* ``instructions``: one system prompt (:meth:`Adapter.system_prompt`): description,
  role and goals (a task's ``instructions_override`` replaces them), expected output, the
  Markdown hint, the task user's details and ``task.additional_context``.
* ``model``: OpenAI → ``OpenAIChatCompletionsModel`` on an ``AsyncOpenAI`` client
  (``OpenAIResponsesModel`` for Responses-only models); OpenAI-compatible providers
  (Nebius, OpenRouter, Fireworks, NIM, Helicone, ..., or any provider with
  ``llm_api_base``) → the same class with the provider's base URL; Anthropic →
  ``AnyLLMModel("anthropic/<model>")`` (``openai-agents[any-llm]``, which calls the
  native ``anthropic`` SDK; Python >= 3.11). Google AI Studio, Bedrock and Azure AI
  Foundry are refused. Keys follow :func:`~xpander_sync.frameworks._llm.resolve_llm`.
* ``model_settings``: ``ModelSettings`` with temperature 0 (not for reasoning models),
  the reasoning effort, the extra LLM headers (Anthropic), ``user`` and
  ``prompt_cache_key`` (OpenAI-wire providers), ``max_tokens`` (Anthropic, OpenRouter).
  Neither ``model`` nor ``model_settings`` is built when ``override`` has ``"model"``.
* ``output_type``: a JSON-schema ``AgentOutputSchemaBase`` when the agent (or the task)
  asks for JSON with a schema. The schema is sent verbatim; it is sent as *strict* only
  when it already satisfies OpenAI's strict rules (every object closed, every property
  required), so optional fields stay optional.
* ``tools``: one ``FunctionTool`` per xpander tool (``strict_json_schema=False``: the
  schema is kept verbatim, optional parameters stay optional); its ``on_invoke_tool``
  runs the blocking platform call in a worker thread, for *this* call's agent and task.
  Then the caller's ``tools`` (root only).
* ``mcp_servers``: ``MCPServerStreamableHttp`` / ``MCPServerSse`` / ``MCPServerStdio``,
  not connected: enter them (``async with``) or ``await server.connect()`` before
  ``Runner.run``, as openai-agents requires.
* ``handoffs``: the team members, each an ``Agent`` built the same way with its own model.

Not expressible as ``Agent`` arguments (see docs/frameworks.md): session storage
(openai-agents takes a ``session`` per ``Runner.run``), ``tool_call_limit``
(``Runner.run(max_turns=...)``), guardrails, date/time context. openai-agents exports
run traces to OpenAI by default: that is a process-wide setting
(``agents.set_tracing_disabled``), left to the caller.

The framework-neutral build steps it shares with the other adapters live in
:mod:`~xpander_sync.frameworks._adapter`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any, Dict, List, Tuple, cast

from ..models.agent import Agent
from ._adapter import (
    MCP_HTTP_TIMEOUT,
    MCP_SSE_READ_TIMEOUT,
    MCP_TOOL_TIMEOUT,
    OUTPUT_SCHEMA_NAME,
    Adapter,
    AdapterBuild,
    ToolSpec,
    XpanderToolSpec,
    import_attr,
    is_strict_compatible,
    mcp_label,
)
from ._llm import ModelSpec, OpenAIEndpoint

logger = logging.getLogger(__name__)


@functools.cache
def _json_output_class() -> Any:
    from agents import AgentOutputSchemaBase
    from agents.exceptions import ModelBehaviorError

    class JsonSchemaOutput(AgentOutputSchemaBase):
        """A JSON-schema ``output_type``: the schema verbatim, strict only when it already qualifies."""

        def __init__(self, schema: Dict[str, Any], name: str = OUTPUT_SCHEMA_NAME) -> None:
            self._schema = schema
            self._name = name
            self._strict = is_strict_compatible(schema)

        def is_plain_text(self) -> bool:
            return False

        def name(self) -> str:
            return self._name

        def json_schema(self) -> Dict[str, Any]:
            return self._schema

        def is_strict_json_schema(self) -> bool:
            return self._strict

        def validate_json(self, json_str: str) -> Any:
            try:
                value = json.loads(json_str)
            except ValueError:
                raise ModelBehaviorError("the model's output is not valid JSON") from None
            if self._schema.get("type") == "object" and not isinstance(value, dict):
                raise ModelBehaviorError("the model's output is not a JSON object")
            return value

    return JsonSchemaOutput


def json_output_type(schema: Dict[str, Any]) -> Any:
    """An ``AgentOutputSchemaBase`` for a JSON schema (kept verbatim).

    Args:
        schema: the JSON schema of the output.

    Returns:
        The output type to pass as the agent's ``output_type``.
    """
    return _json_output_class()(schema)


def function_tool(spec: ToolSpec) -> Any:
    """The openai-agents ``FunctionTool`` for an xpander tool.

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``FunctionTool`` with the JSON schema verbatim (not strict); it runs the platform
        call in a worker thread and returns the rendered result.
    """
    from agents import FunctionTool

    async def on_invoke_tool(ctx: Any, args_json: str) -> str:
        del ctx
        return await spec.acall_json(args_json)

    return FunctionTool(
        name=spec.name,
        description=spec.description,
        params_json_schema=spec.schema,
        on_invoke_tool=on_invoke_tool,
        strict_json_schema=False,
    )


class OpenAIAgentsAdapter(Adapter):
    """openai-agents: ``agents.Agent(**args)``; team members become handoffs."""

    name = "open-ai-agents"
    extra = "openai-agents"
    distribution = "openai-agents"
    requires = "agents"
    constructor = "agents.Agent"

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: List[Any], path: Tuple[str, ...]
    ) -> Dict[str, Any]:
        """This agent's constructor arguments (:meth:`Adapter.agent_args`).

        Args:
            agent: the agent (a leader, a member, or a lone agent).
            root: whether it is the agent the task runs (task-level choices apply).
            extra_tools: the caller's tools (root only).
            path: the ids of the leaders above it.

        Returns:
            The keyword arguments for ``agents.Agent``.
        """
        from agents import Agent as OAAgent

        path = self.check_cycle(agent, path)
        args: Dict[str, Any] = {"name": agent.name}
        description = self.description(agent)
        if description:
            args["handoff_description"] = description
        prompt = self.system_prompt(agent, root)
        if prompt:
            args["instructions"] = prompt
        args.update(self.model_args(agent))
        schema = self.output_schema(agent, root)
        if schema is not None:
            args["output_type"] = json_output_type(schema)
        args["tools"] = [function_tool(spec) for spec in self.xpander_tools(agent, root)] + extra_tools
        servers = self._mcp(agent, root)
        if servers:
            args["mcp_servers"] = servers
        members = self.member_agents(agent)
        if members:
            args["handoffs"] = [
                OAAgent(**self.agent_args(m, root=False, extra_tools=[], path=path)) for m in members
            ]
        if root and self.tool_call_limit(agent, root):
            logger.debug("agent %s: tool_call_limit is a Runner.run(max_turns=...) setting in openai-agents",
                         agent.id)
        return args

    def apply_generation(self, args: Dict[str, Any], params: Dict[str, Any], built_here: bool) -> List[str]:
        """``override``'s generation parameters into ``model_settings`` (also beside a caller's model object).

        ``temperature``, ``max_tokens``, ``top_p`` and the penalties are ``ModelSettings``
        fields; ``reasoning_effort`` becomes ``reasoning``; ``seed``, ``stop`` and ``top_k``
        go in ``extra_args`` (sent with each request).

        Args:
            args: the model arguments, changed in place.
            params: the generation parameters (type-checked).
            built_here: whether the adapter built ``args["model"]``.

        Returns:
            The parameters that could not be applied.
        """
        del built_here
        from agents import ModelSettings
        from openai.types.shared import Reasoning

        settings = args.get("model_settings") or ModelSettings()
        fields: Dict[str, Any] = {}
        extra = dict(settings.extra_args or {})
        for key, value in params.items():
            if key in ("temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty"):
                fields[key] = value
            elif key == "reasoning_effort":
                fields["reasoning"] = Reasoning(effort=cast(Any, value))
            else:
                extra[key] = value
        args["model_settings"] = dataclasses.replace(settings, **fields, extra_args=extra or None)
        return []

    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The model arguments for a resolved spec.

        ``model`` (``AnyLLMModel`` for Anthropic; ``OpenAIResponsesModel`` or ``OpenAIChatCompletionsModel``
        otherwise) and its ``model_settings``.

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": ...}`` (plus the framework's model-settings keys, if any).

        Raises:
            InvalidInputError: a provider this adapter does not map, or a missing endpoint.
            ConfigurationError: no key for OpenAI or Anthropic.
            FrameworkNotInstalledError: the provider's package is missing.
        """
        from agents import ModelSettings
        from openai.types.shared import Reasoning

        reasoning = Reasoning(effort=cast(Any, spec.reasoning_effort)) if spec.reasoning_effort else None
        if spec.provider == "anthropic":
            any_llm = import_attr(
                "agents.extensions.models.any_llm_model", "AnyLLMModel",
                'Anthropic models on openai-agents need any-llm-sdk (Python >= 3.11): '
                'pip install "xpander-sync[openai-agents]"',
            )
            model = any_llm(model=f"anthropic/{spec.model_id}", api_key=spec.anthropic_key(),
                            base_url=spec.base_url, api="chat_completions")
            # any-llm passes extra_args to the anthropic SDK, which refuses the output cap without a timeout
            timeout = {"timeout": spec.request_timeout} if spec.request_timeout else None
            settings = ModelSettings(temperature=spec.temperature, max_tokens=spec.max_tokens,
                                     extra_headers=dict(spec.extra_headers) or None, extra_args=timeout)
            return {"model": model, "model_settings": settings}
        from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
        from openai import AsyncOpenAI

        endpoint: OpenAIEndpoint = spec.openai_endpoint(self.name)
        client = AsyncOpenAI(api_key=endpoint.api_key, base_url=endpoint.base_url,
                             default_headers=endpoint.headers or None)
        body = {k: v for k, v in (("user", endpoint.user), ("prompt_cache_key", endpoint.prompt_cache_key)) if v}
        settings = ModelSettings(temperature=spec.temperature, reasoning=reasoning, extra_body=body or None,
                                 max_tokens=spec.max_tokens)
        model_class = OpenAIResponsesModel if spec.uses_responses_api else OpenAIChatCompletionsModel
        return {"model": model_class(model=spec.model_id, openai_client=client), "model_settings": settings}

    def _mcp(self, agent: Agent, root: bool) -> List[Any]:
        entries = self.mcp_entries(agent, root)
        if not entries:
            return []
        from agents.mcp import MCPServerSse, MCPServerStdio, MCPServerStreamableHttp, create_static_tool_filter

        servers: List[Any] = []
        for kind, server, detail in entries:
            label = mcp_label(server)
            allowed = list(server.allowed_tools) or None
            tool_filter = create_static_tool_filter(allowed_tool_names=allowed) if allowed else None
            common: Dict[str, Any] = {
                "name": label, "tool_filter": tool_filter, "client_session_timeout_seconds": MCP_TOOL_TIMEOUT,
            }
            if kind == "stdio":
                command, argv, env = detail
                params: Dict[str, Any] = {"command": command, "args": argv}
                if env:
                    params["env"] = env
                servers.append(MCPServerStdio(params=params, **common))
            else:
                remote = {"url": server.url, "headers": detail, "timeout": MCP_HTTP_TIMEOUT,
                          "sse_read_timeout": MCP_SSE_READ_TIMEOUT}
                server_class = MCPServerSse if kind == "sse" else MCPServerStreamableHttp
                servers.append(server_class(params=remote, **common))
        return servers


#: The registry's builder (kept for code that imported it).
build_openai_agents_args = OpenAIAgentsAdapter.build
FRAMEWORK = OpenAIAgentsAdapter.name

__all__ = ["FRAMEWORK", "AdapterBuild", "OpenAIAgentsAdapter", "OpenAIEndpoint", "XpanderToolSpec",
           "build_openai_agents_args"]

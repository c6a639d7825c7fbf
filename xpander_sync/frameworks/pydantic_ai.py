"""The Pydantic AI adapter: an xpander agent as ``pydantic_ai.Agent(**args)`` (pydantic-ai-slim 2.68).

The platform has no Pydantic AI framework value: this adapter is registered under a name
of our own, ``pydantic-ai``, so it is used with ``get_args(..., framework="pydantic-ai")``.
Pydantic AI is imported inside the functions of this module only (the module's name does
not shadow the real package: imports are absolute); building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[pydantic-ai]"``).

What :class:`PydanticAIAdapter` builds:

* ``name`` = ``agent.name``; ``description`` = ``agent.description`` or ``instructions.general``.
* ``instructions``: description, role and goals (or the task's ``instructions_override``),
  expected output, the Markdown hint, the task user's details and
  ``task.additional_context``.
* ``model``: OpenAI and OpenAI-compatible providers → ``OpenAIChatModel``
  (``OpenAIResponsesModel`` for Responses-only models) on an ``OpenAIProvider`` wrapping an
  ``AsyncOpenAI`` client (key, base URL, extra headers), with temperature, reasoning
  effort, ``openai_user`` and ``openai_prompt_cache_key`` in its settings; Anthropic →
  ``AnthropicModel`` on an ``AnthropicProvider`` wrapping an ``AsyncAnthropic`` client.
  Skipped when ``override`` has ``"model"``.
* ``output_type``: ``StructuredDict(<JSON schema>)`` when the agent (or the task) asks for
  JSON with a schema: the schema verbatim, the output a ``dict``.
* ``tools``: one ``Tool.from_schema`` per xpander tool (the JSON schema verbatim; the
  blocking platform call runs in Pydantic AI's worker thread), then one delegation tool
  per team member (``ask_<member>``: ``await member.run(request)``, Pydantic AI's agent
  delegation), then the caller's ``tools``.
* ``toolsets``: one ``MCPToolset`` per MCP server (streamable HTTP, SSE or stdio, the
  allowed tools filtered), not connected: Pydantic AI connects when the agent runs.

Not expressible as ``Agent`` arguments: session storage (``message_history`` per run),
tool-call limits (``UsageLimits`` per run), guardrails, date/time context.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Tuple

from ..models.agent import Agent
from ._adapter import (
    MCP_SSE_READ_TIMEOUT,
    MCP_TOOL_TIMEOUT,
    MEMBER_TOOL_SCHEMA,
    OUTPUT_SCHEMA_NAME,
    Adapter,
    ToolSpec,
    import_attr,
    member_tool_description,
    member_tool_name,
)
from ._llm import ModelSpec
from ._runs import MEMBER_RUN_METADATA

logger = logging.getLogger(__name__)

EXTRA = 'pip install "xpander-sync[pydantic-ai]"'
#: The key of a member's run result in its delegation tool's return metadata (read by ``_runs``).
MEMBER_RUN_KEY = MEMBER_RUN_METADATA


def schema_tool(spec: ToolSpec) -> Any:
    """The Pydantic AI ``Tool`` for an xpander tool (its JSON schema verbatim).

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``Tool`` that calls the platform and returns the rendered result.
    """
    from pydantic_ai import Tool

    return Tool.from_schema(function=spec.call, name=spec.name, description=spec.description, json_schema=spec.schema)


def member_tool(member: Agent, built: Any) -> Any:
    """A tool that runs a member ``pydantic_ai.Agent`` on a request and returns its output (agent delegation).

    Args:
        member: the team member (its name and description name and describe the tool).
        built: the member's ``pydantic_ai.Agent``.

    Returns:
        An async ``Tool`` taking one free-text ``request``; a non-text output is returned as JSON.
        The member runs with the leader's usage (``usage=ctx.usage``: the leader's ``usage()``
        counts the member's tokens), and its run result is the tool return's ``metadata``
        (never sent to the model) so ``Backend.report_run`` lists the member's tools.
    """
    from pydantic_ai import Tool, ToolReturn

    async def ask(ctx: Any, request: str) -> Any:
        run = await built.run(request, usage=ctx.usage)
        output = run.output
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
        return ToolReturn(return_value=text, metadata={MEMBER_RUN_KEY: run})

    return Tool.from_schema(function=ask, name=member_tool_name(member), description=member_tool_description(member),
                            json_schema=dict(MEMBER_TOOL_SCHEMA), takes_ctx=True)


class PydanticAIAdapter(Adapter):
    """Pydantic AI: ``pydantic_ai.Agent(**args)``; team members become delegation tools."""

    name = "pydantic-ai"
    extra = "pydantic-ai"
    distribution = "pydantic-ai-slim"
    requires = "pydantic_ai"
    constructor = "pydantic_ai.Agent"

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
            The keyword arguments for ``pydantic_ai.Agent``.
        """
        from pydantic_ai import Agent as PAgent

        path = self.check_cycle(agent, path)
        args: Dict[str, Any] = {**self.model_args(agent), "name": agent.name}
        description = self.description(agent)
        if description:
            args["description"] = description
        prompt = self.system_prompt(agent, root)
        if prompt:
            args["instructions"] = prompt
        schema = self.output_schema(agent, root)
        if schema is not None:
            from pydantic_ai.output import StructuredDict

            args["output_type"] = StructuredDict(schema, name=OUTPUT_SCHEMA_NAME)
        agent_tools: List[Any] = [schema_tool(spec) for spec in self.xpander_tools(agent, root)]
        for member in self.member_agents(agent):
            built = PAgent(**self.agent_args(member, root=False, extra_tools=[], path=path))
            agent_tools.append(member_tool(member, built))
        args["tools"] = agent_tools + extra_tools
        toolsets = self._mcp(agent, root)
        if toolsets:
            args["toolsets"] = toolsets
        return args

    def _mcp(self, agent: Agent, root: bool) -> List[Any]:
        entries = self.mcp_entries(agent, root)
        if not entries:
            return []
        missing = f"MCP servers need pydantic-ai-slim[mcp]: {EXTRA}"
        toolset_class = import_attr("pydantic_ai.mcp", "MCPToolset", missing)
        from pydantic_ai.mcp import SSETransport, StdioTransport, StreamableHttpTransport

        toolsets: List[Any] = []
        for kind, server, detail in entries:
            transport: Any
            if kind == "stdio":
                command, argv, env = detail
                transport = StdioTransport(command=command, args=argv, env=env)
            elif kind == "sse":
                transport = SSETransport(server.url, headers=detail)
            else:
                transport = StreamableHttpTransport(server.url, headers=detail)
            toolset = toolset_class(transport, init_timeout=MCP_TOOL_TIMEOUT, read_timeout=MCP_SSE_READ_TIMEOUT)
            allowed = frozenset(server.allowed_tools)
            if allowed:
                toolset = toolset.filtered(lambda ctx, tool_def, allowed=allowed: tool_def.name in allowed)
            toolsets.append(toolset)
        return toolsets


    def apply_generation(self, args: Dict[str, Any], params: Dict[str, Any], built_here: bool) -> List[str]:
        """``override``'s generation parameters as the agent's ``model_settings`` (also beside a caller's model).

        ``stop`` is ``stop_sequences``; ``reasoning_effort`` is ``openai_reasoning_effort``
        (OpenAI models only); ``top_k`` has no common setting.

        Args:
            args: the model arguments, changed in place.
            params: the generation parameters (type-checked).
            built_here: whether the adapter built ``args["model"]``.

        Returns:
            The parameters that could not be applied.
        """
        del built_here
        openai_model = type(args["model"]).__name__.startswith("OpenAI")
        settings: Dict[str, Any] = {}
        missed: List[str] = []
        for key, value in params.items():
            if key == "stop":
                settings["stop_sequences"] = [value] if isinstance(value, str) else value
            elif key == "reasoning_effort":
                if openai_model:
                    settings["openai_reasoning_effort"] = value
                else:
                    missed.append(key)
            elif key == "top_k":
                missed.append(key)
            else:
                settings[key] = value
        args["model_settings"] = settings
        return missed

    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The model arguments for a resolved spec.

        An ``AnthropicModel`` on an ``AsyncAnthropic`` client, or an ``OpenAIResponsesModel`` /
        ``OpenAIChatModel`` on an ``AsyncOpenAI`` client, with the generation settings.

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": ...}`` (plus the framework's model-settings keys, if any).

        Raises:
            InvalidInputError: a provider this adapter does not map, or a missing endpoint.
            ConfigurationError: no key for OpenAI or Anthropic.
            FrameworkNotInstalledError: the provider's package is missing.
        """
        settings: Dict[str, Any] = {}
        if spec.temperature is not None:
            settings["temperature"] = spec.temperature
        if spec.provider == "anthropic":
            missing = f"Anthropic models need pydantic-ai-slim[anthropic]: {EXTRA}"
            model_class = import_attr("pydantic_ai.models.anthropic", "AnthropicModel", missing)
            provider_class = import_attr("pydantic_ai.providers.anthropic", "AnthropicProvider", missing)
            from anthropic import AsyncAnthropic

            client_kwargs: Dict[str, Any] = {"api_key": spec.anthropic_key()}
            if spec.base_url:
                client_kwargs["base_url"] = spec.base_url
            if spec.extra_headers:
                client_kwargs["default_headers"] = dict(spec.extra_headers)
            settings["max_tokens"] = spec.max_tokens
            provider = provider_class(anthropic_client=AsyncAnthropic(**client_kwargs))
            return {"model": model_class(spec.model_id, provider=provider, settings=settings)}
        endpoint = spec.openai_endpoint(self.name)
        missing = f"OpenAI models need pydantic-ai-slim[openai]: {EXTRA}"
        name = "OpenAIResponsesModel" if spec.uses_responses_api else "OpenAIChatModel"
        model_class = import_attr("pydantic_ai.models.openai", name, missing)
        provider_class = import_attr("pydantic_ai.providers.openai", "OpenAIProvider", missing)
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=endpoint.api_key, base_url=endpoint.base_url,
                             default_headers=endpoint.headers or None)
        if spec.reasoning_effort:
            settings["openai_reasoning_effort"] = spec.reasoning_effort
        if endpoint.user:
            settings["openai_user"] = endpoint.user
        if endpoint.prompt_cache_key:
            settings["openai_prompt_cache_key"] = endpoint.prompt_cache_key
        if spec.max_tokens:
            settings["max_tokens"] = spec.max_tokens
        model = model_class(spec.model_id, provider=provider_class(openai_client=client), settings=settings or None)
        return {"model": model}


#: The registry's builder (kept for code that imported it).
build_pydantic_ai_args = PydanticAIAdapter.build
FRAMEWORK = PydanticAIAdapter.name

__all__ = ["FRAMEWORK", "PydanticAIAdapter", "build_pydantic_ai_args"]

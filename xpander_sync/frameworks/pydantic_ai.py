"""The Pydantic AI adapter: an xpander agent as ``pydantic_ai.Agent(**args)`` (pydantic-ai-slim 2.68).

The platform has no Pydantic AI framework value: this adapter is registered under a name
of our own, ``pydantic-ai``, so it is used with ``get_args(..., framework="pydantic-ai")``.
Pydantic AI is imported inside the functions of this module only (the module's name does
not shadow the real package: imports are absolute); building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[pydantic-ai]"``).

What :func:`build_pydantic_ai_args` returns:

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
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..models.agent import Agent
from ..models.task import Task
from . import _llm
from ._adapter import (
    MAX_OUTPUT_TOKENS,
    MCP_SSE_READ_TIMEOUT,
    MCP_TOOL_TIMEOUT,
    MEMBER_TOOL_SCHEMA,
    OUTPUT_SCHEMA_NAME,
    REFUSED_PROVIDERS,
    AdapterBuild,
    OpenAIEndpoint,
    XpanderToolSpec,
    anthropic_key,
    import_attr,
    is_openai_wire,
    member_tool_description,
    member_tool_name,
    require,
    temperature_for,
    unsupported_provider,
    uses_responses_api,
)

logger = logging.getLogger(__name__)

FRAMEWORK = "pydantic-ai"
EXTRA = 'pip install "xpander-sync[pydantic-ai]"'
MISSING = f"pydantic-ai is not installed: {EXTRA}"


def build_pydantic_ai_args(
    agent: Agent,
    task: Optional[Task],
    override: Optional[Dict[str, Any]],
    tools: Optional[List[Any]],
    auth_events_callback: Optional[Callable[..., Any]],
    context: Any,
) -> Dict[str, Any]:
    """The keyword arguments of ``pydantic_ai.Agent``.

    Args:
        agent: the agent (not modified).
        task: the task being run, or ``None``.
        override: ``Agent`` arguments applied last (``"model"`` skips model construction,
            for the members too).
        tools: extra Pydantic AI tools for the root agent.
        auth_events_callback: unused here: the context delivers MCP auth events.
        context: the :class:`~xpander_sync.frameworks._context.BuildContext` of this call.

    Returns:
        A dict for ``pydantic_ai.Agent(**args)``.

    Raises:
        FrameworkNotInstalledError: pydantic-ai or the provider's package is missing.
        InvalidInputError: a provider this adapter does not map, a missing endpoint, or a
            team that contains itself.
        ConfigurationError: no API key for OpenAI or Anthropic.
        AuthenticationRequiredError: an MCP server needs a login that did not complete.
        ModuleException: a platform call failed.
    """
    require("pydantic_ai", MISSING)
    del auth_events_callback
    return _PydanticAIBuild(context, task, override).root(agent, tools)


def build_model(settings: _llm.LLMSettings) -> Any:
    """The Pydantic AI model for resolved LLM settings.

    Args:
        settings: from :func:`~xpander_sync.frameworks._llm.resolve_llm`.

    Returns:
        An ``AnthropicModel``, ``OpenAIResponsesModel`` or ``OpenAIChatModel``.

    Raises:
        InvalidInputError: a provider this adapter does not map, or a missing endpoint.
        ConfigurationError: no key for OpenAI or Anthropic.
        FrameworkNotInstalledError: the provider's package (``openai``, ``anthropic``) is missing.
    """
    temperature = temperature_for(settings)
    model_settings: Dict[str, Any] = {}
    if temperature is not None:
        model_settings["temperature"] = temperature
    if settings.provider == "anthropic":
        missing = f"Anthropic models need pydantic-ai-slim[anthropic]: {EXTRA}"
        model_class = import_attr("pydantic_ai.models.anthropic", "AnthropicModel", missing)
        provider_class = import_attr("pydantic_ai.providers.anthropic", "AnthropicProvider", missing)
        from anthropic import AsyncAnthropic

        client_kwargs: Dict[str, Any] = {"api_key": anthropic_key(settings)}
        if settings.base_url:
            client_kwargs["base_url"] = settings.base_url
        if settings.extra_headers:
            client_kwargs["default_headers"] = dict(settings.extra_headers)
        model_settings["max_tokens"] = MAX_OUTPUT_TOKENS
        return model_class(settings.model_id, provider=provider_class(anthropic_client=AsyncAnthropic(**client_kwargs)),
                           settings=model_settings)
    if settings.provider in REFUSED_PROVIDERS or not is_openai_wire(settings):
        raise unsupported_provider(settings, FRAMEWORK)
    missing = f"OpenAI models need pydantic-ai-slim[openai]: {EXTRA}"
    name = "OpenAIResponsesModel" if uses_responses_api(settings) else "OpenAIChatModel"
    model_class = import_attr("pydantic_ai.models.openai", name, missing)
    provider_class = import_attr("pydantic_ai.providers.openai", "OpenAIProvider", missing)
    from openai import AsyncOpenAI

    endpoint = OpenAIEndpoint(settings)
    client = AsyncOpenAI(api_key=endpoint.api_key, base_url=endpoint.base_url, default_headers=endpoint.headers or None)
    if settings.reasoning_effort:
        model_settings["openai_reasoning_effort"] = settings.reasoning_effort
    if endpoint.user:
        model_settings["openai_user"] = endpoint.user
    if endpoint.prompt_cache_key:
        model_settings["openai_prompt_cache_key"] = endpoint.prompt_cache_key
    if settings.provider == "open_router":
        model_settings["max_tokens"] = MAX_OUTPUT_TOKENS
    provider = provider_class(openai_client=client)
    return model_class(settings.model_id, provider=provider, settings=model_settings or None)


def schema_tool(spec: XpanderToolSpec) -> Any:
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
    """
    from pydantic_ai import Tool

    async def ask(request: str) -> str:
        output = (await built.run(request)).output
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)

    return Tool.from_schema(function=ask, name=member_tool_name(member), description=member_tool_description(member),
                            json_schema=dict(MEMBER_TOOL_SCHEMA))


class _PydanticAIBuild(AdapterBuild):
    framework = FRAMEWORK

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: List[Any], path: Tuple[str, ...]
    ) -> Dict[str, Any]:
        from pydantic_ai import Agent as PAgent

        path = self.check_cycle(agent, path)
        args: Dict[str, Any] = {
            "model": self.override_model if self.has_model_override else build_model(self.llm_settings(agent)),
            "name": agent.name,
        }
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
        agent_tools: List[Any] = [schema_tool(spec) for spec in self.xpander_tools(agent)]
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


__all__ = ["FRAMEWORK", "build_model", "build_pydantic_ai_args"]

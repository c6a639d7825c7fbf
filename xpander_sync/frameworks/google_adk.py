"""The Google ADK adapter: an xpander agent as ``google.adk.agents.LlmAgent(**args)`` (google-adk 2.13).

ADK is imported inside the functions of this module only; building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[google-adk]"``). Every key returned is an ``LlmAgent`` field.

What :func:`build_google_adk_args` returns:

* ``name``: ``agent.sanitized_name`` (ADK requires an identifier, and not ``user``);
  ``description``: ``agent.description`` or ``instructions.general`` (what a parent agent
  reads before transferring to this one).
* ``static_instruction``: description, role and goals (or the task's
  ``instructions_override``), expected output, the Markdown hint, the task user's details
  and ``task.additional_context``. ``static_instruction`` is sent verbatim; ADK's
  ``instruction`` would treat ``{...}`` in the text (a JSON example, the user's details) as
  session-state placeholders.
* ``model``: OpenAI and OpenAI-compatible providers → ``LiteLlm("openai/<model>")``
  (``litellm``; its import fetches a price list from GitHub unless
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set, and it is imported at the first model
  call, not here) with ``api_key``, ``api_base``, ``extra_headers``, ``user``, ``prompt_cache_key``
  and the reasoning effort; Anthropic → ADK's native ``AnthropicLlm`` on an ``AsyncAnthropic``
  client (key, base URL, extra headers as default headers). ``generate_content_config``
  carries temperature 0 where the agno adapter uses it. Neither is built when
  ``override`` has ``"model"``.
* ``output_schema``: the agent's (or the task's) JSON schema, as a dict (ADK 2 accepts
  one, and keeps tools usable alongside it).
* ``tools``: one ``BaseTool`` per xpander tool, its declaration the JSON schema verbatim
  (``parameters_json_schema``), run in a worker thread for *this* call's agent and task;
  one ``McpToolset`` per MCP server (streamable HTTP, SSE or stdio; not connected here);
  then the caller's ``tools``.
* ``sub_agents``: the team members, each an ``LlmAgent`` built the same way with its own
  model (the leader transfers to them by name).

Not expressible as ``LlmAgent`` fields: session storage (a ``SessionService`` of the
``Runner``), tool-call limits (``RunConfig.max_llm_calls``), guardrails, date/time context.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import FrameworkNotInstalledError
from ..models.agent import Agent
from ..models.task import Task
from . import _llm
from ._adapter import (
    MAX_OUTPUT_TOKENS,
    MCP_HTTP_TIMEOUT,
    MCP_SSE_READ_TIMEOUT,
    MCP_TOOL_TIMEOUT,
    REFUSED_PROVIDERS,
    AdapterBuild,
    OpenAIEndpoint,
    XpanderToolSpec,
    anthropic_key,
    import_attr,
    is_openai_wire,
    require,
    temperature_for,
    unsupported_provider,
)
from ._tools import render_tool_result

logger = logging.getLogger(__name__)

FRAMEWORK = "google-adk"
EXTRA = 'pip install "xpander-sync[google-adk]"'
MISSING = f"google-adk is not installed: {EXTRA}"


def build_google_adk_args(
    agent: Agent,
    task: Optional[Task],
    override: Optional[Dict[str, Any]],
    tools: Optional[List[Any]],
    auth_events_callback: Optional[Callable[..., Any]],
    context: Any,
) -> Dict[str, Any]:
    """The keyword arguments of ``google.adk.agents.LlmAgent``.

    Args:
        agent: the agent (not modified).
        task: the task being run, or ``None``.
        override: ``LlmAgent`` fields applied last (``"model"`` skips model construction,
            for the members too).
        tools: extra ADK tools for the root agent.
        auth_events_callback: unused here: the context delivers MCP auth events.
        context: the :class:`~xpander_sync.frameworks._context.BuildContext` of this call.

    Returns:
        A dict for ``LlmAgent(**args)``.

    Raises:
        FrameworkNotInstalledError: google-adk, or what the model or MCP servers need
            (``litellm``, ``anthropic``, ``mcp``), is missing.
        InvalidInputError: a provider this adapter does not map, a missing endpoint, or a
            team that contains itself.
        ConfigurationError: no API key for OpenAI or Anthropic.
        AuthenticationRequiredError: an MCP server needs a login that did not complete.
        ModuleException: a platform call failed.
    """
    require("google.adk.agents", MISSING)
    del auth_events_callback
    return _AdkBuild(context, task, override).root(agent, tools)


def build_model(settings: _llm.LLMSettings) -> Any:
    """The ADK model object for resolved LLM settings.

    Args:
        settings: from :func:`~xpander_sync.frameworks._llm.resolve_llm`.

    Returns:
        An ``AnthropicLlm`` (Anthropic) or a ``LiteLlm`` (``openai/<model>``, the others).

    Raises:
        InvalidInputError: a provider this adapter does not map, or a missing endpoint.
        ConfigurationError: no key for OpenAI or Anthropic.
        FrameworkNotInstalledError: ``anthropic`` (Anthropic) or ``litellm`` (the others) is missing.
    """
    if settings.provider == "anthropic":
        anthropic_llm = import_attr("google.adk.models.anthropic_llm", "AnthropicLlm",
                                    f"Anthropic models on google-adk need the anthropic package: {EXTRA}")
        from anthropic import AsyncAnthropic

        client_kwargs: Dict[str, Any] = {"api_key": anthropic_key(settings)}
        if settings.base_url:
            client_kwargs["base_url"] = settings.base_url
        if settings.extra_headers:
            client_kwargs["default_headers"] = dict(settings.extra_headers)
        return anthropic_llm(model=settings.model_id, max_tokens=MAX_OUTPUT_TOKENS,
                             client=AsyncAnthropic(**client_kwargs))
    if settings.provider in REFUSED_PROVIDERS or not is_openai_wire(settings):
        raise unsupported_provider(settings, FRAMEWORK)
    # find_spec, not an import: importing litellm fetches its price list (see the module docstring).
    if importlib.util.find_spec("litellm") is None:
        raise FrameworkNotInstalledError(f"OpenAI models on google-adk need litellm: {EXTRA}")
    from google.adk.models.lite_llm import LiteLlm

    endpoint = OpenAIEndpoint(settings)
    kwargs: Dict[str, Any] = {"api_key": endpoint.api_key}
    if endpoint.base_url:
        kwargs["api_base"] = endpoint.base_url
    if endpoint.headers:
        kwargs["extra_headers"] = endpoint.headers
    if endpoint.user:
        kwargs["user"] = endpoint.user
    if endpoint.prompt_cache_key:
        kwargs["extra_body"] = {"prompt_cache_key": endpoint.prompt_cache_key}
    if settings.reasoning_effort:
        kwargs["reasoning_effort"] = settings.reasoning_effort
    if settings.provider == "open_router":
        kwargs["max_tokens"] = MAX_OUTPUT_TOKENS
    return LiteLlm(model=f"openai/{settings.model_id}", **kwargs)


@functools.cache
def _tool_class() -> Any:
    from google.adk.tools import BaseTool
    from google.genai import types

    class XpanderTool(BaseTool):
        """An xpander tool: its JSON schema verbatim, the platform call in a worker thread."""

        def __init__(self, spec: XpanderToolSpec) -> None:
            super().__init__(name=spec.name, description=spec.description)
            self.spec = spec

        def _get_declaration(self) -> Any:
            return types.FunctionDeclaration(
                name=self.name, description=self.description, parameters_json_schema=self.spec.schema
            )

        async def run_async(self, *, args: Dict[str, Any], tool_context: Any) -> Any:
            del tool_context
            result = await asyncio.to_thread(self.spec.invoke, args)
            return render_tool_result(result)

    return XpanderTool


def xpander_tool(spec: XpanderToolSpec) -> Any:
    """The ADK ``BaseTool`` for an xpander tool.

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``BaseTool`` whose declaration is the JSON schema verbatim; it runs the platform
        call in a worker thread and returns :func:`~xpander_sync.frameworks._tools.render_tool_result`.
    """
    return _tool_class()(spec)


class _AdkBuild(AdapterBuild):
    framework = FRAMEWORK

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: List[Any], path: Tuple[str, ...]
    ) -> Dict[str, Any]:
        from google.adk.agents import LlmAgent

        path = self.check_cycle(agent, path)
        name = agent.sanitized_name
        args: Dict[str, Any] = {"name": name if name != "user" else "user_agent"}
        description = self.description(agent)
        if description:
            args["description"] = description
        prompt = self.system_prompt(agent, root)
        if prompt:
            args["static_instruction"] = prompt
        if self.has_model_override:
            args["model"] = self.override_model
        else:
            settings = self.llm_settings(agent)
            args["model"] = build_model(settings)
            temperature = temperature_for(settings)
            if temperature is not None:
                from google.genai import types

                args["generate_content_config"] = types.GenerateContentConfig(temperature=temperature)
        schema = self.output_schema(agent, root)
        if schema is not None:
            args["output_schema"] = schema
        args["tools"] = [xpander_tool(spec) for spec in self.xpander_tools(agent)] + self._mcp(agent, root)
        args["tools"] += extra_tools
        members = self.member_agents(agent)
        if members:
            args["sub_agents"] = [
                LlmAgent(**self.agent_args(m, root=False, extra_tools=[], path=path)) for m in members
            ]
        return args

    def _mcp(self, agent: Agent, root: bool) -> List[Any]:
        entries = self.mcp_entries(agent, root)
        if not entries:
            return []
        missing = f"MCP servers on google-adk need the mcp package: {EXTRA}"
        toolset = import_attr("google.adk.tools.mcp_tool", "McpToolset", missing)
        from google.adk.tools.mcp_tool import SseConnectionParams, StdioConnectionParams, StreamableHTTPConnectionParams
        from mcp import StdioServerParameters

        toolsets: List[Any] = []
        for kind, server, detail in entries:
            params: Any
            if kind == "stdio":
                command, argv, env = detail
                params = StdioConnectionParams(
                    server_params=StdioServerParameters(command=command, args=argv, env=env), timeout=MCP_TOOL_TIMEOUT
                )
            elif kind == "sse":
                params = SseConnectionParams(url=server.url, headers=detail, timeout=MCP_HTTP_TIMEOUT,
                                             sse_read_timeout=MCP_SSE_READ_TIMEOUT)
            else:
                params = StreamableHTTPConnectionParams(url=server.url, headers=detail, timeout=MCP_HTTP_TIMEOUT,
                                                        sse_read_timeout=MCP_SSE_READ_TIMEOUT)
            toolsets.append(toolset(connection_params=params, tool_filter=list(server.allowed_tools) or None))
        return toolsets


__all__ = ["FRAMEWORK", "build_google_adk_args", "build_model", "xpander_tool"]

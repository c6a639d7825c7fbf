"""The Google ADK adapter: an xpander agent as ``google.adk.agents.LlmAgent(**args)`` (google-adk 2.13).

ADK is imported inside the functions of this module only; building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[google-adk]"``). Every key returned is an ``LlmAgent`` field.

What :class:`GoogleADKAdapter` builds:

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
from typing import Any, Dict, List, Tuple

from ..errors import FrameworkNotInstalledError
from ..models.agent import Agent
from ._adapter import (
    MCP_HTTP_TIMEOUT,
    MCP_SSE_READ_TIMEOUT,
    MCP_TOOL_TIMEOUT,
    Adapter,
    ToolSpec,
    import_attr,
)
from ._llm import REFUSED_PROVIDERS, ModelSpec, anthropic_sdk_takes
from ._tools import render_tool_result

logger = logging.getLogger(__name__)

EXTRA = 'pip install "xpander-sync[google-adk]"'


@functools.cache
def _tool_class() -> Any:
    from google.adk.tools import BaseTool
    from google.genai import types

    class XpanderTool(BaseTool):
        """An xpander tool: its JSON schema verbatim, the platform call in a worker thread."""

        def __init__(self, spec: ToolSpec) -> None:
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


def xpander_tool(spec: ToolSpec) -> Any:
    """The ADK ``BaseTool`` for an xpander tool.

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``BaseTool`` whose declaration is the JSON schema verbatim; it runs the platform
        call in a worker thread and returns :func:`~xpander_sync.frameworks._tools.render_tool_result`.
    """
    return _tool_class()(spec)


class GoogleADKAdapter(Adapter):
    """Google ADK: ``google.adk.agents.LlmAgent(**args)``; team members become sub-agents."""

    name = "google-adk"
    extra = "google-adk"
    distribution = "google-adk"
    requires = "google.adk.agents"
    constructor = "google.adk.agents.LlmAgent"

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
            The keyword arguments for ``LlmAgent``.
        """
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
        args.update(self.model_args(agent))
        schema = self.output_schema(agent, root)
        if schema is not None:
            args["output_schema"] = schema
        args["tools"] = [xpander_tool(spec) for spec in self.xpander_tools(agent, root)] + self._mcp(agent, root)
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


    def apply_generation(self, args: Dict[str, Any], params: Dict[str, Any], built_here: bool) -> List[str]:
        """``override``'s generation parameters into ``generate_content_config`` (also beside a caller's model).

        ``max_tokens`` is ``max_output_tokens`` and ``stop`` is ``stop_sequences`` there;
        ``reasoning_effort`` reaches only a model built here (LiteLLM's keyword). For a Claude
        model, a sampling parameter the installed anthropic SDK no longer takes (2.x:
        ``temperature``, ``top_p``, ``top_k``) is dropped with the warning: ``AnthropicLlm`` would
        pass it as a keyword and fail the first turn.

        Args:
            args: the model arguments, changed in place.
            params: the generation parameters (type-checked).
            built_here: whether the adapter built ``args["model"]``.

        Returns:
            The parameters that could not be applied.
        """
        from google.genai import types

        names = {"max_tokens": "max_output_tokens", "stop": "stop_sequences"}
        update: Dict[str, Any] = {}
        missed: List[str] = []
        claude = type(args.get("model")).__name__ == "AnthropicLlm"
        for key, value in params.items():
            if claude and key in ("temperature", "top_p", "top_k") and not anthropic_sdk_takes(key):
                missed.append(key)
                continue
            if key == "reasoning_effort":
                if not built_here:
                    missed.append(key)
                continue
            update[names.get(key, key)] = [value] if key == "stop" and isinstance(value, str) else value
        config = args.get("generate_content_config") or types.GenerateContentConfig()
        args["generate_content_config"] = config.model_copy(update=update)
        return missed

    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The model arguments for a resolved spec.

        An ``AnthropicLlm`` (Anthropic) or a ``LiteLlm`` (``openai/<model>``, the others), and a
        ``generate_content_config`` carrying the temperature where there is one (not for Anthropic
        when the installed anthropic SDK no longer takes ``temperature``: AnthropicLlm passes it as
        a keyword). The Anthropic client gets :attr:`~ModelSpec.request_timeout` for the output cap.

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": ...}`` (plus the framework's model-settings keys, if any).

        Raises:
            InvalidInputError: a provider this adapter does not map, or a missing endpoint.
            ConfigurationError: no key for OpenAI or Anthropic.
            FrameworkNotInstalledError: the provider's package is missing.
        """
        args = {"model": self._model_object(spec)}
        temperature_ok = spec.provider != "anthropic" or anthropic_sdk_takes("temperature")
        if spec.temperature is not None and temperature_ok:
            from google.genai import types

            args["generate_content_config"] = types.GenerateContentConfig(temperature=spec.temperature)
        return args

    def _model_object(self, spec: ModelSpec) -> Any:
        if spec.provider == "anthropic":
            anthropic_llm = import_attr("google.adk.models.anthropic_llm", "AnthropicLlm",
                                        f"Anthropic models on google-adk need the anthropic package: {EXTRA}")
            from anthropic import AsyncAnthropic

            # AnthropicLlm sends a non-streaming request with the output cap: the SDK needs a timeout for it.
            client_kwargs: Dict[str, Any] = {"api_key": spec.anthropic_key()}
            if spec.request_timeout:
                client_kwargs["timeout"] = spec.request_timeout
            if spec.base_url:
                client_kwargs["base_url"] = spec.base_url
            if spec.extra_headers:
                client_kwargs["default_headers"] = dict(spec.extra_headers)
            client = AsyncAnthropic(**client_kwargs)
            return anthropic_llm(model=spec.model_id, max_tokens=spec.max_tokens, client=client)
        if spec.provider in REFUSED_PROVIDERS or not spec.is_openai_wire:
            raise spec.unsupported(self.name)
        # find_spec, not an import: importing litellm fetches its price list (see the module docstring).
        if importlib.util.find_spec("litellm") is None:
            raise FrameworkNotInstalledError(f"OpenAI models on google-adk need litellm: {EXTRA}")
        from google.adk.models.lite_llm import LiteLlm

        endpoint = spec.openai_endpoint(self.name)
        kwargs: Dict[str, Any] = {"api_key": endpoint.api_key}
        if endpoint.base_url:
            kwargs["api_base"] = endpoint.base_url
        if endpoint.headers:
            kwargs["extra_headers"] = endpoint.headers
        if endpoint.user:
            kwargs["user"] = endpoint.user
        if endpoint.prompt_cache_key:
            kwargs["extra_body"] = {"prompt_cache_key": endpoint.prompt_cache_key}
        if spec.reasoning_effort:
            kwargs["reasoning_effort"] = spec.reasoning_effort
        if spec.max_tokens:
            kwargs["max_tokens"] = spec.max_tokens
        return LiteLlm(model=f"openai/{spec.model_id}", **kwargs)


#: The registry's builder (kept for code that imported it).
build_google_adk_args = GoogleADKAdapter.build
FRAMEWORK = GoogleADKAdapter.name

__all__ = ["FRAMEWORK", "GoogleADKAdapter", "build_google_adk_args", "xpander_tool"]

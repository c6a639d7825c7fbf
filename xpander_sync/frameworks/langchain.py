"""The LangChain adapter: an xpander agent as ``langchain.agents.create_agent(**args)`` (langchain 1.4).

``create_agent`` is a function returning a langgraph ``CompiledStateGraph``, so the
arguments are that function's, not a class's. LangChain is imported inside the functions
of this module only (the module's name does not shadow the real package: imports are
absolute); building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[langchain]"``).

What :class:`LangChainAdapter` builds:

* ``name``: ``agent.sanitized_name`` (it becomes the ``name`` of the agent's messages,
  which OpenAI restricts to ``[A-Za-z0-9_-]``).
* ``system_prompt``: description, role and goals (or the task's
  ``instructions_override``), expected output, the Markdown hint, the task user's details
  and ``task.additional_context``.
* ``model``: OpenAI and OpenAI-compatible providers → ``langchain_openai.ChatOpenAI``
  (``use_responses_api=True`` for Responses-only models); Anthropic →
  ``langchain_anthropic.ChatAnthropic``. Keys follow
  :func:`~xpander_sync.frameworks._llm.resolve_llm`; extra LLM headers go in
  ``default_headers``. Skipped when ``override`` has ``"model"``.
* ``response_format``: the JSON schema (a copy, ``title`` added when missing), which
  LangChain turns into provider-native structured output or a tool strategy.
* ``tools``: one ``StructuredTool`` per xpander tool, its ``args_schema`` the JSON schema
  verbatim; then one delegation tool per team member (``ask_<member>``: runs the member's
  own agent graph on the request and returns its answer); then the caller's ``tools``.
* ``middleware``: ``ToolCallLimitMiddleware(run_limit=...)`` when the task or the agent
  sets a tool-call limit.

Not built: MCP servers (``langchain-mcp-adapters`` connects to a server to list its
tools, so they cannot be built offline; a warning names them), session storage
(``checkpointer``), guardrails, date/time context.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Tuple

from ..models.agent import Agent
from ._adapter import (
    MEMBER_TOOL_SCHEMA,
    OUTPUT_SCHEMA_NAME,
    Adapter,
    ToolSpec,
    import_attr,
    member_tool_description,
    member_tool_name,
)
from ._llm import ModelSpec

logger = logging.getLogger(__name__)


def structured_tool(spec: ToolSpec) -> Any:
    """The ``StructuredTool`` for an xpander tool (JSON schema verbatim as ``args_schema``).

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``StructuredTool`` that calls the platform and returns the rendered result.
    """
    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(
        func=spec.call, name=spec.name, description=spec.description, args_schema=spec.schema
    )


def member_tool(member: Agent, graph: Any) -> Any:
    """A tool that runs a member's agent graph on a request and returns its answer.

    Args:
        member: the team member (its name and description name and describe the tool).
        graph: the member's compiled agent graph (``create_agent(**member_args)``).

    Returns:
        A ``StructuredTool`` (sync and async) taking one free-text ``request``; its answer
        is :func:`answer_of` the member's final state, and the state itself is the tool
        message's ``artifact`` (so ``Backend.report_run`` counts the member's tokens and tools).
    """
    from langchain_core.tools import StructuredTool

    def ask(request: str) -> Tuple[str, Any]:
        state = graph.invoke({"messages": [{"role": "user", "content": request}]})
        return answer_of(state), state

    async def aask(request: str) -> Tuple[str, Any]:
        state = await graph.ainvoke({"messages": [{"role": "user", "content": request}]})
        return answer_of(state), state

    return StructuredTool.from_function(
        func=ask, coroutine=aask, name=member_tool_name(member),
        description=member_tool_description(member), args_schema=dict(MEMBER_TOOL_SCHEMA),
        response_format="content_and_artifact",
    )


def answer_of(state: Any) -> str:
    """The text a member returns: its structured response as JSON, else its last message's text.

    Args:
        state: the final state the member's graph returned.

    Returns:
        The answer text; ``""`` when the state has neither.
    """
    if isinstance(state, dict):
        if state.get("structured_response") is not None:
            value = state["structured_response"]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        messages = state.get("messages") or []
        if messages:
            last = messages[-1]
            text = getattr(last, "text", None)
            if callable(text) and not isinstance(text, str):  # langchain-core < 1: a method
                text = text()
            return str(text if text is not None else getattr(last, "content", ""))
    return ""


class LangChainAdapter(Adapter):
    """LangChain: ``langchain.agents.create_agent(**args)``; team members become delegation tools."""

    name = "langchain"
    extra = "langchain"
    distribution = "langchain"
    requires = "langchain.agents"
    constructor = "langchain.agents.create_agent"

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
            The keyword arguments for ``create_agent``.
        """
        from langchain.agents import create_agent

        path = self.check_cycle(agent, path)
        args: Dict[str, Any] = {**self.model_args(agent), "name": agent.sanitized_name}
        prompt = self.system_prompt(agent, root)
        if prompt:
            args["system_prompt"] = prompt
        schema = self.output_schema(agent, root)
        if schema is not None:
            schema.setdefault("title", OUTPUT_SCHEMA_NAME)
            args["response_format"] = schema
        agent_tools: List[Any] = [structured_tool(spec) for spec in self.xpander_tools(agent, root)]
        for member in self.member_agents(agent):
            member_args = self.agent_args(member, root=False, extra_tools=[], path=path)
            agent_tools.append(member_tool(member, create_agent(**member_args)))
        args["tools"] = agent_tools + extra_tools
        limit = self.tool_call_limit(agent, root)
        if limit:
            from langchain.agents.middleware import ToolCallLimitMiddleware

            args["middleware"] = [ToolCallLimitMiddleware(run_limit=limit)]
        self.skip_mcp(agent, root, "langchain-mcp-adapters must connect to list the tools; build them yourself "
                      "and pass them in tools=")
        return args


    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The model arguments for a resolved spec.

        A ``ChatAnthropic`` (Anthropic) or a ``ChatOpenAI`` (the OpenAI-wire providers).

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": ...}`` (plus the framework's model-settings keys, if any).

        Raises:
            InvalidInputError: a provider this adapter does not map, or a missing endpoint.
            ConfigurationError: no key for OpenAI or Anthropic.
            FrameworkNotInstalledError: the provider's package is missing.
        """
        if spec.provider == "anthropic":
            chat_anthropic = import_attr(
                "langchain_anthropic", "ChatAnthropic",
                'Anthropic models need langchain-anthropic: pip install "xpander-sync[langchain]"',
            )
            kwargs: Dict[str, Any] = {"model": spec.model_id, "api_key": spec.anthropic_key(),
                                      "max_tokens": spec.max_tokens}
            if spec.temperature is not None:
                kwargs["temperature"] = spec.temperature
            if spec.base_url:
                kwargs["base_url"] = spec.base_url
            if spec.extra_headers:
                kwargs["default_headers"] = dict(spec.extra_headers)
            return {"model": chat_anthropic(**kwargs)}
        endpoint = spec.openai_endpoint(self.name)
        chat_openai = import_attr(
            "langchain_openai", "ChatOpenAI",
            'OpenAI models need langchain-openai: pip install "xpander-sync[langchain]"',
        )
        # stream_usage: a streamed answer carries its token usage from any endpoint (langchain-openai
        # asks OpenAI's own only), so a streamed run's report has its real tokens
        kwargs = {"model": spec.model_id, "api_key": endpoint.api_key, "stream_usage": True}
        if endpoint.base_url:
            kwargs["base_url"] = endpoint.base_url
        if endpoint.headers:
            kwargs["default_headers"] = endpoint.headers
        if spec.temperature is not None:
            kwargs["temperature"] = spec.temperature
        if spec.reasoning_effort:
            kwargs["reasoning_effort"] = spec.reasoning_effort
        if endpoint.user:
            kwargs["model_kwargs"] = {"user": endpoint.user}
        if endpoint.prompt_cache_key:
            kwargs["extra_body"] = {"prompt_cache_key": endpoint.prompt_cache_key}
        if spec.max_tokens:
            kwargs["max_tokens"] = spec.max_tokens
        if spec.uses_responses_api:
            kwargs["use_responses_api"] = True
        return {"model": chat_openai(**kwargs)}


#: The registry's builder (kept for code that imported it).
build_langchain_args = LangChainAdapter.build
FRAMEWORK = LangChainAdapter.name

__all__ = ["FRAMEWORK", "LangChainAdapter", "build_langchain_args"]

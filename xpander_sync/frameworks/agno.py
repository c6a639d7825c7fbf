"""The agno adapter: an xpander agent as ``agno.agent.Agent(**args)`` / ``agno.team.Team(**args)``.

agno is imported inside the functions of this module only, so ``import xpander_sync``
works without it; building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError`. Targets agno 3.1 (Agent and
Team take no ``**kwargs``: every key built here is a constructor parameter, and no
private ``_xpander_*`` key is ever returned).

What :class:`AgnoAdapter` builds, and where each value comes from (the reference's
section 3.2, with the upstream bugs of its section 7 fixed):

* ``id``, ``name``; ``description`` = ``agent.description`` or ``instructions.general``.
* ``instructions`` = ``task.instructions_override`` when set (it *replaces* the role and
  goals, as upstream), else the agent's role/goal block; omitted when empty. A team
  leader's instructions end with an ``<expected_output>`` block.
* ``expected_output``: the task's, else the agent's.
* ``model``: see :meth:`AgnoAdapter.model` (skipped, and the organization headers not
  fetched, when ``override`` has ``"model"``).
* Output: a ``json`` agent gets ``use_json_mode=True`` and ``output_schema`` as the
  provider ``response_format`` wrapper ``{"type": "json_schema", "json_schema": {...}}``;
  ``markdown`` agents ``markdown=True``; ``voice`` agents neither. A task whose
  ``output_format`` differs decides instead (``json`` with its schema, ``markdown``,
  ``text``/``voice`` → plain); a task with no ``output_format`` changes nothing (upstream
  turns markdown off, bug #8).
* Session storage (``agno_settings.session_storage``): ``add_history_to_context``,
  ``session_id`` (task's conversation id, else task id), ``user_id``, ``num_history_runs``,
  ``enable_session_summaries``, ``max_tool_calls_from_history`` and ``db``: a
  ``PostgresDb`` (``AsyncPostgresDb`` for ``aget_args``) in schema ``ag_<agent id>``, built
  without opening a session; a ``sqlite:`` address (what the local backend answers: a file
  of its own) gives a ``SqliteDb``. A store on ``localhost`` or an IP address is probed with
  one TCP connection, the answer remembered for a minute (a warm ``get_args`` probes
  nothing): when nothing listens, the agent is built without ``db`` and history, with one
  warning per address and process, rather than agno logging a refused connection on every
  run. A host name is not looked up at build time; agno's own error names it.
* ``tool_call_limit``: the task's (for the agent the task runs), else
  ``agno_settings.tool_call_limit``, else none. The official SDK defaults to 800
  (``XPANDER_TOOL_CALL_LIMIT``); agno's own default (no limit) is kept here so a
  caller's choice is never second-guessed; pass ``override={"tool_call_limit": n}``.
* ``pre_hooks``: the enabled guardrails (PII, prompt injection, OpenAI moderation).
* ``additional_context``: the xpander memories block (``features/memories.py``) when
  memories are on, then ``User details: <user JSON>`` when the task has a user, then
  ``task.additional_context``.
* ``knowledge_retriever`` + ``search_knowledge=True`` when the agent has knowledge bases:
  the platform's KB search (``features/knowledge.py``), called by agno's own
  ``search_knowledge_base`` tool.
* ``tools``: one agno ``Function`` per xpander tool (schema from
  :mod:`~xpander_sync.frameworks._tools`; a plain synchronous entrypoint that calls
  ``context.invoke_tool`` with *this* call's agent and task, so it works under
  ``agent.run`` and ``agent.arun``: agno runs sync tools in a worker thread), one
  ``MCPTools`` per MCP server (never connected here; tokens are not written back to the
  agent or task), then the caller's ``tools`` (root only).
* Teams: members are loaded through the context, built recursively and become
  ``Agent(**m)`` / ``Team(**m)``. Each member keeps **its own model** (upstream forces the
  leader's model on every member); ``override["model"]`` and the task's model choice
  apply to every member. ``override``'s other keys, the caller's ``tools``, the task's
  MCP servers, instructions override, expected output, output format and tool-call
  limit apply to the leader (the agent the task runs) only.
* ``add_datetime_to_context``, ``datetime_format``, ``timezone_identifier``,
  ``store_events=True``, ``telemetry=False``; ``learning`` when set.
* ``override``: applied last (a shallow ``dict.update``).

The ``manage_memory`` tool joins ``tools`` when memories are on (docs/feature_knowledge.md).

Platform features built for every framework (:mod:`~xpander_sync.frameworks.features`, in
``instructions``, ``expected_output``, ``additional_context`` and ``tools`` above): the
dynamic prompt, the environment context layers and the channel presence (both texts cached
with the agent), knowledge bases (agno's own ``knowledge_retriever``), xpander memories,
deep planning (task reload, planning instructions, expected-output suffix, the plan in the
context, the plan tools kept or removed) and dynamic tools (the four ``xp_*`` meta-tools
for a large catalog).

Platform extras of the official builder that are skipped (each is an extra HTTP call or
prompt block per build): the context-optimising compression manager, ``ReasoningTools``, the
tool hook's preflight reports, refusal guards and result compaction, and workspace-hosted MCP
servers.

Built for every framework instead of agno's async-only tool hook: the tool-call layer
(:mod:`~xpander_sync.frameworks._toolcall`: stringified JSON arguments coerced, transient
failures retried twice, tool approvals, ``tool_call_request``/``tool_call_result`` activity
events pushed in the background), in sync and async runs alike; and the task's LLM route
(:mod:`~xpander_sync.frameworks.features.gateway`: the custom LLM endpoint and the LLM
gateway) on the ``model``.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, cast
from urllib.parse import urlsplit

from ..errors import FrameworkNotInstalledError, InvalidInputError, ResponseDecodeError
from ..models.agent import Agent
from ..models.common import OutputFormat
from . import _llm
from ._adapter import OUTPUT_SCHEMA_NAME, Adapter, ToolSpec, import_attr
from ._llm import ModelSpec
from ._tools import render_tool_result  # noqa: F401  (kept importable from here)
from .features.knowledge import KnowledgeFeature

logger = logging.getLogger(__name__)

#: Seconds an MCP tool call may take (agno's ``timeout_seconds``), as upstream.
MCP_TOOL_TIMEOUT = 120
#: Seconds to connect/write to a remote MCP server.
MCP_HTTP_TIMEOUT = 60.0
#: Seconds a remote MCP stream may stay silent (long-running tools), as upstream.
MCP_SSE_READ_TIMEOUT = 1200.0
#: Prefix of MCP tool names, as upstream (``mcp_tool_search``).
MCP_TOOL_PREFIX = "mcp_tool"
#: Hour precision keeps the system prompt stable for provider prompt caching (as upstream).
DATETIME_FORMAT = "%Y-%m-%d %H:00 %Z"
#: Output token cap for providers whose agno default is too small (Anthropic 8192, OpenRouter 1024).
MAX_OUTPUT_TOKENS = _llm.MAX_OUTPUT_TOKENS

# provider -> (module, class) of the OpenAI-compatible agno classes.
_OPENAI_LIKE_CLASSES: Dict[str, Tuple[str, str]] = {
    "nebius": ("agno.models.nebius", "Nebius"),
    "open_router": ("agno.models.openrouter", "OpenRouter"),
    "fireworks": ("agno.models.fireworks", "Fireworks"),
    "nim": ("agno.models.nvidia", "Nvidia"),
}
# Providers served through agno's generic OpenAILike class (the platform's default base
# URL, or the agent's llm_api_base).
_GENERIC_OPENAI_LIKE = ("helicone", "bytedance", "tzafon_lightcone", "cerebras", "z_ai")
# Providers whose endpoint is the user's own: llm_api_base is required.
_NEEDS_BASE_URL = ("cloudflare_ai_gw", "openai_compatible", "azure_ai_foundary")
_BEDROCK_TEMPERATURE_FREE = ("opus-4-7", "opus-4-8", "opus-5", "sonnet-5", "fable-5")

#: Every provider the adapter can build (plus any other name when ``llm_api_base`` is set).
SUPPORTED_PROVIDERS = tuple(
    sorted(
        {"openai", "anthropic", "google_ai_studio", "amazon_bedrock", "azure_ai_foundary", "cloudflare_ai_gw",
         "openai_compatible", *_OPENAI_LIKE_CLASSES, *_GENERIC_OPENAI_LIKE}
    )
)


#: Seconds a session store's reachability is remembered (the platform's metadata cache TTL).
STORE_PROBE_TTL = 60.0
_probes: Dict[Tuple[str, int], Tuple[float, bool]] = {}
_warned_unreachable: set = set()
_probe_lock = threading.Lock()


def _store_reachable(uri: str, agent_id: str) -> bool:
    """Whether a session store on an IP address or ``localhost`` accepts a TCP connection.

    An unreachable store would make agno log a connection error on *every* run (and on every
    history read); without it the agent runs, and its sessions are not kept, which one warning
    per address says. Only addresses that need no name lookup are probed (a Postgres that is
    not running on this machine or a private address; remembered for a minute, so a warm
    ``get_args`` probes nothing); a host name is left to agno, whose error names it.
    """
    try:
        parts = urlsplit(uri.strip())
        host, port = parts.hostname, parts.port or 5432
    except ValueError:  # a bad port: the URL check after this says so
        return True
    if not host or not _is_address(host):
        return True
    key = (host, port)
    now = time.monotonic()
    with _probe_lock:
        cached = _probes.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        socket.create_connection(key, timeout=1.0).close()
        reachable = True
    except OSError:
        reachable = False
    with _probe_lock:
        _probes[key] = (now + STORE_PROBE_TTL, reachable)
        first = not reachable and key not in _warned_unreachable
        if first:
            _warned_unreachable.add(key)
    if first:
        logger.warning("agent %s: the session store at %s:%d cannot be reached; the agent runs without "
                       "session storage (sessions are not kept) until it can", agent_id, host, port)
    return reachable


def _is_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AgnoAdapter(Adapter):
    """agno: ``agno.agent.Agent(**args)``, or ``agno.team.Team(**args)`` when ``members`` is present."""

    name = "agno"
    extra = "agno"
    distribution = "agno"
    requires = "agno"
    constructor = "agno.agent.Agent"
    team_constructor = "agno.team.Team"
    #: knowledge bases go to agno's own retriever slot, not a search tool (features/knowledge.py).
    native_knowledge = True

    @classmethod
    def constructor_for(cls, args: Dict[str, Any]) -> str:
        """``agno.team.Team`` for a team (``members`` in ``args``), else ``agno.agent.Agent``.

        Args:
            args: the built arguments.

        Returns:
            The dotted constructor name.
        """
        return cls.team_constructor if "members" in args else cls.constructor

    # -- the dict ----------------------------------------------------------------------

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: List[Any], path: Tuple[str, ...]
    ) -> Dict[str, Any]:
        """One agent's ``Agent``/``Team`` arguments (the module docstring lists them).

        Args:
            agent: the agent (a leader, a member, or a lone agent).
            root: whether it is the agent the task runs (task-level choices apply).
            extra_tools: the caller's tools (root only).
            path: the ids of the leaders above it.

        Returns:
            The keyword arguments for ``Agent`` / ``Team``.
        """
        path = self.check_cycle(agent, path)
        settings = agent.agno_settings
        args: Dict[str, Any] = {"id": agent.id, "name": agent.name}

        description = agent.description or agent.instructions.general
        if description:
            args["description"] = description
        instructions = self._instructions(agent, root)
        if instructions:
            args["instructions"] = instructions
        expected = self.expected_output(agent, root)
        if expected:
            args["expected_output"] = expected

        args.update(self.model_args(agent))
        self._output(args, agent, root)
        if settings.session_storage:
            self._session_storage(args, agent)
        if settings.learning:
            args["learning"] = True
        additional = self.additional_context(agent, root)
        if additional:
            args["additional_context"] = additional
        limit = self.tool_call_limit(agent, root)
        if limit:
            args["tool_call_limit"] = limit
        knowledge = next((f for f in self.features if isinstance(f, KnowledgeFeature)), None)
        retriever = knowledge.retriever(agent) if knowledge is not None else None
        if retriever is not None:
            args["knowledge_retriever"] = retriever
            args["search_knowledge"] = True
        hooks = self._guardrails(agent, args["model"])
        if hooks:
            args["pre_hooks"] = hooks

        agent_tools: List[Any] = [agno_function(spec) for spec in self.xpander_tools(agent, root)]
        agent_tools.extend(self._mcp_toolkits(agent, root))
        agent_tools.extend(extra_tools)
        args["tools"] = agent_tools

        if agent.is_a_team:
            args["members"] = self._members(agent, path)
            args["add_member_tools_to_context"] = True
            args["share_member_interactions"] = True
            args["show_members_responses"] = True

        args["add_datetime_to_context"] = True
        args["datetime_format"] = DATETIME_FORMAT
        args["timezone_identifier"] = "UTC"
        args["store_events"] = True
        args["telemetry"] = False
        return args

    # -- model -------------------------------------------------------------------------

    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The agno model object for a resolved spec.

        OpenAI → ``OpenAIChat`` (``OpenAIResponses`` for Responses-only models, or a
        reasoning model at high/xhigh effort); Anthropic → ``Claude``; Google AI Studio →
        ``Gemini``; Bedrock → ``AwsBedrock``; Azure AI Foundry → ``AzureAIFoundry``; Nebius,
        OpenRouter, Fireworks, NIM → their agno classes; Helicone, BytePlus, Tzafon,
        Cerebras, Z.ai, Cloudflare AI Gateway, ``openai_compatible`` and any other provider
        with ``llm_api_base`` → ``OpenAILike``. ``temperature=0.0`` for OpenAI, NIM,
        Anthropic, Azure and Bedrock, never for reasoning models. ``user`` is the
        organization id for OpenAI-wire providers. Anthropic receives the extra headers as
        ``default_headers`` (its ``User-Agent`` is left alone: upstream overwrites it with
        the organization id).

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": <an agno Model>}``.

        Raises:
            FrameworkNotInstalledError: the provider's package is missing (named in the message).
            InvalidInputError: unknown provider, a required ``llm_api_base`` missing, or a
                configuration agno cannot express (a stored Bedrock credential or endpoint).
        """
        provider, key = spec.provider, spec.key
        common: Dict[str, Any] = {"id": spec.model_id, "retries": 3, "exponential_backoff": True}
        if provider == "anthropic":
            claude = _model_class("agno.models.anthropic", "Claude", "anthropic")
            kwargs = dict(common, api_key=key, cache_system_prompt=True, max_tokens=spec.max_tokens,
                          timeout=spec.request_timeout)
            if spec.temperature is not None:
                kwargs["temperature"] = spec.temperature
            if spec.extra_headers:
                kwargs["default_headers"] = dict(spec.extra_headers)
            if spec.base_url:
                kwargs["client_params"] = {"base_url": spec.base_url}
            return {"model": claude(**kwargs)}
        if provider == "google_ai_studio":
            return {"model": _gemini_model(spec, key, common)}
        if provider == "amazon_bedrock":
            return {"model": _bedrock_model(spec, key, common)}
        if provider == "azure_ai_foundary":
            if not key or key == _llm.EMPTY_KEY or not spec.base_url:
                raise InvalidInputError(
                    "azure_ai_foundary needs an endpoint and a key: set the agent's llm_api_base and an "
                    "Authorization extra header or a stored key (or AZURE_API_KEY)"
                )
            azure = _model_class("agno.models.azure.ai_foundry", "AzureAIFoundry", "azure-ai-inference aiohttp")
            if spec.extra_headers:
                logger.debug("azure_ai_foundary: the agent's extra LLM headers are not sent (agno has no option)")
            return {"model": azure(**dict(common, api_key=key, azure_endpoint=spec.base_url, temperature=0.0))}
        return {"model": _openai_wire_model(spec, key, common)}

    # -- pieces ------------------------------------------------------------------------

    def _instructions(self, agent: Agent, root: bool) -> str:
        text = self._raw_instructions(agent, root)
        if agent.is_a_team and agent.expected_output:
            # The leader restates the team's expected output (reference 7.11, step 7).
            text += (
                f"\n\n            <expected_output>\n            {agent.expected_output}\n"
                "            </expected_output>\n        "
            )
        return text if text.strip() else ""

    def _raw_instructions(self, agent: Agent, root: bool) -> str:
        task = self.task
        if root and task is not None and task.instructions_override:
            text = task.instructions_override
        else:
            text = agent.instructions.instructions
        return self.feature_instructions(agent, root, text)

    def _output(self, args: Dict[str, Any], agent: Agent, root: bool) -> None:
        fmt = agent.output_format
        if fmt == OutputFormat.VOICE:
            args["use_json_mode"] = False
            args["markdown"] = False
            return
        if fmt == OutputFormat.JSON:
            args["use_json_mode"] = True
            if agent.output_schema:
                args["output_schema"] = _response_format(agent.output_schema)
        elif fmt == OutputFormat.MARKDOWN:
            args["markdown"] = True
        task = self.task
        if not root or task is None or task.output_format is None:
            return
        if task.output_format == fmt and not (fmt == OutputFormat.JSON and task.output_schema):
            return
        # The task asks for another format: it decides (a task without one changes nothing).
        args.pop("output_schema", None)
        args.pop("use_json_mode", None)
        if task.output_format == OutputFormat.JSON:
            args["use_json_mode"] = True
            args["markdown"] = False
            schema = task.output_schema or (agent.output_schema if fmt == OutputFormat.JSON else None)
            if schema:
                args["output_schema"] = _response_format(schema)
        elif task.output_format == OutputFormat.MARKDOWN:
            args["markdown"] = True
        else:
            args["markdown"] = False

    def _session_storage(self, args: Dict[str, Any], agent: Agent) -> None:
        db = self._db(agent)
        if db is None:  # the store cannot be reached: no history to read or write
            return
        settings = agent.agno_settings
        task = self.task
        args["add_history_to_context"] = True
        if task is not None:
            args["session_id"] = task.conversation_id or task.id
            if task.input.user is not None and task.input.user.id:
                args["user_id"] = task.input.user.id
        if settings.num_history_runs is not None:
            args["num_history_runs"] = settings.num_history_runs
        if settings.session_summaries:
            args["enable_session_summaries"] = True
        if settings.max_tool_calls_from_history is not None and settings.max_tool_calls_from_history >= 1:
            args["max_tool_calls_from_history"] = settings.max_tool_calls_from_history
        args["db"] = db

    def _db(self, agent: Agent) -> Any:
        is_async = bool(getattr(self.context, "is_async", False))
        try:
            from agno.db.postgres import AsyncPostgresDb, PostgresDb
        except ImportError:
            raise FrameworkNotInstalledError(
                "agno session storage needs SQLAlchemy (with greenlet) and psycopg: "
                'pip install "xpander-sync[agno]"'
            ) from None
        uri = self.context.db_connection_uri(agent)
        if uri.strip().lower().startswith("sqlite:"):
            # A SQLite file (the local backend's session store): agno's sync SqliteDb serves run and
            # arun alike, and needs no driver beyond SQLAlchemy.
            from agno.db.sqlite import SqliteDb

            return SqliteDb(db_url=uri.strip())
        if not _store_reachable(uri, agent.id):
            return None  # one warning per address and process, instead of agno's error on every run
        url = sqlalchemy_url(uri, is_async=is_async)
        db_class = AsyncPostgresDb if is_async else PostgresDb
        try:
            return db_class(db_url=url, db_schema=db_schema_for(agent))
        except Exception:
            # SQLAlchemy's messages quote the URL, password included: never chain them.
            problem = f"not a usable database URL for {db_class.__name__} @ $.connection_uri.uri"
            raise ResponseDecodeError("AgentDB", [problem]) from None

    def _guardrails(self, agent: Agent, model: Any) -> List[Any]:
        settings = agent.agno_settings
        if not (settings.pii_detection_enabled or settings.prompt_injection_detection_enabled
                or settings.openai_moderation_enabled):
            return []
        from agno.guardrails import OpenAIModerationGuardrail, PIIDetectionGuardrail, PromptInjectionGuardrail

        hooks: List[Any] = []
        if settings.pii_detection_enabled:
            hooks.append(PIIDetectionGuardrail(mask_pii=settings.pii_detection_mask))
        if settings.prompt_injection_detection_enabled:
            hooks.append(PromptInjectionGuardrail())
        if settings.openai_moderation_enabled:
            hooks.append(
                OpenAIModerationGuardrail(
                    api_key=_moderation_key(model),
                    raise_for_categories=list(settings.openai_moderation_categories or []) or None,  # type: ignore[arg-type]
                )
            )
        return hooks

    def _mcp_toolkits(self, agent: Agent, root: bool) -> List[Any]:
        if not self.mcp_servers(agent, root):
            return []
        try:
            from agno.tools.mcp import MCPTools, SSEClientParams, StreamableHTTPClientParams
            from mcp import StdioServerParameters
        except ImportError:
            raise FrameworkNotInstalledError(
                'MCP servers need the mcp package: pip install "xpander-sync[agno]"'
            ) from None
        toolkits: List[Any] = []
        for kind, server, detail in self.mcp_entries(agent, root):
            params: Any
            if kind == "stdio":
                params = StdioServerParameters(command=detail[0], args=detail[1], env=detail[2])
            else:
                params_class = SSEClientParams if kind == "sse" else StreamableHTTPClientParams
                params = params_class(url=str(server.url), headers=detail, timeout=MCP_HTTP_TIMEOUT,
                                      sse_read_timeout=MCP_SSE_READ_TIMEOUT)
            toolkits.append(
                MCPTools(transport=cast(Any, kind), server_params=params,
                         include_tools=list(server.allowed_tools) or None,
                         timeout_seconds=MCP_TOOL_TIMEOUT, tool_name_prefix=MCP_TOOL_PREFIX)
            )
        return toolkits

    def _members(self, agent: Agent, path: Tuple[str, ...]) -> List[Any]:
        from agno.agent import Agent as AgnoAgent
        from agno.team import Team as AgnoTeam

        members: List[Any] = []
        for member in self.member_agents(agent):
            member_args = self.agent_args(member, root=False, extra_tools=[], path=path)
            members.append(AgnoTeam(**member_args) if "members" in member_args else AgnoAgent(**member_args))
        return members


#: The registry's builder (kept for code that imported it).
build_agno_args = AgnoAdapter.build


def agno_function(spec: ToolSpec) -> Any:
    """The agno ``Function`` for an xpander tool (its JSON schema verbatim, no entrypoint processing).

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``Function`` whose entrypoint is :func:`tool_entrypoint`.
    """
    from agno.tools.function import Function

    return Function(name=spec.name, description=spec.description, parameters=spec.schema,
                    entrypoint=tool_entrypoint(spec), skip_entrypoint_processing=True)


def tool_entrypoint(spec: ToolSpec) -> Callable[..., str]:
    """A plain function agno calls with the LLM's arguments; it calls the tool for *this* agent and task.

    Synchronous on purpose: agno runs sync tools directly in ``run`` and in a worker
    thread in ``arun`` (the official SDK's coroutine tools return an un-awaited coroutine
    under ``run``).

    Args:
        spec: the tool, bound to this build's context, agent and task.

    Returns:
        A function named ``xpander_tool_<tool id>`` with the tool's description as its
        docstring; it returns :func:`~xpander_sync.frameworks._tools.render_tool_result` of
        the call and does not raise for a platform or network failure.
    """

    def call_xpander_tool(**arguments: Any) -> str:
        return spec.call(**arguments)

    call_xpander_tool.__name__ = call_xpander_tool.__qualname__ = f"xpander_tool_{spec.name}"
    call_xpander_tool.__doc__ = spec.description
    return call_xpander_tool


# -- model helpers -------------------------------------------------------------------------------


def _openai_wire_model(spec: ModelSpec, key: Optional[str], common: Dict[str, Any]) -> Any:
    provider = spec.provider
    if provider == "openai":
        module, name = "agno.models.openai", "OpenAIChat"
        if spec.uses_responses_api or (spec.is_reasoning_family and spec.reasoning_effort in ("high", "xhigh")):
            name = "OpenAIResponses"
    elif provider in _OPENAI_LIKE_CLASSES:
        module, name = _OPENAI_LIKE_CLASSES[provider]
    elif provider in _GENERIC_OPENAI_LIKE or provider in _NEEDS_BASE_URL or spec.base_url:
        module, name = "agno.models.openai.like", "OpenAILike"
    else:
        raise InvalidInputError(
            f"model provider {provider!r} is not supported by the agno adapter; supported: "
            f"{', '.join(SUPPORTED_PROVIDERS)} (or any OpenAI-compatible provider with llm_api_base set)"
        )
    if provider in _NEEDS_BASE_URL and not spec.base_url:
        raise InvalidInputError(f"model provider {provider!r} needs the agent's llm_api_base")
    model_class = _model_class(module, name, "openai")
    kwargs = dict(common)
    # Only OpenAI itself may fall back to OPENAI_API_KEY; any other endpoint gets a
    # placeholder rather than the OpenAI client's environment lookup.
    kwargs["api_key"] = key if (key or provider == "openai") else _llm.EMPTY_KEY
    if spec.base_url:
        kwargs["base_url"] = spec.base_url
    if spec.extra_headers:
        kwargs["extra_headers"] = dict(spec.extra_headers)
    if spec.organization_id:
        kwargs["user"] = spec.organization_id
    if provider in _llm.OPENAI_WIRE_PROVIDERS:
        kwargs["extra_body"] = {"prompt_cache_key": spec.prompt_cache_key}
    if spec.reasoning_effort:
        kwargs["reasoning_effort"] = spec.reasoning_effort
    if spec.temperature is not None:
        kwargs["temperature"] = spec.temperature
    if spec.max_tokens:
        kwargs["max_tokens"] = spec.max_tokens
    return model_class(**kwargs)


def _gemini_model(spec: ModelSpec, key: Optional[str], common: Dict[str, Any]) -> Any:
    gemini = _model_class("agno.models.google.gemini", "Gemini", "google-genai")
    kwargs = dict(common, api_key=key)
    http_options: Dict[str, Any] = {}
    if spec.base_url:
        http_options["base_url"] = spec.base_url
    if spec.extra_headers:
        http_options["headers"] = dict(spec.extra_headers)  # upstream drops them
    if http_options:
        kwargs["client_params"] = {"http_options": http_options}
    return gemini(**kwargs)


def _bedrock_model(spec: ModelSpec, key: Optional[str], common: Dict[str, Any]) -> Any:
    bedrock = _model_class("agno.models.aws.bedrock", "AwsBedrock", "boto3")
    # boto3 reads AWS_BEARER_TOKEN_BEDROCK (and the usual AWS credentials) itself. Any
    # other credential would have to be written into os.environ (upstream 2.0.0 did,
    # leaking it to the whole process) or wired into a custom boto3 client: refuse it.
    if key and key != os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
        raise InvalidInputError(
            "amazon_bedrock: a stored or OIDC credential is not supported by xpander-sync; set "
            "AWS_BEARER_TOKEN_BEDROCK or AWS credentials in the environment, or pass override={'model': ...}"
        )
    if spec.base_url_is_custom:
        raise InvalidInputError(
            "amazon_bedrock: llm_api_base is not supported by the agno adapter; pass override={'model': ...}"
        )
    kwargs = dict(common, max_tokens=MAX_OUTPUT_TOKENS)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["aws_region"] = region
    if not any(name in spec.model_id.lower() for name in _BEDROCK_TEMPERATURE_FREE):
        kwargs["temperature"] = 0.0
    if spec.extra_headers:
        logger.debug("amazon_bedrock: the agent's extra LLM headers are not sent (agno has no option)")
    return bedrock(**kwargs)


def _model_class(module: str, name: str, package: str) -> Any:
    return import_attr(
        module, name, f"the agno model class {name} needs a package that is not installed: pip install {package}"
    )


def _moderation_key(model: Any) -> Optional[str]:
    """The model's key when it is an OpenAI key (OpenAI provider on OpenAI's own host)."""
    if getattr(model, "provider", None) != "OpenAI":
        return None
    base_url = getattr(model, "base_url", None)
    if base_url and _llm.points_away("openai", str(base_url)):
        return None  # a custom endpoint's key must not go to OpenAI's moderation API
    key = getattr(model, "api_key", None)
    return key if isinstance(key, str) and key and key != _llm.EMPTY_KEY else None


# -- session storage ---------------------------------------------------------------------------


def sqlalchemy_url(uri: str, *, is_async: bool) -> str:
    """The SQLAlchemy URL for a platform connection URI (scheme rewritten, nothing else).

    ``postgres://``, ``postgresql://`` and ``postgresql+<driver>://`` become
    ``postgresql+psycopg://`` (``postgresql+psycopg_async://`` when ``is_async``): psycopg 3
    is the driver the ``agno`` extra installs. Only the scheme is touched (upstream
    replaced every ``postgresql`` substring, passwords and database names included, and
    left ``postgres://`` broken). Other schemes are returned unchanged.

    Args:
        uri: the connection URI from the platform (it may hold a password: never log it).
        is_async: use the async driver (for ``AsyncPostgresDb``).

    Returns:
        The URI with its scheme rewritten (stripped of surrounding whitespace).
    """
    text = uri.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    if scheme.lower().split("+", 1)[0] in ("postgres", "postgresql"):
        driver = "psycopg_async" if is_async else "psycopg"
        return f"postgresql+{driver}://{rest}"
    return text


def db_schema_for(agent: Agent) -> str:
    """``ag_<agent id with - replaced by _>``, the platform's schema name.

    Args:
        agent: the agent whose session storage is built.

    Returns:
        The Postgres schema name.
    """
    return "ag_" + agent.id.replace("-", "_")


def _response_format(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The provider ``response_format`` wrapper agno passes through verbatim for a dict schema."""
    return {
        "type": "json_schema",
        "json_schema": {"name": OUTPUT_SCHEMA_NAME, "schema": copy.deepcopy(schema), "strict": True},
    }

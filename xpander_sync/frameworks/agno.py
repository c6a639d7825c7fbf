"""The agno adapter: an xpander agent as ``agno.agent.Agent(**args)`` / ``agno.team.Team(**args)``.

agno is imported inside the functions of this module only, so ``import xpander_sync``
works without it; building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError`. Targets agno 3.1 (Agent and
Team take no ``**kwargs``: every key built here is a constructor parameter, and no
private ``_xpander_*`` key is ever returned).

What :func:`build_agno_args` returns, and where each value comes from (the reference's
section 3.2, with the upstream bugs of its section 7 fixed):

* ``id``, ``name``; ``description`` = ``agent.description`` or ``instructions.general``.
* ``instructions`` = ``task.instructions_override`` when set (it *replaces* the role and
  goals, as upstream), else the agent's role/goal block; omitted when empty. A team
  leader's instructions end with an ``<expected_output>`` block.
* ``expected_output``: the task's, else the agent's.
* ``model``: see :func:`build_model` (skipped, and the organization headers not fetched,
  when ``override`` has ``"model"``).
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
  without connecting.
* ``tool_call_limit``: the task's (for the agent the task runs), else
  ``agno_settings.tool_call_limit``, else none. The official SDK defaults to 800
  (``XPANDER_TOOL_CALL_LIMIT``); agno's own default (no limit) is kept here so a
  caller's choice is never second-guessed; pass ``override={"tool_call_limit": n}``.
* ``pre_hooks``: the enabled guardrails (PII, prompt injection, OpenAI moderation).
* ``additional_context``: ``User details: <user JSON>`` when the task has a user, then
  ``task.additional_context``.
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

Platform extras of the official builder that are skipped (each is an extra HTTP call or
prompt block per build): channel presence, xpander memories and the ``manage_memory``
tool, the dynamic prompt, the per-turn custom LLM endpoint and gateway routing, the
context-optimising compression manager, deep-planning prompts and the plan tools'
filtering, ``ReasoningTools``, the knowledge-base retriever, dynamic tools, the tool
hook (activity events, preflight reports, approvals) and workspace-hosted MCP servers.
"""

from __future__ import annotations

import copy
import importlib
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import FrameworkNotInstalledError, InvalidInputError, ResponseDecodeError
from ..models.agent import Agent, MCPServerDetails, Tool
from ..models.common import MCPServerTransport, MCPServerType, OutputFormat
from ..models.task import Task
from . import _llm, _prompt, _tools
from ._adapter import mcp_label, stdio_command
from ._tools import render_tool_result

logger = logging.getLogger(__name__)

AGNO_MISSING = 'agno is not installed: pip install "xpander-sync[agno]"'

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
#: The name of the structured-output schema given to the provider.
OUTPUT_SCHEMA_NAME = "StructuredOutput"
#: Output token cap for providers whose agno default is too small (Anthropic 8192, OpenRouter 1024).
MAX_OUTPUT_TOKENS = 32000

_UNSET = object()


def build_agno_args(
    agent: Agent,
    task: Optional[Task],
    override: Optional[Dict[str, Any]],
    tools: Optional[List[Any]],
    auth_events_callback: Optional[Callable[..., Any]],
    context: Any,
) -> Dict[str, Any]:
    """The keyword arguments of ``agno.agent.Agent`` (or ``agno.team.Team`` when ``members`` is present).

    Args:
        agent: the agent (not modified).
        task: the task being run, or ``None``.
        override: constructor arguments applied last (``"model"`` skips model construction).
        tools: extra tools for the root agent (any agno tool: functions, toolkits).
        auth_events_callback: unused here: the context delivers MCP auth events.
        context: the :class:`~xpander_sync.frameworks._context.BuildContext` of this call.

    Returns:
        A dict for ``Agent(**args)`` / ``Team(**args)``.

    Raises:
        FrameworkNotInstalledError: agno, or a package the agent's model, MCP servers or
            session storage need, is not installed.
        InvalidInputError: the agent's model configuration cannot be built (unknown
            provider, missing endpoint), or a team contains itself.
        AuthenticationRequiredError: an MCP server needs a login that did not complete.
        ModuleException: a platform call failed.
    """
    _require_agno()
    del auth_events_callback  # the context holds it for MCP auth events
    return _Build(context, task, override).agent_args(agent, root=True, extra_tools=tools, path=())


# -- model ------------------------------------------------------------------------------------

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


def build_model(settings: _llm.LLMSettings) -> Any:
    """The agno model object for resolved LLM settings.

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
        settings: from :func:`~xpander_sync.frameworks._llm.resolve_llm`.

    Returns:
        An agno ``Model``.

    Raises:
        FrameworkNotInstalledError: the provider's package is missing (named in the message).
        InvalidInputError: unknown provider, a required ``llm_api_base`` missing, or a
            configuration agno cannot express (a stored Bedrock credential or endpoint).
    """
    provider = settings.provider
    key = settings.api_key.reveal() if settings.api_key else None
    reasoning = settings.is_reasoning_family
    common: Dict[str, Any] = {"id": settings.model_id, "retries": 3, "exponential_backoff": True}
    if not settings.model_id:
        raise InvalidInputError(f"agent {settings.agent_id} has no model_name")

    if provider == "anthropic":
        claude = _model_class("agno.models.anthropic", "Claude", "anthropic")
        kwargs = dict(common, api_key=key, cache_system_prompt=True, max_tokens=MAX_OUTPUT_TOKENS)
        if "fable" not in settings.model_id.lower():
            kwargs["temperature"] = 0.0
        if settings.extra_headers:
            kwargs["default_headers"] = dict(settings.extra_headers)
        if settings.base_url:
            kwargs["client_params"] = {"base_url": settings.base_url}
        return claude(**kwargs)

    if provider == "google_ai_studio":
        gemini = _model_class("agno.models.google.gemini", "Gemini", "google-genai")
        kwargs = dict(common, api_key=key)
        http_options: Dict[str, Any] = {}
        if settings.base_url:
            http_options["base_url"] = settings.base_url
        if settings.extra_headers:
            http_options["headers"] = dict(settings.extra_headers)  # upstream drops them
        if http_options:
            kwargs["client_params"] = {"http_options": http_options}
        return gemini(**kwargs)

    if provider == "amazon_bedrock":
        return _bedrock_model(settings, key, common)

    if provider == "azure_ai_foundary":
        if not key or key == _llm.EMPTY_KEY or not settings.base_url:
            raise InvalidInputError(
                "azure_ai_foundary needs an endpoint and a key: set the agent's llm_api_base and an "
                "Authorization extra header or a stored key (or AZURE_API_KEY)"
            )
        azure = _model_class("agno.models.azure.ai_foundry", "AzureAIFoundry", "azure-ai-inference aiohttp")
        if settings.extra_headers:
            logger.debug("azure_ai_foundary: the agent's extra LLM headers are not sent (agno has no option)")
        return azure(**dict(common, api_key=key, azure_endpoint=settings.base_url, temperature=0.0))

    # Everything else speaks the OpenAI wire protocol.
    if provider == "openai":
        module = "agno.models.openai"
        name = "OpenAIChat"
        if _llm.is_responses_only(settings.model_id) or (
            reasoning and settings.reasoning_effort in ("high", "xhigh")
        ):
            name = "OpenAIResponses"
    elif provider in _OPENAI_LIKE_CLASSES:
        module, name = _OPENAI_LIKE_CLASSES[provider]
    elif provider in _GENERIC_OPENAI_LIKE or provider in _NEEDS_BASE_URL or settings.base_url:
        module, name = "agno.models.openai.like", "OpenAILike"
    else:
        raise InvalidInputError(
            f"model provider {provider!r} is not supported by the agno adapter; supported: "
            f"{', '.join(SUPPORTED_PROVIDERS)} (or any OpenAI-compatible provider with llm_api_base set)"
        )
    if provider in _NEEDS_BASE_URL and not settings.base_url:
        raise InvalidInputError(f"model provider {provider!r} needs the agent's llm_api_base")
    model_class = _model_class(module, name, "openai")
    kwargs = dict(common)
    # Only OpenAI itself may fall back to OPENAI_API_KEY; any other endpoint gets a
    # placeholder rather than the OpenAI client's environment lookup.
    kwargs["api_key"] = key if (key or provider == "openai") else _llm.EMPTY_KEY
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    if settings.extra_headers:
        kwargs["extra_headers"] = dict(settings.extra_headers)
    if settings.organization_id:
        kwargs["user"] = settings.organization_id
    if provider in _llm.OPENAI_WIRE_PROVIDERS:
        kwargs["extra_body"] = {"prompt_cache_key": settings.prompt_cache_key}
    if settings.reasoning_effort:
        kwargs["reasoning_effort"] = settings.reasoning_effort
    if provider in ("openai", "nim") and not reasoning:
        kwargs["temperature"] = 0.0
    if provider == "open_router":
        kwargs["max_tokens"] = MAX_OUTPUT_TOKENS
    return model_class(**kwargs)


def _bedrock_model(settings: _llm.LLMSettings, key: Optional[str], common: Dict[str, Any]) -> Any:
    import os

    bedrock = _model_class("agno.models.aws.bedrock", "AwsBedrock", "boto3")
    # boto3 reads AWS_BEARER_TOKEN_BEDROCK (and the usual AWS credentials) itself. Any
    # other credential would have to be written into os.environ (upstream 2.0.0 did,
    # leaking it to the whole process) or wired into a custom boto3 client: refuse it.
    if key and key != os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
        raise InvalidInputError(
            "amazon_bedrock: a stored or OIDC credential is not supported by xpander-sync; set "
            "AWS_BEARER_TOKEN_BEDROCK or AWS credentials in the environment, or pass override={'model': ...}"
        )
    if settings.base_url_is_custom:
        raise InvalidInputError(
            "amazon_bedrock: llm_api_base is not supported by the agno adapter; pass override={'model': ...}"
        )
    kwargs = dict(common, max_tokens=MAX_OUTPUT_TOKENS)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["aws_region"] = region
    if not any(name in settings.model_id.lower() for name in _BEDROCK_TEMPERATURE_FREE):
        kwargs["temperature"] = 0.0
    if settings.extra_headers:
        logger.debug("amazon_bedrock: the agent's extra LLM headers are not sent (agno has no option)")
    return bedrock(**kwargs)


def _model_class(module: str, name: str, package: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise FrameworkNotInstalledError(
            f"the agno model class {name} needs a package that is not installed: pip install {package}"
        ) from None


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


# -- tools -------------------------------------------------------------------------------------


def make_tool_entrypoint(
    context: Any, agent: Agent, task: Optional[Task], tool: Tool, override: Optional[Dict[str, Any]]
) -> Callable[..., str]:
    """A plain function agno calls with the LLM's arguments; it calls the tool for *this* agent and task.

    Synchronous on purpose: agno runs sync tools directly in ``run`` and in a worker
    thread in ``arun`` (the official SDK's coroutine tools return an un-awaited coroutine
    under ``run``).

    Args:
        context: the :class:`~xpander_sync.frameworks._context.BuildContext` whose
            ``invoke_tool`` sends the call.
        agent: the agent the tool belongs to (its id and version are sent).
        task: the task being run (its id and ``payload_extension`` are sent), or ``None``.
        tool: the xpander tool.
        override: the tool's input-schema override (permanent and blocked properties), or ``None``.

    Returns:
        A function named ``xpander_tool_<tool id>`` with the tool's description as its
        docstring; it returns :func:`render_tool_result` of the call and does not raise for
        a platform or network failure.
    """

    def call_xpander_tool(**arguments: Any) -> str:
        extension = task.payload_extension if task is not None else None
        payload = _tools.build_payload(tool, arguments, override=override, payload_extension=extension)
        result = context.invoke_tool(agent, task, tool.id, payload)
        return render_tool_result(result)

    call_xpander_tool.__name__ = call_xpander_tool.__qualname__ = f"xpander_tool_{tool.id}"
    call_xpander_tool.__doc__ = _tools.tool_description(tool)
    return call_xpander_tool


# -- the builder -------------------------------------------------------------------------------


class _Build:
    """One ``build_agno_args`` call: the task, override and context shared by leader and members."""

    def __init__(self, context: Any, task: Optional[Task], override: Optional[Dict[str, Any]]) -> None:
        self.context = context
        self.task = task
        self.override: Dict[str, Any] = dict(override or {})
        self.override_model = self.override["model"] if "model" in self.override else _UNSET
        self._org_headers: Optional[Dict[str, str]] = None

    # -- the dict ----------------------------------------------------------------------

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: Optional[List[Any]], path: Tuple[str, ...]
    ) -> Dict[str, Any]:
        if agent.id in path:
            raise InvalidInputError(f"team {path[0]} contains itself (through agent {agent.id})")
        task = self.task
        settings = agent.agno_settings
        args: Dict[str, Any] = {"id": agent.id, "name": agent.name}

        description = agent.description or agent.instructions.general
        if description:
            args["description"] = description
        instructions = self._instructions(agent, root)
        if instructions:
            args["instructions"] = instructions
        expected = (task.expected_output if root and task is not None else None) or agent.expected_output
        if expected:
            args["expected_output"] = expected

        model = self._model(agent)
        args["model"] = model
        self._output(args, agent, root)
        if settings.session_storage:
            self._session_storage(args, agent)
        if settings.learning:
            args["learning"] = True
        additional = self._additional_context()
        if additional:
            args["additional_context"] = additional
        limit = (task.tool_call_limit if root and task is not None else None) or settings.tool_call_limit
        if limit:
            args["tool_call_limit"] = limit
        hooks = self._guardrails(agent, model)
        if hooks:
            args["pre_hooks"] = hooks

        if agent.knowledge_bases:
            logger.debug("agent %s: knowledge bases are not attached by the agno adapter", agent.id)
        agent_tools: List[Any] = self._xpander_tools(agent)
        servers = list(agent.mcp_servers) + (list(task.mcp_servers) if root and task is not None else [])
        agent_tools.extend(self._mcp_toolkits(agent, servers))
        if root and extra_tools:
            agent_tools.extend(extra_tools)
        args["tools"] = agent_tools

        if agent.is_a_team:
            args["members"] = self._members(agent, (*path, agent.id))
            args["add_member_tools_to_context"] = True
            args["share_member_interactions"] = True
            args["show_members_responses"] = True

        args["add_datetime_to_context"] = True
        args["datetime_format"] = DATETIME_FORMAT
        args["timezone_identifier"] = "UTC"
        args["store_events"] = True
        args["telemetry"] = False
        if root:
            args.update(self.override)
        return args

    # -- pieces ------------------------------------------------------------------------

    def _instructions(self, agent: Agent, root: bool) -> str:
        task = self.task
        if root and task is not None and task.instructions_override:
            text = task.instructions_override
        else:
            text = agent.instructions.instructions
        if agent.is_a_team and agent.expected_output:
            # The leader restates the team's expected output (reference 7.11, step 7).
            text += (
                f"\n\n            <expected_output>\n            {agent.expected_output}\n"
                "            </expected_output>\n        "
            )
        return text if text.strip() else ""

    def _model(self, agent: Agent) -> Any:
        if self.override_model is not _UNSET:
            return self.override_model
        if self._org_headers is None:
            self._org_headers = dict(self.context.org_llm_headers())
        settings = _llm.resolve_llm(agent, self.task, self._org_headers)
        return build_model(settings)

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
        args["db"] = self._db(agent)

    def _db(self, agent: Agent) -> Any:
        is_async = bool(getattr(self.context, "is_async", False))
        try:
            from agno.db.postgres import AsyncPostgresDb, PostgresDb
        except ImportError:
            raise FrameworkNotInstalledError(
                "agno session storage needs SQLAlchemy (with greenlet) and psycopg: "
                'pip install "xpander-sync[agno]"'
            ) from None
        url = sqlalchemy_url(self.context.db_connection_uri(agent), is_async=is_async)
        db_class = AsyncPostgresDb if is_async else PostgresDb
        try:
            return db_class(db_url=url, db_schema=db_schema_for(agent))
        except Exception:
            # SQLAlchemy's messages quote the URL, password included: never chain them.
            problem = f"not a usable database URL for {db_class.__name__} @ $.connection_uri.uri"
            raise ResponseDecodeError("AgentDB", [problem]) from None

    def _additional_context(self) -> str:
        return _prompt.task_context(self.task)

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

    def _xpander_tools(self, agent: Agent) -> List[Any]:
        if not agent.tools:
            return []
        from agno.tools.function import Function

        functions: List[Any] = []
        seen = set()
        for tool in agent.tools:
            if tool.id in seen:
                continue
            seen.add(tool.id)
            override = _tools.input_override(agent, tool)
            functions.append(
                Function(
                    name=tool.id,
                    description=_tools.tool_description(tool),
                    parameters=_tools.llm_schema(tool, override),
                    entrypoint=make_tool_entrypoint(self.context, agent, self.task, tool, override),
                    skip_entrypoint_processing=True,
                )
            )
        return functions

    def _mcp_toolkits(self, agent: Agent, servers: List[MCPServerDetails]) -> List[Any]:
        if not servers:
            return []
        try:
            from agno.tools.mcp import MCPTools, SSEClientParams, StreamableHTTPClientParams
            from mcp import StdioServerParameters
        except ImportError:
            raise FrameworkNotInstalledError(
                'MCP servers need the mcp package: pip install "xpander-sync[agno]"'
            ) from None
        toolkits: List[Any] = []
        for server in servers:
            label = mcp_label(server)
            include = list(server.allowed_tools) or None
            if server.type == MCPServerType.LOCAL or server.transport == MCPServerTransport.STDIO:
                argv = stdio_command(server, label)
                if argv is None:
                    continue
                params: Any = StdioServerParameters(command=argv[0], args=argv[1], env=argv[2])
                toolkits.append(
                    MCPTools(transport="stdio", server_params=params, include_tools=include,
                             timeout_seconds=MCP_TOOL_TIMEOUT, tool_name_prefix=MCP_TOOL_PREFIX)
                )
                continue
            if not server.url:
                logger.warning("MCP server %r of agent %s has no URL; skipped", label, agent.id)
                continue
            if server.transport not in (MCPServerTransport.SSE, MCPServerTransport.STREAMABLE_HTTP):
                logger.warning("MCP server %r of agent %s has an unknown transport; skipped", label, agent.id)
                continue
            # A copy: whatever token resolution does, the agent's and task's server objects
            # never carry a token afterwards (upstream bug #10).
            headers = dict(self.context.mcp_headers(agent, self.task, copy.deepcopy(server)))
            if server.transport == MCPServerTransport.SSE:
                params = SSEClientParams(url=server.url, headers=headers, timeout=MCP_HTTP_TIMEOUT,
                                         sse_read_timeout=MCP_SSE_READ_TIMEOUT)
            else:
                params = StreamableHTTPClientParams(url=server.url, headers=headers, timeout=MCP_HTTP_TIMEOUT,
                                                    sse_read_timeout=MCP_SSE_READ_TIMEOUT)
            toolkits.append(
                MCPTools(transport=server.transport.value, server_params=params, include_tools=include,
                         timeout_seconds=MCP_TOOL_TIMEOUT, tool_name_prefix=MCP_TOOL_PREFIX)
            )
        return toolkits

    def _members(self, agent: Agent, path: Tuple[str, ...]) -> List[Any]:
        from agno.agent import Agent as AgnoAgent
        from agno.team import Team as AgnoTeam

        members: List[Any] = []
        for member in self.context.load_agents(agent.sub_agents):
            member_args = self.agent_args(member, root=False, extra_tools=None, path=path)
            members.append(AgnoTeam(**member_args) if "members" in member_args else AgnoAgent(**member_args))
        return members


def _response_format(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The provider ``response_format`` wrapper agno passes through verbatim for a dict schema."""
    return {
        "type": "json_schema",
        "json_schema": {"name": OUTPUT_SCHEMA_NAME, "schema": copy.deepcopy(schema), "strict": True},
    }


def _require_agno() -> None:
    try:
        import agno  # noqa: F401
    except ImportError:
        raise FrameworkNotInstalledError(AGNO_MISSING) from None

"""The :class:`Adapter` base: the framework-neutral half of every ``get_args`` build.

An adapter is a subclass of :class:`Adapter` in its own module (``agno.py``,
``openai_agents.py``, ...), registered by one line in
:mod:`xpander_sync.frameworks`. The class says what it is for (``name``, ``extra``,
``requires``, ``constructor``) and fills two hooks:

* ``model(spec)``: the model-related constructor arguments for a resolved
  :class:`~xpander_sync.frameworks._llm.ModelSpec` (at least ``"model"``);
* ``agent_args(agent, root=..., extra_tools=..., path=...)``: one agent's arguments;

and may refine a third, ``apply_generation(args, params, built_here)``: where ``override``'s
generation parameters go when the framework keeps model settings apart from the model.

Everything else is here, written once: the build entry point (:meth:`Adapter.build`, the
registry's builder), the framework import check, team members (each with its own model;
a team containing itself is refused), the model spec (the organization's headers fetched
once per build; skipped when ``override["model"]`` is a model object), the ``override``
vocabulary (:mod:`._override`: model, generation parameters, constructor keys), the system prompt, the output
schema, xpander tools as :class:`XpanderToolSpec` (schema from
:mod:`~xpander_sync.frameworks._tools`, a call bound to *this* call's agent and task,
duplicates dropped), and MCP servers (:meth:`Adapter.mcp_entries`). No framework is
imported here.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.metadata
import inspect
import logging
import shlex
from typing import Any, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Tuple

from .._redact import mask_header_values
from ..config import is_cloud
from ..errors import FrameworkNotInstalledError, InvalidInputError
from ..models.agent import Agent, MCPServerDetails
from ..models.common import MCPServerTransport, MCPServerType, OutputFormat
from ..models.task import Task
from . import _override, _prompt, features
from ._llm import (  # noqa: F401  (re-exported: the adapters' former home of these names)
    MAX_OUTPUT_TOKENS,
    NEEDS_BASE_URL,
    OPENAI_WIRE_BASE_URLS,
    REFUSED_PROVIDERS,
    ModelSpec,
    OpenAIEndpoint,
    resolve_llm,
)
from ._runs import READERS, RunSummary
from ._tools import render_tool_result  # noqa: F401  (re-exported)
from ._toolspec import FunctionToolSpec, ToolSpec, XpanderToolSpec  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

#: Seconds an MCP tool call may take, as in the agno adapter.
MCP_TOOL_TIMEOUT = 120.0
#: Seconds to connect/write to a remote MCP server.
MCP_HTTP_TIMEOUT = 60.0
#: Seconds a remote MCP stream may stay silent (long-running tools).
MCP_SSE_READ_TIMEOUT = 1200.0
#: The name given to a JSON output schema.
OUTPUT_SCHEMA_NAME = "StructuredOutput"
#: Appended to the prompt of a Markdown agent (agno's ``markdown=True`` says the same).
MARKDOWN_HINT = "Use markdown to format your answers."

_UNSET = object()

#: Model attributes tried for a generation parameter, in order (default: its own name).
GENERATION_ALIASES: Dict[str, Tuple[str, ...]] = {
    "max_tokens": ("max_tokens", "max_output_tokens"),
    "stop": ("stop", "stop_sequences"),
}


def import_attr(module: str, name: str, message: str) -> Any:
    """``module.name``, or :class:`FrameworkNotInstalledError` with ``message`` when the import fails."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise FrameworkNotInstalledError(message) from None


def is_strict_compatible(schema: Any) -> bool:
    """Whether a JSON schema already meets OpenAI's strict rules (closed objects, all properties required)."""
    if isinstance(schema, list):
        return all(is_strict_compatible(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict) or schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(props):
            return False
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict) and not all(is_strict_compatible(v) for v in schema[key].values()):
            return False
    for key in ("items", "anyOf", "allOf", "oneOf"):
        if key in schema and not is_strict_compatible(schema[key]):
            return False
    return True


def member_tool_name(agent: Agent) -> str:
    """``ask_<sanitized name>``, at most 64 characters: the tool a leader calls to delegate to a member."""
    return ("ask_" + agent.sanitized_name.lower())[:64]


def member_tool_description(agent: Agent) -> str:
    """What the leader reads about a member."""
    about = (agent.description or agent.instructions.general or "").strip()
    text = f"Delegate a request to the team member {agent.name!r}"
    return f"{text}: {about}" if about else text + "."


#: The JSON schema of a delegation tool: one free-text request.
MEMBER_TOOL_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {"request": {"type": "string", "description": "What the member should do, with all context."}},
    "required": ["request"],
}


class Adapter:
    """One ``get_args`` build for a framework: the task, override and context shared by a leader and its members.

    Subclasses set the class attributes and implement :meth:`model` and
    :meth:`agent_args`; the steps here are framework-neutral. Task-level choices
    (instructions override, expected output, output format, tool-call limit, MCP servers,
    ``override``'s constructor keys, caller tools) apply to the root agent only;
    ``override["model"]``, its generation parameters and the task's model choice apply to
    every member. ``override`` follows the one vocabulary of :mod:`._override`
    (docs/get_args.md). Members are loaded through the
    context, in graph order, and a team that contains itself is refused.

    Attributes:
        name: the framework id, as the platform writes it (``"agno"``, ``"langchain"``).
        extra: the pip extra that installs the framework (``xpander-sync[<extra>]``).
        requires: the module the framework must provide (imported by :meth:`require`).
        constructor: the dotted name of what the arguments are for (``"strands.Agent"``).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    #: the framework's distribution on PyPI (its version is named in warnings); default :attr:`extra`.
    distribution: ClassVar[str] = ""
    requires: ClassVar[str] = ""
    constructor: ClassVar[str] = ""

    # -- the registry's builder ---------------------------------------------------------

    @classmethod
    def build(
        cls,
        agent: Agent,
        task: Optional[Task] = None,
        override: Optional[Dict[str, Any]] = None,
        tools: Optional[List[Any]] = None,
        auth_events_callback: Any = None,
        context: Any = None,
    ) -> Dict[str, Any]:
        """The constructor keyword arguments of ``agent`` for this framework.

        Args:
            agent: the agent (not modified).
            task: the task being run, or ``None``.
            override: the caller's choices (:mod:`._override`): ``"model"`` (a model id
                built into this framework's model object, or a model object used as is),
                generation parameters (set on the model), constructor keys (applied
                last); other keys are dropped with one warning.
            tools: extra framework tools for the root agent.
            auth_events_callback: unused here: the context delivers MCP auth events.
            context: the :class:`~xpander_sync.frameworks._context.BuildContext` of this call.

        Returns:
            A dict for the framework's :attr:`constructor`.

        Raises:
            FrameworkNotInstalledError: the framework, or a package the agent's model, MCP
                servers or session storage need, is missing (the message names the extra).
            InvalidInputError: a provider the adapter does not map, a missing endpoint, a
                team that contains itself, or an ``override`` that is not a dict or holds a
                value of the wrong type.
            ConfigurationError: no API key for OpenAI or Anthropic.
            AuthenticationRequiredError: an MCP server needs a login that did not complete.
            ModuleException: a platform call failed.
        """
        del auth_events_callback  # the context holds it for MCP auth events
        cls.require()
        return cls(context, task, override).root(agent, tools)

    @classmethod
    def summarize_run(cls, run: Any) -> Optional[RunSummary]:
        """A :class:`~._runs.RunSummary` of ``run`` if it is this framework's run result, else ``None``.

        Recognised by the result's class module (nothing is imported); the built-in adapters use
        the reader of :data:`._runs.READERS` named after them. A third-party adapter may override it.
        """
        reader = READERS.get(cls.name)
        return reader(run) if reader is not None else None

    @classmethod
    def missing_message(cls) -> str:
        """``<extra> is not installed: pip install "xpander-sync[<extra>]"``."""
        return f'{cls.extra} is not installed: pip install "xpander-sync[{cls.extra}]"'

    @classmethod
    def require(cls) -> None:
        """Import :attr:`requires`, or raise :class:`FrameworkNotInstalledError` naming the extra."""
        try:
            importlib.import_module(cls.requires)
        except ImportError:
            raise FrameworkNotInstalledError(cls.missing_message()) from None

    @classmethod
    def constructor_for(cls, args: Dict[str, Any]) -> str:
        """The dotted name of what ``args`` are for (agno answers ``agno.team.Team`` for a team)."""
        del args
        return cls.constructor

    def __init__(self, context: Any, task: Optional[Task], override: Optional[Mapping[str, Any]]) -> None:
        self.context = context
        self.task = task
        # Model and generation parameters are checked now; the other keys once the constructor is known.
        self.parsed = _override.parse_override(override, accepts=lambda key: True)
        self.override: Dict[str, Any] = dict(self.parsed.constructor)
        self.override_model: Any = self.parsed.model if self.parsed.has_model else _UNSET
        self._org_headers: Optional[Dict[str, str]] = None
        self._warned: set = set()
        #: the platform features of this build (:mod:`.features`), one instance each.
        self.features: List[features.Feature] = features.for_build(self)
        self._hooks = features.by_hook(self.features)

    # -- entry points ------------------------------------------------------------------

    def root(self, agent: Agent, extra_tools: Optional[List[Any]]) -> Dict[str, Any]:
        """The root agent's arguments, then ``override``'s constructor keys (unknown keys dropped, one warning)."""
        args = self.agent_args(agent, root=True, extra_tools=list(extra_tools or []), path=())
        if not self.override:  # nothing to check: the signature is not read at all
            return args
        accepted = self.constructor_keys(args)
        unknown = tuple(k for k in self.override if accepted is not None and k not in accepted)
        self.warn_once(unknown, "not a parameter of " + self.constructor_for(args))
        args.update({k: v for k, v in self.override.items() if k not in unknown})
        return args

    # -- override ----------------------------------------------------------------------

    @classmethod
    def constructor_keys(cls, args: Dict[str, Any]) -> Optional[FrozenSet[str]]:
        """The keyword parameters of the installed framework's constructor for ``args`` (``None``: any key).

        Read from the constructor's signature (:func:`inspect.signature`; dataclass and
        pydantic fields included). A ``**kwargs`` whose name starts with ``_`` (kept for
        deprecation messages) does not count as taking any key.
        """
        return _parameter_names(cls.constructor_for(args))

    @classmethod
    def framework_version(cls) -> str:
        """``"<distribution> <version>"`` of the installed framework (for messages)."""
        dist = cls.distribution or cls.extra
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{dist} (version unknown)"

    def warn_once(self, keys: Tuple[str, ...], why: str) -> None:
        """One warning per build for the ``override`` keys dropped (naming them and the framework's version)."""
        keys = tuple(k for k in keys if k not in self._warned)
        if keys:
            self._warned.update(keys)
            _override.warn_dropped(keys, self.name, self.framework_version(), why)

    def apply_generation(self, args: Dict[str, Any], params: Dict[str, Any], built_here: bool) -> List[str]:
        """Put the caller's generation parameters on the model (the hook adapters refine).

        The adapter's own model already has ``temperature``, ``max_tokens`` and
        ``reasoning_effort`` (:class:`ModelSpec` answers with them); the default here sets
        every parameter on the model object's attribute of that name (``max_tokens`` also
        ``max_output_tokens``, ``stop`` also ``stop_sequences``), and only on a model this
        adapter built: a caller's model object is used as is.

        Args:
            args: the model arguments (``{"model": ..., ...}``), changed in place.
            params: the generation parameters (type-checked).
            built_here: whether the adapter built ``args["model"]`` (else it is the caller's).

        Returns:
            The parameters that could not be applied (warned about once).
        """
        if not built_here:
            return list(params)
        return _override.set_fields(args["model"], params, GENERATION_ALIASES)

    def agent_args(
        self, agent: Agent, *, root: bool, extra_tools: List[Any], path: Tuple[str, ...]
    ) -> Dict[str, Any]:  # pragma: no cover - abstract
        """One agent's constructor arguments (the hook every adapter implements).

        Args:
            agent: the agent (a leader, a member, or a lone agent).
            root: whether it is the agent the task runs (task-level choices apply).
            extra_tools: the caller's tools (root only; ``[]`` for members).
            path: the ids of the leaders above it (for :meth:`check_cycle`).
        """
        raise NotImplementedError

    def model(self, spec: ModelSpec) -> Dict[str, Any]:  # pragma: no cover - abstract
        """The model-related constructor arguments for a resolved spec (the hook every adapter implements).

        Args:
            spec: the agent's :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            At least ``{"model": <the framework's model object>}``.
        """
        raise NotImplementedError

    # -- members -----------------------------------------------------------------------

    def member_agents(self, agent: Agent) -> List[Agent]:
        """The team members of ``agent``, loaded through the context (none when it is not a team)."""
        if not agent.is_a_team:
            return []
        return list(self.context.load_agents(agent.sub_agents))

    def check_cycle(self, agent: Agent, path: Tuple[str, ...]) -> Tuple[str, ...]:
        """``path`` extended by ``agent``; refuses an agent already on the path."""
        if agent.id in path:
            raise InvalidInputError(f"team {path[0]} contains itself (through agent {agent.id})")
        return (*path, agent.id)

    # -- model -------------------------------------------------------------------------

    @property
    def has_model_override(self) -> bool:
        """Whether ``override`` carries a model object (no model is built then)."""
        return self.parsed.has_model and not self.parsed.model_is_id

    def model_spec(self, agent: Agent) -> ModelSpec:
        """The agent's resolved :class:`ModelSpec` (the organization's headers fetched once per build).

        Raises:
            InvalidInputError: the agent (and the task) name no model.
        """
        if self._org_headers is None:
            self._org_headers = dict(self.context.org_llm_headers())
        parsed = self.parsed
        model = (parsed.provider, parsed.model_id) if parsed.model_is_id and parsed.model_id else None
        spec = resolve_llm(agent, self.task, self._org_headers, model=model, generation=parsed.generation)
        if not spec.model_id:
            raise InvalidInputError(f"agent {agent.id} has no model_name")
        for feature in self._hooks["model_spec"]:
            spec = feature.model_spec(agent, spec)
        transport = getattr(self.context, "transport", None)
        if transport is not None and spec.api_key is not None:  # scrubbed from run errors and reports
            transport.remember_secret(spec.api_key.reveal())
        return spec

    def model_args(self, agent: Agent) -> Dict[str, Any]:
        """The model arguments: ``override["model"]`` as is when it is a model object, else :meth:`model` of the
        agent's spec (with ``override``'s model id), then ``override``'s generation parameters."""
        parsed = self.parsed
        built_here = not (parsed.has_model and not parsed.model_is_id)
        args = self.model(self.model_spec(agent)) if built_here else {"model": parsed.model}
        if parsed.generation:
            missed = self.apply_generation(args, dict(parsed.generation), built_here)
            why = ("not applied to a model object passed as is" if not built_here
                   else f"not a setting of {type(args['model']).__name__}")
            self.warn_once(tuple(missed), why)
        return args

    # -- prompt ------------------------------------------------------------------------

    def description(self, agent: Agent) -> str:
        """``agent.description``, else ``instructions.general``."""
        return (agent.description or agent.instructions.general or "").strip()

    def instructions_text(self, agent: Agent, root: bool) -> str:
        """The role and goals block, or the task's ``instructions_override`` (root only), then the features'."""
        task = self.task
        if root and task is not None and task.instructions_override:
            text = task.instructions_override.strip()
        else:
            text = agent.instructions.instructions.strip()
        return self.feature_instructions(agent, root, text).strip()

    def feature_instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` (the agent's instructions) after every feature's :meth:`~.features.Feature.instructions`."""
        for feature in self._hooks["instructions"]:
            text = feature.instructions(agent, root, text)
        return text

    def expected_output(self, agent: Agent, root: bool) -> str:
        """The task's expected output (root), else the agent's, then the features'."""
        task = self.task
        expected = (task.expected_output if root and task is not None else None) or agent.expected_output
        text = expected or ""
        for feature in self._hooks["expected_output"]:
            text = feature.expected_output(agent, root, text)
        return text.strip()

    def additional_context(self, agent: Optional[Agent] = None, root: bool = True) -> str:
        """``User details: <JSON>`` when the task has a user, then ``task.additional_context``, then the
        features' blocks for ``agent`` (memories, the plan, ...)."""
        return self.feature_context(agent, root, _prompt.task_context(self.task))

    def feature_context(self, agent: Optional[Agent], root: bool, text: str) -> str:
        """``text`` after every feature's :meth:`~.features.Feature.additional_context` (none without an agent)."""
        if agent is None:
            return text
        for feature in self._hooks["additional_context"]:
            text = feature.additional_context(agent, root, text)
        return text

    def markdown(self, agent: Agent, root: bool) -> bool:
        """Whether the answer should be Markdown (the task's format decides when it has one)."""
        task = self.task
        if root and task is not None and task.output_format is not None:
            return task.output_format == OutputFormat.MARKDOWN
        return agent.output_format == OutputFormat.MARKDOWN

    def system_prompt(self, agent: Agent, root: bool, *, with_description: bool = True) -> str:
        """The whole system prompt, for frameworks with a single instructions field.

        Blocks, each only when non-empty: the description, the role/goals (or the task's
        override), ``<expected_output>``, the Markdown hint, ``<additional_context>``.
        """
        blocks: List[str] = []
        if with_description and self.description(agent):
            blocks.append(self.description(agent))
        instructions = self.instructions_text(agent, root)
        if instructions:
            blocks.append(instructions)
        expected = self.expected_output(agent, root)
        if expected:
            blocks.append(f"<expected_output>\n{expected}\n</expected_output>")
        if self.markdown(agent, root):
            blocks.append(MARKDOWN_HINT)
        # The task's context goes to the root agent; a member gets its features' blocks only.
        additional = (self.additional_context(agent, root) if root else self.feature_context(agent, root, "")).strip()
        if additional:
            blocks.append(f"<additional_context>\n{additional}\n</additional_context>")
        return "\n\n".join(blocks)

    # -- output ------------------------------------------------------------------------

    def output_schema(self, agent: Agent, root: bool) -> Optional[Dict[str, Any]]:
        """The JSON schema the answer must follow (a copy), or ``None``.

        The agent's schema when its format is ``json``; a task (root) with an
        ``output_format`` decides instead: ``json`` → its schema, else the agent's JSON
        schema; any other format → none.
        """
        schema = agent.output_schema if agent.output_format == OutputFormat.JSON else None
        task = self.task
        if root and task is not None and task.output_format is not None:
            if task.output_format == OutputFormat.JSON:
                schema = task.output_schema or schema
            else:
                schema = None
        return copy.deepcopy(schema) if isinstance(schema, dict) and schema else None

    def tool_call_limit(self, agent: Agent, root: bool) -> Optional[int]:
        """The task's tool-call limit (root), else ``agno_settings.tool_call_limit``."""
        task = self.task
        limit = (task.tool_call_limit if root and task is not None else None) or agent.agno_settings.tool_call_limit
        return limit or None

    # -- tools -------------------------------------------------------------------------

    def xpander_tools(self, agent: Agent, root: bool = False) -> List[ToolSpec]:
        """The agent's tool specs: one :class:`XpanderToolSpec` per distinct tool of the agent, then the
        features' tools (:meth:`~.features.Feature.tools`), then each feature's
        :meth:`~.features.Feature.filter_tools` over the whole list."""
        specs: List[ToolSpec] = []
        seen = set()
        for tool in agent.tools:
            if tool.id in seen:
                continue
            seen.add(tool.id)
            specs.append(XpanderToolSpec(self.context, agent, self.task, tool))
        for feature in self._hooks["tools"]:
            for spec in feature.tools(agent, root):
                if spec.name not in seen:
                    seen.add(spec.name)
                    specs.append(spec)
        for feature in self._hooks["filter_tools"]:
            specs = feature.filter_tools(agent, root, specs)
        return specs

    # -- MCP ---------------------------------------------------------------------------

    def mcp_servers(self, agent: Agent, root: bool) -> List[MCPServerDetails]:
        """The agent's MCP servers, then (root) the task's."""
        task = self.task
        return list(agent.mcp_servers) + (list(task.mcp_servers) if root and task is not None else [])

    def mcp_entries(self, agent: Agent, root: bool) -> List[Tuple[str, MCPServerDetails, Any]]:
        """``(kind, server, detail)`` per usable MCP server, kind ``"stdio"``, ``"sse"`` or ``"streamable-http"``.

        For stdio the detail is ``(command, args, env)``; for remote servers the headers
        from the context (token included), computed on a *copy* of the server so no token
        is written back to the agent or task. Unusable servers are skipped with a warning.
        """
        entries: List[Tuple[str, MCPServerDetails, Any]] = []
        for server in self.mcp_servers(agent, root):
            label = mcp_label(server)
            if server.type == MCPServerType.LOCAL or server.transport == MCPServerTransport.STDIO:
                argv = stdio_command(server, label)
                if argv is not None:
                    entries.append(("stdio", server, argv))
                continue
            if not server.url:
                logger.warning("MCP server %r of agent %s has no URL; skipped", label, agent.id)
                continue
            if server.transport not in (MCPServerTransport.SSE, MCPServerTransport.STREAMABLE_HTTP):
                logger.warning("MCP server %r of agent %s has an unknown transport; skipped", label, agent.id)
                continue
            # Tokens in the headers work on the wire and print as '***' in the tool objects' repr.
            headers = mask_header_values(self.context.mcp_headers(agent, self.task, copy.deepcopy(server)))
            entries.append((server.transport.value, server, headers))
        return entries

    def skip_mcp(self, agent: Agent, root: bool, reason: str) -> None:
        """Log (once per agent) that its MCP servers are not built, and why."""
        servers = self.mcp_servers(agent, root)
        if servers:
            logger.warning(
                "agent %s: %d MCP server(s) not built by the %s adapter: %s",
                agent.id, len(servers), self.name, reason,
            )


def mcp_label(server: MCPServerDetails) -> str:
    """A server's name for messages and tool names."""
    return server.name or server.url or server.command or "MCP server"


def stdio_command(server: MCPServerDetails, label: str) -> Optional[Tuple[str, List[str], Optional[Dict[str, str]]]]:
    """``(command, args, env)`` of a local MCP server, or ``None`` (logged) when it cannot run."""
    command = (server.command or "").strip()
    if not command:
        logger.warning("local MCP server %r has no command; skipped", label)
        return None
    if is_cloud() and "aws-api-mcp-server" in command:
        logger.warning("local MCP server %r (aws-api-mcp-server) is not run on the cloud; skipped", label)
        return None
    try:
        argv = shlex.split(command)
    except ValueError:
        logger.warning("local MCP server %r: its command is not a valid command line; skipped", label)
        return None
    # Masked: the process gets the real values, a printed tool object shows '***' (tokens live here).
    env = mask_header_values({str(k): str(v) for k, v in (server.env_vars or {}).items() if v is not None})
    return argv[0], argv[1:], env or None


#: The former name of :class:`Adapter`.
AdapterBuild = Adapter


@functools.lru_cache(maxsize=32)
def _parameter_names(dotted: str) -> Optional[FrozenSet[str]]:
    """The keyword parameters of ``module.Class`` (read once: a framework's signature does not change)."""
    module, _, attr = dotted.rpartition(".")
    try:
        target = getattr(importlib.import_module(module), attr)
        parameters = inspect.signature(target).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover - no signature
        return None
    names = set()
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if not parameter.name.startswith("_"):
                return None
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.add(parameter.name)
    return frozenset(names)

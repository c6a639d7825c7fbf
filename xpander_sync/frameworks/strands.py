"""The Strands adapter: an xpander agent as ``strands.Agent(**args)`` (strands-agents 1.62).

Strands is imported inside the functions of this module only (the module's name does
not shadow the real package: imports are absolute); building without it raises
:class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra
(``pip install "xpander-sync[strands-agents]"``). The extra cannot share an environment
with ``openai-agents``: ``strands-agents[openai]`` pins ``openai<3``.

What :class:`StrandsAdapter` builds:

* ``agent_id``, ``name``, ``description`` (``agent.description`` or ``instructions.general``).
* ``system_prompt``: description, role and goals (or the task's ``instructions_override``),
  expected output, the Markdown hint, the task user's details and
  ``task.additional_context``.
* ``model``: OpenAI and OpenAI-compatible providers → ``strands.models.openai.OpenAIModel``
  (``OpenAIResponsesModel`` for Responses-only models); Anthropic →
  ``strands.models.anthropic.AnthropicModel``. Key, base URL and extra headers go in
  ``client_args``; temperature, reasoning effort, ``user`` and ``prompt_cache_key`` in
  ``params``. Skipped when ``override`` has ``"model"``.
* ``structured_output_model``: Strands takes a pydantic class only, so the JSON schema is
  converted (:func:`pydantic_model_from_schema`: objects, required/optional, scalar types,
  arrays, enums, nullable and union types, descriptions, closed objects; ``$ref`` and
  other constructs become ``Any``).
* ``tools``: one ``PythonAgentTool`` per xpander tool (its ``inputSchema`` the JSON schema
  verbatim), then each team member as ``member.as_tool(name="ask_<member>")`` (Strands'
  agents-as-tools), then the caller's ``tools``.
* ``callback_handler=None``: Strands' default handler prints the streamed answer to
  stdout, which a library should not do; pass ``override={"callback_handler": ...}``.

**MCP servers are not built.** A ``strands.tools.mcp.MCPClient`` in ``tools=`` is started
*inside* ``Agent()`` (Strands lists the server's tools while registering them), so
``Agent(**args)`` would open network connections and could fail offline or on a login.
``get_args`` keeps construction offline and logs a warning naming the servers; to use
them, create ``MCPClient(...)`` yourself and pass it in ``tools=``.

Not expressible: session storage (``session_manager``), tool-call limits, guardrails,
date/time context.
"""

from __future__ import annotations

import keyword
import logging
from typing import Any, Dict, List, Optional, Tuple, cast

from ..models.agent import Agent
from ._adapter import (
    OUTPUT_SCHEMA_NAME,
    Adapter,
    ToolSpec,
    import_attr,
    member_tool_description,
    member_tool_name,
)
from ._llm import ModelSpec
from ._runs import MEMBER_RUNS_STATE
from ._tools import render_tool_result

logger = logging.getLogger(__name__)


def python_tool(spec: ToolSpec) -> Any:
    """The ``PythonAgentTool`` for an xpander tool (its JSON schema verbatim as ``inputSchema``).

    Args:
        spec: the tool's name, description, JSON schema and platform call.

    Returns:
        A ``PythonAgentTool`` whose result has ``status`` ``"error"`` or ``"success"`` and
        the rendered result as its text.
    """
    from strands.tools.tools import PythonAgentTool

    def run(tool_use: Any, **invocation_state: Any) -> Dict[str, Any]:
        del invocation_state
        result = spec.invoke(tool_use.get("input"))
        return {"toolUseId": tool_use.get("toolUseId"), "status": "error" if result.is_error else "success",
                "content": [{"text": render_tool_result(result)}]}

    tool_spec = {"name": spec.name, "description": spec.description, "inputSchema": {"json": spec.schema}}
    return PythonAgentTool(spec.name, tool_spec, run)


# -- JSON schema → pydantic ----------------------------------------------------------------------

_SCALARS: Dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


def counted_member_tool(built: Any, tool: Any) -> Any:
    """``tool`` (a member's ``as_tool``), recording each call's tokens and tools in the leader's result.

    The member is a separate ``strands.Agent``: its model calls are not in the leader's
    ``AgentResult``. Each call adds what it used (the member's usage and tool counts after the
    call, minus before) to the leader's request state (``AgentResult.state``) under
    :data:`~._runs.MEMBER_RUNS_STATE`, which ``Backend.report_run`` adds to the leader's own.

    Args:
        built: the member's ``strands.Agent``.
        tool: its ``as_tool(...)``.

    Returns:
        ``tool``, its ``stream`` wrapped.
    """
    original = tool.stream

    async def stream(tool_use: Any, invocation_state: Any, **kwargs: Any) -> Any:
        before_usage = dict(built.event_loop_metrics.accumulated_usage or {})
        before_tools = {k: v.call_count for k, v in (built.event_loop_metrics.tool_metrics or {}).items()}
        try:
            async for event in original(tool_use, invocation_state, **kwargs):
                yield event
        finally:
            metrics = built.event_loop_metrics
            usage = {k: int(v) - int(before_usage.get(k, 0)) for k, v in (metrics.accumulated_usage or {}).items()
                     if isinstance(v, int)}
            tools = [name for name, m in (metrics.tool_metrics or {}).items()
                     for _ in range(max(int(m.call_count) - int(before_tools.get(name, 0)), 0))]
            state = invocation_state.get("request_state") if isinstance(invocation_state, dict) else None
            if isinstance(state, dict):
                state.setdefault(MEMBER_RUNS_STATE, []).append({"usage": usage, "tools": tools})

    tool.stream = stream
    return tool


def pydantic_model_from_schema(schema: Dict[str, Any], name: str = OUTPUT_SCHEMA_NAME) -> Any:
    """A pydantic model class equivalent to a JSON object schema (for ``structured_output_model``).

    A non-object schema is wrapped in a model with one ``value`` field. Property names
    that are not identifiers keep their JSON name through an alias.

    Args:
        schema: the JSON schema.
        name: the model class's name.

    Returns:
        A pydantic model class.
    """
    if _is_object(schema) and isinstance(schema.get("properties"), dict):
        return _object_model(schema, name)
    return _object_model(
        {"type": "object", "properties": {"value": schema}, "required": ["value"]}, name
    )


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "object" or "properties" in schema)


def _object_model(schema: Dict[str, Any], name: str) -> Any:
    from pydantic import ConfigDict, Field, create_model

    properties: Dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields: Dict[str, Any] = {}
    for index, (prop, prop_schema) in enumerate(properties.items()):
        prop_schema = prop_schema if isinstance(prop_schema, dict) else {}
        annotation = _annotation(prop_schema, f"{name}_{_identifier(prop, index)}")
        field_name = _identifier(prop, index)
        extra: Dict[str, Any] = {}
        if isinstance(prop_schema.get("description"), str):
            extra["description"] = prop_schema["description"]
        if field_name != prop:
            extra["alias"] = prop
        if prop in required:
            fields[field_name] = (annotation, Field(..., **extra))
        else:
            fields[field_name] = (Optional[annotation], Field(None, **extra))
    closed = schema.get("additionalProperties") is False
    config = ConfigDict(populate_by_name=True, extra="forbid" if closed else "ignore")
    model = create_model(_identifier(name, 0), __config__=config, **fields)
    if isinstance(schema.get("description"), str):
        model.__doc__ = schema["description"]
    return model


def _annotation(schema: Dict[str, Any], name: str) -> Any:
    from typing import Literal, Union

    # typing constructs built at run time: cast to Any so type checkers accept the subscripts.
    literal, union, list_of = cast(Any, Literal), cast(Any, Union), cast(Any, List)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, float, bool)) or v is None for v in enum):
        return literal[tuple(enum)]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            members = tuple(_annotation(o if isinstance(o, dict) else {}, f"{name}_{i}") for i, o in enumerate(options))
            return union[members] if len(members) > 1 else members[0]
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        members = tuple(_annotation(dict(schema, type=k), name) for k in kind)
        return union[members] if len(members) > 1 else members[0]
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        items = schema.get("items")
        return list_of[_annotation(items, f"{name}_item") if isinstance(items, dict) else Any]
    if _is_object(schema):
        if isinstance(schema.get("properties"), dict) and schema["properties"]:
            return _object_model(schema, name)
        return Dict[str, Any]
    return Any


def _identifier(name: str, index: int) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name).lstrip("_")
    if not text or text[0].isdigit() or keyword.iskeyword(text) or text in ("model_config", "model_fields"):
        text = f"field_{index}_{text}"
    return text


# -- the builder ---------------------------------------------------------------------------------


class StrandsAdapter(Adapter):
    """Strands: ``strands.Agent(**args)``; team members become agents-as-tools."""

    name = "strands-agents"
    extra = "strands-agents"
    distribution = "strands-agents"
    requires = "strands"
    constructor = "strands.Agent"

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
            The keyword arguments for ``strands.Agent``.
        """
        from strands import Agent as StrandsAgent

        path = self.check_cycle(agent, path)
        args: Dict[str, Any] = {"agent_id": agent.id, "name": agent.name}
        description = self.description(agent)
        if description:
            args["description"] = description
        args.update(self.model_args(agent))
        prompt = self.system_prompt(agent, root)
        if prompt:
            args["system_prompt"] = prompt
        schema = self.output_schema(agent, root)
        if schema is not None:
            args["structured_output_model"] = pydantic_model_from_schema(schema)
        agent_tools: List[Any] = [python_tool(spec) for spec in self.xpander_tools(agent, root)]
        for member in self.member_agents(agent):
            built = StrandsAgent(**self.agent_args(member, root=False, extra_tools=[], path=path))
            agent_tools.append(counted_member_tool(
                built, built.as_tool(name=member_tool_name(member), description=member_tool_description(member))
            ))
        args["tools"] = agent_tools + extra_tools
        args["callback_handler"] = None
        self.skip_mcp(agent, root, "strands connects an MCPClient inside Agent(); create MCPClient(...) yourself "
                      "and pass it in tools=")
        return args


    def apply_generation(self, args: Dict[str, Any], params: Dict[str, Any], built_here: bool) -> List[str]:
        """``override``'s generation parameters into the model's ``params`` (``update_config``).

        An Anthropic model takes ``max_tokens`` in its config and ``stop`` as
        ``stop_sequences``; it has no ``seed`` or penalties. A caller's model object is left
        as is.

        Args:
            args: the model arguments, changed in place.
            params: the generation parameters (type-checked).
            built_here: whether the adapter built ``args["model"]``.

        Returns:
            The parameters that could not be applied.
        """
        if not built_here:
            return list(params)
        model = args["model"]
        config = model.get_config()
        anthropic = "max_tokens" in config
        current = dict(config.get("params") or {})
        missed: List[str] = []
        for key, value in params.items():
            if anthropic and key == "max_tokens":
                model.update_config(max_tokens=value)
            elif anthropic and key == "stop":
                current["stop_sequences"] = value
            elif anthropic and key in ("seed", "frequency_penalty", "presence_penalty", "reasoning_effort"):
                missed.append(key)
            else:
                current[key] = value
        model.update_config(params=current)
        return missed

    def model(self, spec: ModelSpec) -> Dict[str, Any]:
        """The model arguments for a resolved spec.

        An ``AnthropicModel``, ``OpenAIResponsesModel`` or ``OpenAIModel`` (key, endpoint and headers in
        ``client_args``; temperature, effort, ``user`` and ``prompt_cache_key`` in ``params``).

        Args:
            spec: the agent's resolved :class:`~xpander_sync.frameworks._llm.ModelSpec`.

        Returns:
            ``{"model": ...}`` (plus the framework's model-settings keys, if any).

        Raises:
            InvalidInputError: a provider this adapter does not map, or a missing endpoint.
            ConfigurationError: no key for OpenAI or Anthropic.
            FrameworkNotInstalledError: the provider's package is missing.
        """
        params: Dict[str, Any] = {}
        if spec.temperature is not None:
            params["temperature"] = spec.temperature
        if spec.provider == "anthropic":
            model_class = import_attr(
                "strands.models.anthropic", "AnthropicModel",
                'Anthropic models need the anthropic package: pip install "xpander-sync[strands-agents]"',
            )
            client_args: Dict[str, Any] = {"api_key": spec.anthropic_key()}
            if spec.base_url:
                client_args["base_url"] = spec.base_url
            if spec.extra_headers:
                client_args["default_headers"] = dict(spec.extra_headers)
            return {"model": model_class(client_args=client_args, model_id=spec.model_id,
                                         max_tokens=spec.max_tokens, params=params or None)}
        endpoint = spec.openai_endpoint(self.name)
        missing = 'OpenAI models need the openai package: pip install "xpander-sync[strands-agents]"'
        if spec.uses_responses_api:
            model_class = import_attr("strands.models.openai_responses", "OpenAIResponsesModel", missing)
        else:
            model_class = import_attr("strands.models.openai", "OpenAIModel", missing)
        client_args = {"api_key": endpoint.api_key}
        if endpoint.base_url:
            client_args["base_url"] = endpoint.base_url
        if endpoint.headers:
            client_args["default_headers"] = endpoint.headers
        if spec.reasoning_effort:
            params["reasoning_effort"] = spec.reasoning_effort
        if endpoint.user:
            params["user"] = endpoint.user
        if endpoint.prompt_cache_key:
            params["prompt_cache_key"] = endpoint.prompt_cache_key
        if spec.max_tokens:
            params["max_tokens"] = spec.max_tokens
        return {"model": model_class(client_args=client_args, model_id=spec.model_id, params=params or None)}


#: The registry's builder (kept for code that imported it).
build_strands_args = StrandsAdapter.build
FRAMEWORK = StrandsAdapter.name

__all__ = ["FRAMEWORK", "StrandsAdapter", "build_strands_args", "pydantic_model_from_schema"]

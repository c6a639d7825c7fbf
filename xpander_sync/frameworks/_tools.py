"""xpander tools as an LLM sees them, and the body sent when the LLM calls one.

Framework-neutral and pure: every adapter turns a :class:`~xpander_sync.Tool` into its
framework's tool object with :func:`llm_schema` (what the model may fill in) and, at
call time, :func:`build_payload` (what goes on the wire).

The graph item whose ``item_id`` is the tool's id may carry an *input override*
(``settings.schemas.input``), a JSON schema mirroring the tool's with three extensions:

* ``isBlocked: true``: the property is hidden from the LLM (and dropped from the body
  if the LLM sends it anyway);
* ``permanentValue: <value>``: hidden from the LLM and always sent with that value
  (missing object containers on the way are created, arrays of objects become ``[{}]``);
* ``description``: replaces the tool's description of that property.

The schema is the tool's own JSON schema, not a wrapper: the official SDK nests it in a
single ``payload`` argument through a generated pydantic model; an LLM calling our
tools fills ``query_params``/``path_params``/``body_params`` directly. A ``payload``
wrapper sent by a model trained on the official prompts is unwrapped.

Body rules (checked against the reference's verified tool call, where the LLM gave
only ``q`` and the wire body was
``{"query_params":{"q":"ada","limit":10,"company":"Acme"},"path_params":{},"body_params":{}}``):
LLM arguments → blocked keys dropped → schema ``default`` values filled → the task's
``payload_extension`` deep-merged (the extension wins) → permanent values forced (an
administrator's permanent value wins over everything, as upstream) → ``None`` values
dropped. Server tools always send the three containers (``{}`` when empty).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Mapping, Optional

from ..models.agent import Agent, Tool

#: The request parts of a server tool's payload.
CONTAINERS = ("query_params", "path_params", "body_params")
_EXTENSION_KEYS = ("isBlocked", "permanentValue")


def tool_description(tool: Tool) -> str:
    """The description shown to the LLM: the tool's description, else its name."""
    return (tool.description or "").strip() or tool.name


def input_override(agent: Agent, tool: Tool) -> Optional[Dict[str, Any]]:
    """The input-schema override of ``tool`` in ``agent``'s graph, if any.

    Looked up on the graph item whose ``item_id`` is the tool id, then in the tool's own
    ``schema_overrides`` (which the platform may fill from the graph).
    """
    for item in agent.graph:
        if item.item_id != tool.id or item.settings is None or not isinstance(item.settings.schemas, dict):
            continue
        candidate = item.settings.schemas.get("input")
        if isinstance(candidate, dict):
            return candidate
    if isinstance(tool.schema_overrides, dict) and isinstance(tool.schema_overrides.get("input"), dict):
        return tool.schema_overrides["input"]
    return None


def llm_schema(tool: Tool, override: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The JSON schema of the tool's arguments as the LLM sees it.

    ``tool.parameters`` (copied, never modified) with the input ``override`` applied:
    blocked and permanent properties removed (from ``properties`` and ``required``),
    override descriptions in place. For server tools, a ``query_params``/``path_params``/
    ``body_params`` container without properties is optional (the body gets ``{}``).

    Args:
        tool: the xpander tool.
        override: its input-schema override (see :func:`input_override`).

    Returns:
        A JSON-schema object (``type: object``).
    """
    params = tool.parameters if isinstance(tool.parameters, dict) else {}
    # One pass copies the JSON and drops the platform's extension keys (every build calls this for
    # every tool: a generic deepcopy and a second walk cost more than the rest of a warm build).
    schema: Dict[str, Any] = _copy_without_extensions(params) if params else {}
    schema.setdefault("type", "object")
    if not isinstance(schema.get("properties"), dict):
        schema["properties"] = {}
    if override:
        _apply_override(schema, override)
    if not tool.is_local and isinstance(schema.get("required"), list):
        properties = schema["properties"]
        schema["required"] = [
            name for name in schema["required"]
            if not (name in CONTAINERS and _is_empty_object(properties.get(name)))
        ]
    return schema


def build_payload(
    tool: Tool,
    arguments: Optional[Mapping[str, Any]],
    *,
    override: Optional[Mapping[str, Any]] = None,
    payload_extension: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The body of a tool call (:meth:`~xpander_sync.resources.Tools.invoke`) for the LLM's arguments.

    Args:
        tool: the xpander tool.
        arguments: what the LLM sent (not modified).
        override: the tool's input-schema override (permanent and blocked properties).
        payload_extension: the task's ``payload_extension``, deep-merged over the body.

    Returns:
        A new JSON object.
    """
    payload = _coerce_arguments(tool, arguments)
    if override:
        _drop_blocked(payload, override)
    if not tool.is_local:
        for name in CONTAINERS:
            if not isinstance(payload.get(name), dict):
                payload[name] = {}
    params = tool.parameters if isinstance(tool.parameters, dict) else {}
    _fill_defaults(payload, params)
    if isinstance(payload_extension, Mapping) and payload_extension:
        payload = deep_merge(payload, payload_extension)
    if override:
        _force_permanent(payload, override)
    return _drop_none(payload)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """A new dict: ``extra`` merged into ``base``; nested dicts merge, anything else ``extra`` wins."""
    out: Dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- schema helpers -------------------------------------------------------------------------


def _is_empty_object(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    if node.get("type", "object") != "object":
        return False
    props = node.get("properties")
    return not (isinstance(props, dict) and props)


def _is_hidden(override_prop: Mapping[str, Any]) -> bool:
    return override_prop.get("isBlocked") is True or override_prop.get("permanentValue") is not None


def _apply_override(node: Dict[str, Any], override: Mapping[str, Any]) -> None:
    ov_props = override.get("properties")
    props = node.get("properties")
    if isinstance(ov_props, Mapping) and isinstance(props, dict):
        for name, ov_prop in ov_props.items():
            if not isinstance(ov_prop, Mapping):
                continue
            if _is_hidden(ov_prop):
                props.pop(name, None)
                if isinstance(node.get("required"), list):
                    node["required"] = [r for r in node["required"] if r != name]
                continue
            target = props.get(name)
            if not isinstance(target, dict):
                continue  # an override for a property the tool does not have
            if isinstance(ov_prop.get("description"), str):
                target["description"] = ov_prop["description"]
            _apply_override(target, ov_prop)
    ov_items = override.get("items")
    if isinstance(ov_items, Mapping) and isinstance(node.get("items"), dict):
        _apply_override(node["items"], ov_items)


def _copy_without_extensions(node: Any) -> Any:
    """A copy of a JSON value (dicts and lists copied, leaves shared) without the extension keys."""
    if isinstance(node, dict):
        return {key: _copy_without_extensions(value) for key, value in node.items() if key not in _EXTENSION_KEYS}
    if isinstance(node, list):
        return [_copy_without_extensions(value) for value in node]
    return node


# -- payload helpers ------------------------------------------------------------------------


def _coerce_arguments(tool: Tool, arguments: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    if not isinstance(arguments, Mapping):
        return {}
    payload = copy.deepcopy(dict(arguments))
    params = tool.parameters if isinstance(tool.parameters, dict) else {}
    props: Dict[str, Any] = params["properties"] if isinstance(params.get("properties"), dict) else {}
    # A model prompted the official way wraps everything in {"payload": {...}}.
    if set(payload) == {"payload"} and "payload" not in props and isinstance(payload["payload"], dict):
        payload = payload["payload"]
    # Some models send a nested object as a JSON string: decode it when the schema says object.
    for name, value in list(payload.items()):
        prop = props.get(name)
        if isinstance(value, str) and isinstance(prop, dict) and prop.get("type") == "object":
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if isinstance(decoded, dict):
                payload[name] = decoded
    return payload


def _drop_blocked(target: Dict[str, Any], override: Mapping[str, Any]) -> None:
    ov_props = override.get("properties")
    if not isinstance(ov_props, Mapping):
        return
    for name, ov_prop in ov_props.items():
        if not isinstance(ov_prop, Mapping):
            continue
        if ov_prop.get("isBlocked") is True:
            target.pop(name, None)
            continue
        value = target.get(name)
        if isinstance(value, dict):
            _drop_blocked(value, ov_prop)
        elif isinstance(value, list) and isinstance(ov_prop.get("items"), Mapping):
            for item in value:
                if isinstance(item, dict):
                    _drop_blocked(item, ov_prop["items"])


def _fill_defaults(target: Dict[str, Any], schema: Mapping[str, Any]) -> None:
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        if target.get(name) is None and "default" in prop and prop["default"] is not None:
            target[name] = copy.deepcopy(prop["default"])
        value = target.get(name)
        if isinstance(value, dict):
            _fill_defaults(value, prop)
        elif isinstance(value, list) and isinstance(prop.get("items"), Mapping):
            for item in value:
                if isinstance(item, dict):
                    _fill_defaults(item, prop["items"])


def _has_permanent(node: Mapping[str, Any]) -> bool:
    props = node.get("properties")
    if isinstance(props, Mapping):
        for prop in props.values():
            if isinstance(prop, Mapping) and (prop.get("permanentValue") is not None or _has_permanent(prop)):
                return True
    items = node.get("items")
    return isinstance(items, Mapping) and _has_permanent(items)


def _force_permanent(target: Dict[str, Any], override: Mapping[str, Any]) -> None:
    ov_props = override.get("properties")
    if not isinstance(ov_props, Mapping):
        return
    for name, ov_prop in ov_props.items():
        if not isinstance(ov_prop, Mapping):
            continue
        if ov_prop.get("permanentValue") is not None:
            target[name] = copy.deepcopy(ov_prop["permanentValue"])
        elif not _has_permanent(ov_prop):
            continue
        elif isinstance(ov_prop.get("items"), Mapping):
            existing = target.get(name)
            items: List[Any] = existing if isinstance(existing, list) and existing else [{}]
            target[name] = items
            for item in items:
                if isinstance(item, dict):
                    _force_permanent(item, ov_prop["items"])
        else:
            sub = target.get(name)
            if not isinstance(sub, dict):
                sub = {}
                target[name] = sub
            _force_permanent(sub, ov_prop)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def render_tool_result(result: Any) -> str:
    """What the LLM reads back from an xpander tool call.

    A success is the response itself (text as is, anything else as JSON); a failure is
    ``{"is_error": true, "status_code": ..., "result": <message>}`` so the model can react.

    Args:
        result: a :class:`~xpander_sync.models.tools.ToolInvocationResult`, or any value
            (treated as a successful result).

    Returns:
        The text handed to the LLM.
    """
    if getattr(result, "is_error", False):
        body = {"is_error": True, "status_code": getattr(result, "status_code", None),
                "result": getattr(result, "result", None)}
        return json.dumps(body, ensure_ascii=False, default=str)
    value = getattr(result, "result", result)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)

"""The one cattrs converter, with every hook in this module.

* Strict primitives: a JSON string where an int is expected is an error (cattrs' default
  would call ``int("5")``, and ``str({...})`` for strings), reported with its JSON path.
* Unknown keys are ignored (the platform adds fields); unknown enum values are kept.
* Datetimes travel as ISO-8601 with ``Z`` for UTC.
* :class:`~xpander_sync.Secret` values are revealed only when unstructuring for the wire.
* Fields marked ``metadata={"wire": False}`` (a model's private client handle) are never
  (un)structured.
* :func:`structure` turns cattrs' validation errors into
  :class:`~xpander_sync.errors.ResponseDecodeError` with JSON paths and never the input
  values (cattrs' inner exceptions carry values, so they are not chained).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Dict, Type, TypeVar

import attrs
import cattrs
from cattrs.cols import is_mapping, is_sequence, list_structure_factory, mapping_structure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import transform_error

from ._redact import Secret
from .errors import ResponseDecodeError
from .models.agent import Tool
from .models.common import OpenStrEnum
from .models.task import AgentExecutionInput, Task
from .models.tokens import Tokens

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=True)


# -- primitives ----------------------------------------------------------------------------


def _strict_str(value: Any, cls: Any) -> str:
    # singledispatch on ``str`` also catches str subclasses: our enums.
    if cls is not str and _is_open_enum(cls):
        return _structure_enum(value, cls)
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError("expected an integer")


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError("expected a number")


def _strict_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("expected a boolean")


def _strict_sequence_factory(cls: Any, conv: Any) -> Callable[[Any, Any], Any]:
    inner = list_structure_factory(cls, conv)

    def structure_sequence(value: Any, type_: Any) -> Any:
        # cattrs would iterate a string (or a dict's keys) into a list: refuse it.
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected an array")
        return inner(value, type_)

    return structure_sequence


def _strict_mapping_factory(cls: Any, conv: Any) -> Callable[[Any, Any], Any]:
    inner = mapping_structure_factory(cls, conv)

    def structure_mapping(value: Any, type_: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError("expected an object")
        return inner(value, type_)

    return structure_mapping


converter.register_structure_hook_factory(is_sequence, _strict_sequence_factory)
converter.register_structure_hook_factory(is_mapping, _strict_mapping_factory)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(bool, _strict_bool)


def parse_datetime(value: Any, _: Any = None) -> _dt.datetime:
    """Parse an ISO-8601 string (``Z`` accepted on every Python version)."""
    if isinstance(value, _dt.datetime):
        return value
    if not isinstance(value, str):
        raise TypeError("expected an ISO-8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepts only 0, 3 or 6 fraction digits: normalise to 6.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO-8601 date-time") from None


def format_datetime(value: _dt.datetime) -> str:
    """ISO-8601; UTC values end in ``Z`` (as the platform writes them)."""
    if value.tzinfo is not None and value.utcoffset() == _dt.timedelta(0):
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


converter.register_structure_hook(_dt.datetime, parse_datetime)
converter.register_unstructure_hook(_dt.datetime, format_datetime)


def _structure_secret(value: Any, _: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise TypeError("expected a string")


converter.register_structure_hook(Secret, _structure_secret)
converter.register_unstructure_hook(Secret, lambda s: s.reveal())


def _is_open_enum(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, OpenStrEnum)


def _structure_enum(value: Any, cls: Type[OpenStrEnum]) -> OpenStrEnum:
    if isinstance(value, cls):
        return value
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return cls(value)


converter.register_structure_hook_func(_is_open_enum, _structure_enum)
converter.register_unstructure_hook_func(_is_open_enum, lambda e: e.value)


# -- attrs models: fields marked ``wire: False`` are not part of the JSON -----------------------


def _is_model(cls: Any) -> bool:
    return attrs.has(cls) and getattr(cls, "__module__", "").startswith("xpander_sync.models")


def _wire_overrides(cls: Any) -> Dict[str, Any]:
    """Fields marked ``wire: False`` are left out; a private field is keyed by its alias
    (``Tokens._total`` is ``total_tokens`` on the wire)."""
    overrides = {}
    for field in attrs.fields(cls):
        if field.metadata.get("wire", True) is False:
            overrides[field.name] = override(omit=True)
        elif field.alias and field.alias != field.name:
            overrides[field.name] = override(rename=field.alias)
    return overrides


def _structure_factory(cls: Any) -> Callable[[Any, Any], Any]:
    return make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=True, **_wire_overrides(cls))


def _unstructure_factory(cls: Any) -> Callable[[Any], Dict[str, Any]]:
    return make_dict_unstructure_fn(cls, converter, **_wire_overrides(cls))


converter.register_structure_hook_factory(_is_model, _structure_factory)
converter.register_unstructure_hook_factory(_is_model, _unstructure_factory)


# -- model-specific wire rules ------------------------------------------------------------

# Each hook below wraps cattrs' generated function; they are built on first use (hook
# factories), not at import time: code generation is a measurable part of the import.


def _tool_factory(cls: Any) -> Callable[[Any, Any], Tool]:
    generated = make_dict_structure_fn(Tool, converter, _cattrs_detailed_validation=True)

    def structure_tool(value: Any, type_: Any) -> Tool:
        # The platform sends either ``description`` or ``function_description``.
        if isinstance(value, dict) and not value.get("description") and value.get("function_description"):
            value = dict(value, description=value["function_description"])
        return generated(value, type_)

    return structure_tool


def _task_factory(cls: Any) -> Callable[[Any, Any], Task]:
    generated = make_dict_structure_fn(Task, converter, _cattrs_detailed_validation=True)

    def structure_task(value: Any, type_: Any) -> Task:
        # ``agent_version`` is a string on the wire; accept an integer too (the official model rejects it).
        if isinstance(value, dict) and isinstance(value.get("agent_version"), int):
            value = dict(value, agent_version=str(value["agent_version"]))
        return generated(value, type_)

    return structure_task


def _tokens_factory(cls: Any) -> Callable[[Tokens], Dict[str, Any]]:
    generated = _unstructure_factory(Tokens)

    def unstructure_tokens(tokens: Tokens) -> Dict[str, Any]:
        data = generated(tokens)
        data["total_tokens"] = tokens.total_tokens
        return data

    return unstructure_tokens


def _tokens_structure_factory(cls: Any) -> Callable[[Any, Any], Tokens]:
    # As the official SDK: a total sent by the platform is not trusted, it is recomputed.
    # (A caller's Tokens(total_tokens=...) is kept: that is the caller's own count.)
    return make_dict_structure_fn(Tokens, converter, _cattrs_detailed_validation=True, _total=override(omit=True))


def _input_factory(cls: Any) -> Callable[[AgentExecutionInput], Dict[str, Any]]:
    generated = make_dict_unstructure_fn(AgentExecutionInput, converter)

    def unstructure_input(value: AgentExecutionInput) -> Dict[str, Any]:
        data = generated(value)
        if not data.get("attachments"):
            data.pop("attachments", None)
        if not data.get("principal"):
            data.pop("principal", None)
        return data

    return unstructure_input


converter.register_structure_hook_factory(lambda t: t is Tool, _tool_factory)
converter.register_structure_hook_factory(lambda t: t is Task, _task_factory)
converter.register_unstructure_hook_factory(lambda t: t is Tokens, _tokens_factory)
converter.register_structure_hook_factory(lambda t: t is Tokens, _tokens_structure_factory)
converter.register_unstructure_hook_factory(lambda t: t is AgentExecutionInput, _input_factory)


# -- entry points -------------------------------------------------------------------------


def structure(data: Any, cls: Type[T], *, what: str = "") -> T:
    """Build ``cls`` from decoded JSON.

    Raises:
        ResponseDecodeError: ``data`` does not fit ``cls``; ``errors`` holds JSON paths.
    """
    name = what or getattr(cls, "__name__", str(cls))
    if attrs.has(cls) and not isinstance(data, dict):
        raise ResponseDecodeError(name, [f"expected a JSON object, got {_json_type(data)} @ $"])
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise ResponseDecodeError(name, transform_error(exc, format_exception=_format_exception)) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ResponseDecodeError(name, [f"{type(exc).__name__} @ $"]) from None


def unstructure(obj: Any) -> Any:
    """The wire JSON of a model (or a list/dict of models)."""
    return converter.unstructure(obj)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _format_exception(exc: BaseException, type_: Any) -> str:
    # Never include str(exc): cattrs' and the hooks' messages may contain the input value.
    if isinstance(exc, KeyError):
        return "required field missing"
    name = type_.__name__ if isinstance(type_, type) else repr(type_).replace("typing.", "")
    name = name.replace("datetime.datetime", "datetime")
    if isinstance(exc, TypeError) and exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith(
        "expected"
    ):
        return f"invalid type ({exc.args[0]}, for {name})"
    if isinstance(exc, ValueError):
        return f"invalid value for type, expected {name}"
    return f"invalid type for {name}"

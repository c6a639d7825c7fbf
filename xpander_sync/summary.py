"""A printable summary of resolved constructor arguments (for the CLI and the quickstart).

The constructor each framework's arguments are for comes from its adapter class
(:attr:`Adapter.constructor <xpander_sync.frameworks.Adapter.constructor>`, read through the
registry), so this module names no framework itself.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .errors import UnsupportedFrameworkError
from .frameworks import builtin_adapters, get_adapter


def __getattr__(name: str) -> Any:
    # ``CONSTRUCTORS`` (framework name -> what its arguments are for; the agno team case is
    # decided by ``members``), computed from the registry on access.
    if name == "CONSTRUCTORS":
        return {adapter.name: adapter.constructor for adapter in builtin_adapters()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def constructor_for(framework: str, args: Dict[str, Any]) -> str:
    """The dotted name of what ``args`` are for, from the framework's adapter (``framework`` itself if none).

    Args:
        framework: the framework name.
        args: the built arguments (agno answers ``agno.team.Team`` when they have ``members``).

    Returns:
        The dotted constructor name.
    """
    try:
        return get_adapter(framework).constructor_for(args)
    except UnsupportedFrameworkError:
        return framework


def _name_of(obj: Any) -> str:
    for attr in ("name", "__name__"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(obj).__name__


def summarize_args(args: Dict[str, Any], framework: Optional[str] = None) -> Dict[str, Any]:
    """A printable summary of resolved constructor arguments: classes, ids and names, no secrets.

    Args:
        args: what ``get_args`` returned.
        framework: the framework they were built for (default ``agno``); names the constructor.

    Returns:
        A JSON-able dict: ``framework_class``, ``id``, ``name``, ``model``, ``tools``,
        ``members``, ``storage``, ``structured_output`` and ``keys`` (the argument names).
    """
    model = args.get("model")
    db = args.get("db")
    members = args.get("members") or []
    output_schema = args.get("output_schema")
    constructor = constructor_for(framework or "agno", args)
    summary: Dict[str, Any] = {
        "framework_class": constructor,
        "id": args.get("id"),
        "name": args.get("name"),
        "model": None if model is None else {
            "class": type(model).__name__,
            "id": getattr(model, "id", None) or getattr(model, "model_name", None) or getattr(model, "model", None),
        },
        "tools": [_name_of(t) for t in args.get("tools") or []],
        "members": [
            {"name": getattr(m, "name", None), "class": type(m).__name__,
             "model": getattr(getattr(m, "model", None), "id", None)}
            for m in members
        ],
        "storage": None if db is None else {
            "class": type(db).__name__, "schema": getattr(db, "db_schema", None),
        },
        "structured_output": bool(output_schema),
        "keys": sorted(args),
    }
    return summary

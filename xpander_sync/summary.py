"""A printable summary of resolved constructor arguments (for the CLI and the quickstart)."""

from __future__ import annotations

from typing import Any, Dict


def _name_of(obj: Any) -> str:
    for attr in ("name", "__name__"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(obj).__name__


def summarize_args(args: Dict[str, Any]) -> Dict[str, Any]:
    """A printable summary of resolved constructor arguments: classes, ids and names, no secrets.

    Args:
        args: what ``get_args`` returned for agno.

    Returns:
        A JSON-able dict: ``framework_class``, ``id``, ``name``, ``model``, ``tools``,
        ``members``, ``storage``, ``structured_output`` and ``keys`` (the argument names).
    """
    model = args.get("model")
    db = args.get("db")
    members = args.get("members") or []
    output_schema = args.get("output_schema")
    summary: Dict[str, Any] = {
        "framework_class": "agno.team.Team" if members else "agno.agent.Agent",
        "id": args.get("id"),
        "name": args.get("name"),
        "model": None if model is None else {"class": type(model).__name__, "id": getattr(model, "id", None)},
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

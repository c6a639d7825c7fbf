"""A printable summary of resolved constructor arguments (for the CLI and the quickstart)."""

from __future__ import annotations

from typing import Any, Dict, Optional

#: framework name -> what its arguments are for (the agno team case is decided by ``members``)
CONSTRUCTORS = {
    "agno": "agno.agent.Agent",
    "open-ai-agents": "agents.Agent",
    "langchain": "langchain.agents.create_agent",
    "strands-agents": "strands.Agent",
    "google-adk": "google.adk.agents.LlmAgent",
    "pydantic-ai": "pydantic_ai.Agent",
}


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
    name = framework or "agno"
    constructor = CONSTRUCTORS.get(name, name)
    if name == "agno" and members:
        constructor = "agno.team.Team"
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

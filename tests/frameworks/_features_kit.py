"""Reading a built agent's arguments the same way in every framework (for the feature tests).

The platform features (``xpander_sync.frameworks.features``) change the instructions, the
context, the tools and the model of every adapter's arguments; these helpers find them in
each framework's own keys, so one feature test runs over the whole registry.
"""

from __future__ import annotations

from typing import Any, Dict, List

from xpander_sync.summary import summarize_args

from .test_contract import DRIVERS

#: The argument keys that carry prompt text, per adapter.
PROMPT_KEYS: Dict[str, tuple] = {
    "agno": ("description", "instructions", "expected_output", "additional_context"),
    "open-ai-agents": ("instructions",),
    "langchain": ("system_prompt",),
    "strands-agents": ("system_prompt",),
    "google-adk": ("static_instruction",),
    "pydantic-ai": ("instructions",),
}


def prompt_text(name: str, args: Dict[str, Any]) -> str:
    """Every piece of prompt text the adapter ``name`` put in ``args``, joined by blank lines."""
    parts = []
    for key in PROMPT_KEYS[name]:
        value = args.get(key)
        if isinstance(value, (list, tuple)):
            value = "\n".join(str(v) for v in value)
        if value:
            parts.append(str(value))
    return "\n\n".join(parts)


def tool_names(args: Dict[str, Any]) -> List[str]:
    """The names of the tools in ``args`` (framework tool objects), in order."""
    labels = list(summarize_args(args)["tools"])
    tools = list(args.get("tools") or [])
    if len(tools) != len(labels):
        return labels
    # Strands tools summarize as their class (PythonAgentTool): their name is ``tool_name``.
    return [str(getattr(tool, "tool_name", "") or label) for tool, label in zip(tools, labels)]


def find_tool(args: Dict[str, Any], tool_name: str) -> Any:
    """The framework tool object named ``tool_name`` in ``args``."""
    for tool, label in zip(args.get("tools") or [], tool_names(args)):
        if label == tool_name:
            return tool
    raise AssertionError(f"no tool {tool_name!r} in {tool_names(args)}")


def call_tool(name: str, args: Dict[str, Any], tool_name: str, arguments: Dict[str, Any]) -> str:
    """Call the tool ``tool_name`` of ``args`` the way the framework ``name`` calls tools; its text result."""
    return DRIVERS[name].call_tool(find_tool(args, tool_name), arguments)

"""Dynamic tools: an agent with a large catalog gets four meta-tools instead of every tool.

On when the agent has ``use_dynamic_tools`` and at least :func:`min_tools` hideable tools
(``XPANDER_DYNAMIC_TOOLS_MIN_TOOLS``, default 50). A hideable tool is one of the agent's own
xpander tools whose id does not start with ``xp`` (the platform's built-in tools, such as the
plan tools, stay listed; so do the tools other features add). The hidden tools are replaced by:

* ``xp_list_tools``: the hidden tools' names and one-line summaries, a page at a time;
* ``xp_search_tools``: the hidden tools that best match a query;
* ``xp_get_tool``: one tool's description and argument schema;
* ``xp_execute_tool``: calls a hidden tool by name with its arguments, through that tool's own
  :meth:`~xpander_sync.frameworks._toolspec.ToolSpec.invoke` (the same call, body and
  tool-call handling as when it is listed).

A short hint explaining the four is appended to the agent's instructions. No request is made.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List

from ...errors import InvalidInputError
from ...models.agent import Agent
from ...models.tools import ToolInvocationResult
from .._toolspec import FunctionToolSpec, ToolSpec, XpanderToolSpec
from ._base import Feature, join_blocks

#: The environment variable holding the threshold.
MIN_TOOLS_ENV = "XPANDER_DYNAMIC_TOOLS_MIN_TOOLS"
#: The threshold when the variable is not set.
DEFAULT_MIN_TOOLS = 50
#: The meta-tools' names.
META_TOOLS = ("xp_list_tools", "xp_search_tools", "xp_get_tool", "xp_execute_tool")

HINT = """<dynamic_tools>
Your {count} tools are not listed one by one. Find the one you need with xp_search_tools (or page through
xp_list_tools), read its arguments with xp_get_tool, then run it with xp_execute_tool, giving its name and
an arguments object that follows its schema.
</dynamic_tools>"""

_SUMMARY_CHARS = 160
_WORD = re.compile(r"[a-z0-9]+")


def min_tools() -> int:
    """The number of hideable tools from which dynamic tools turn on.

    Returns:
        ``XPANDER_DYNAMIC_TOOLS_MIN_TOOLS`` as an integer, else :data:`DEFAULT_MIN_TOOLS`.

    Raises:
        InvalidInputError: the variable is set to something other than a positive integer.
    """
    raw = os.environ.get(MIN_TOOLS_ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_TOOLS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(f"{MIN_TOOLS_ENV} must be a positive integer (got {raw!r}); unset it for 50")
    return value


def is_hideable(tool_id: str) -> bool:
    """Whether an xpander tool of the agent may be hidden behind the meta-tools.

    Args:
        tool_id: the tool's id.

    Returns:
        ``False`` for the platform's built-in ``xp*`` tools.
    """
    return not tool_id.startswith("xp")


def hideable_count(agent: Agent) -> int:
    """How many distinct hideable tools ``agent`` has.

    Args:
        agent: the agent.

    Returns:
        The count.
    """
    return len({tool.id for tool in agent.tools if is_hideable(tool.id)})


def dynamic(agent: Agent) -> bool:
    """Whether ``agent`` gets the meta-tools instead of its catalog.

    Args:
        agent: the agent.

    Returns:
        ``True`` when ``use_dynamic_tools`` is on and it has at least :func:`min_tools` hideable tools.

    Raises:
        InvalidInputError: ``XPANDER_DYNAMIC_TOOLS_MIN_TOOLS`` is not a positive integer.
    """
    return bool(agent.use_dynamic_tools) and hideable_count(agent) >= min_tools()


def summary(spec: ToolSpec) -> str:
    """The first line of a tool's description, at most 160 characters.

    Args:
        spec: the tool.

    Returns:
        The summary.
    """
    line = (spec.description or "").strip().splitlines()[0:1]
    text = line[0].strip() if line else ""
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def search(specs: List[ToolSpec], query: str, limit: int) -> List[ToolSpec]:
    """The tools whose name and description share the most words with ``query`` (ties: catalog order).

    Args:
        specs: the hidden tools.
        query: what the agent looks for.
        limit: the most tools answered.

    Returns:
        The matching tools, best first (none share a word: nothing).
    """
    words = set(_WORD.findall(query.lower()))
    scored = []
    for index, spec in enumerate(specs):
        name = spec.name.lower()
        text = set(_WORD.findall(f"{name} {spec.description}".lower().replace("_", " ")))
        score = len(words & text) + sum(2 for w in words if w in name)
        if score:
            scored.append((-score, index, spec))
    return [spec for _, _, spec in sorted(scored, key=lambda item: item[:2])[:limit]]


def _int(arguments: Dict[str, Any], key: str, default: int, cap: int) -> int:
    value = arguments.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return min(value, cap)


class _ExecuteTool(ToolSpec):
    """``xp_execute_tool``: a hidden tool's own :meth:`invoke`, by name."""

    def __init__(self, catalog: Dict[str, ToolSpec]) -> None:
        self.catalog = catalog
        self.name = "xp_execute_tool"
        self.description = "Run one of your tools by name with its arguments (see xp_get_tool for its schema)."
        self.schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The tool's exact name."},
                "arguments": {"type": "object", "description": "The tool's arguments, as its schema describes."},
            },
            "required": ["name", "arguments"],
        }

    def invoke(self, arguments: Any) -> Any:
        """Call the named hidden tool (its own :meth:`invoke`); an unknown name is an error result.

        Args:
            arguments: ``{"name": ..., "arguments": {...}}`` (``arguments`` may be a JSON text).

        Returns:
            The hidden tool's :class:`~xpander_sync.models.tools.ToolInvocationResult`.
        """
        def error(message: str) -> ToolInvocationResult:
            return ToolInvocationResult(tool_id=self.name, payload=arguments if isinstance(arguments, dict) else {},
                                        result=message, is_success=False, is_error=True, is_local=True)

        if not isinstance(arguments, dict) or not isinstance(arguments.get("name"), str):
            return error("xp_execute_tool needs a tool name")
        target = self.catalog.get(arguments["name"])
        if target is None:
            return error(f"no tool named {arguments['name']!r}: find it with xp_search_tools")
        inner = arguments.get("arguments")
        if isinstance(inner, str):
            try:
                inner = json.loads(inner) if inner.strip() else {}
            except ValueError:
                return error("arguments is not valid JSON")
        return target.invoke({} if inner is None else inner)


def meta_tools(hidden: List[ToolSpec]) -> List[ToolSpec]:
    """The four meta-tools over ``hidden``.

    Args:
        hidden: the tools they stand for, in catalog order.

    Returns:
        ``xp_list_tools``, ``xp_search_tools``, ``xp_get_tool``, ``xp_execute_tool``.
    """
    catalog = {spec.name: spec for spec in hidden}

    def list_tools(arguments: Dict[str, Any]) -> Any:
        offset, limit = _int(arguments, "offset", 0, len(hidden)), _int(arguments, "limit", 50, 200)
        page = hidden[offset:offset + limit]
        return {"total": len(hidden), "offset": offset,
                "tools": [{"name": spec.name, "summary": summary(spec)} for spec in page]}

    def search_tools(arguments: Dict[str, Any]) -> Any:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty text")
        found = search(hidden, query, _int(arguments, "limit", 10, 50))
        return {"tools": [{"name": spec.name, "summary": summary(spec)} for spec in found]}

    def get_tool(arguments: Dict[str, Any]) -> Any:
        spec = catalog.get(str(arguments.get("name", "")))
        if spec is None:
            raise ValueError(f"no tool named {arguments.get('name')!r}: find it with xp_search_tools")
        return {"name": spec.name, "description": spec.description, "parameters": spec.schema}

    paging = {"offset": {"type": "integer", "description": "Index of the first tool (default 0)."},
              "limit": {"type": "integer", "description": "How many tools (default 50, at most 200)."}}
    return [
        FunctionToolSpec("xp_list_tools", "List your tools (name and summary), a page at a time.",
                         {"type": "object", "properties": paging, "required": []}, list_tools),
        FunctionToolSpec("xp_search_tools", "Find the tools that match what you need to do.",
                         {"type": "object", "properties": {
                             "query": {"type": "string", "description": "Words describing the tool you need."},
                             "limit": {"type": "integer", "description": "How many tools (default 10)."}},
                          "required": ["query"]}, search_tools),
        FunctionToolSpec("xp_get_tool", "Show one tool's description and argument schema.",
                         {"type": "object", "properties": {
                             "name": {"type": "string", "description": "The tool's exact name."}},
                          "required": ["name"]}, get_tool),
        _ExecuteTool(catalog),
    ]


class DynamicTools(Feature):
    """The meta-tools in place of a large catalog, and the hint that explains them.

    Args:
        adapter: the build.
    """

    name = "dynamic_tools"

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` followed by the dynamic-tools hint when the agent's catalog is hidden.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (every agent decides for itself).
            text: its instructions so far.

        Returns:
            The instructions.

        Raises:
            InvalidInputError: ``XPANDER_DYNAMIC_TOOLS_MIN_TOOLS`` is not a positive integer.
        """
        del root
        if not dynamic(agent):
            return text
        hint = HINT.format(count=hideable_count(agent))
        return join_blocks(text, hint)

    def filter_tools(self, agent: Agent, root: bool, specs: List[ToolSpec]) -> List[ToolSpec]:
        """``specs`` with the hideable xpander tools replaced by the meta-tools (where they stood).

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.
            specs: its tool specs.

        Returns:
            The tool specs to build.
        """
        del root
        if not dynamic(agent):
            return specs
        hideable = [_hideable_spec(spec) for spec in specs]
        hidden = [spec for spec, hide in zip(specs, hideable) if hide]
        kept = [spec for spec, hide in zip(specs, hideable) if not hide]
        first = hideable.index(True) if hidden else len(specs)  # the meta-tools stand where the first one stood
        return kept[:first] + meta_tools(hidden) + kept[first:]


def _hideable_spec(spec: ToolSpec) -> bool:
    tool = getattr(spec, "tool", None)  # an XpanderToolSpec, or a wrapper that keeps its tool
    return (isinstance(spec, XpanderToolSpec) or tool is not None) and is_hideable(spec.name)

"""Reading a framework's run result: what ``Backend.report_run`` reports of it.

A :class:`RunSummary` is the framework-neutral part of a run: its final text, a trimmed view
of the provider's answer, the tokens summed over every model call (team members included where
the result carries them), the tool names in call order, and whether it succeeded. Each adapter
class recognises its framework's result through
:meth:`~xpander_sync.frameworks._adapter.Adapter.summarize_run`, which calls the reader of
:data:`READERS` named after it. A reader recognises a result by its class's module
(``type(run).__module__``), so nothing is imported that the caller has not imported already:
a result object of a framework exists only once that framework was imported.

Readers never copy a key, a header or a request: ``llm_response`` holds the framework, the
model id, the status or stop reason, and the final text.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import attrs

from .._redact import scrub
from ..models.tokens import Tokens

__all__ = ["READERS", "RunSummary", "exception_summary"]


@attrs.define
class RunSummary:
    """What a framework's run result says about the run (the report's fields).

    Args:
        framework: the adapter name (``"agno"``), or ``"exception"`` for a raised exception.
        result: the final text, or the structured output as JSON text.
        llm_response: a trimmed, secret-free view of the provider's answer.
        tokens: the tokens summed over every model call of the run.
        used_tools: the tool names, in call order.
        is_success: ``False`` for an error status, a raised exception or a guardrail stop.
    """

    framework: str
    result: Optional[str] = None
    llm_response: Any = None
    tokens: Tokens = attrs.field(factory=Tokens)
    used_tools: List[str] = attrs.field(factory=list)
    is_success: bool = True

    def fields(self) -> Dict[str, Any]:
        """The report fields (``report_external_task``'s keyword arguments)."""
        return {"result": self.result, "llm_response": self.llm_response, "tokens": self.tokens,
                "used_tools": list(self.used_tools), "is_success": self.is_success}


def exception_summary(error: BaseException, secrets: Iterable[Any] = ()) -> RunSummary:
    """A failed run: the exception's text, scrubbed of ``secrets``, as the result (at most 2000 characters)."""
    text = scrub(f"{type(error).__name__}: {error}", secrets)[:2000]
    return RunSummary("exception", result=text, llm_response={"error": type(error).__name__},
                      is_success=False)


# -- helpers --------------------------------------------------------------------------------------


def _module(run: Any) -> str:
    return type(run).__module__ or ""


def _from(run: Any, *prefixes: str) -> bool:
    module = _module(run)
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _add(counts: List[int], prompt: Any = 0, completion: Any = 0, read: Any = 0, write: Any = 0) -> None:
    for i, value in enumerate((prompt, completion, read, write)):
        counts[i] += _int(value)


def _tokens(counts: List[int]) -> Tokens:
    return Tokens(prompt_tokens=counts[0], completion_tokens=counts[1], cache_read_tokens=counts[2],
                  cache_write_tokens=counts[3])


def _text(value: Any) -> Optional[str]:
    """Text, content blocks, or structured output (JSON text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, dict)) for v in value):
        return "".join(v if isinstance(v, str) else str(v.get("text", "")) for v in value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json.dumps(dump(mode="json"), ensure_ascii=False)
        except Exception:
            pass
    if attrs.has(type(value)):
        value = attrs.asdict(value)
    try:
        import dataclasses

        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
    except Exception:
        pass
    if isinstance(value, (dict, list, int, float, bool)):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            pass
    return str(value)


def _response(framework: str, model: Any, status: Any, text: Optional[str]) -> Dict[str, Any]:
    answer: Dict[str, Any] = {"framework": framework}
    if model:
        answer["model"] = str(model)
    if status is not None:
        answer["status"] = str(getattr(status, "value", status))
    if text is not None:
        answer["output"] = text
    return answer


# -- agno: RunOutput / TeamRunOutput ----------------------------------------------------------------


def _agno_walk(run: Any, counts: List[int], tools: List[str]) -> bool:
    """Sum the tokens and tools of ``run`` and its members; ``False`` if any of them failed."""
    ok = str(getattr(_get(run, "status"), "value", _get(run, "status", ""))).lower() not in ("error", "cancelled")
    metrics = _get(run, "metrics")
    if metrics is not None:
        _add(counts, _get(metrics, "input_tokens"), _get(metrics, "output_tokens"),
             _get(metrics, "cache_read_tokens"), _get(metrics, "cache_write_tokens"))
    members = list(_get(run, "member_responses") or [])
    for tool in _get(run, "tools") or []:
        name = _get(tool, "tool_name")
        if name:
            tools.append(str(name))
        if name and members and ("delegate" in str(name) or "transfer" in str(name)):
            ok = _agno_walk(members.pop(0), counts, tools) and ok
        if _get(tool, "tool_call_error"):
            ok = False
    for member in members:  # delegations not named like one
        ok = _agno_walk(member, counts, tools) and ok
    return ok


def agno(run: Any) -> Optional[RunSummary]:
    if not (_from(run, "agno.run") and hasattr(run, "content") and hasattr(run, "status")):
        return None
    counts, tools = [0, 0, 0, 0], []  # type: List[int], List[str]
    ok = _agno_walk(run, counts, tools)
    text = _text(run.content)
    return RunSummary("agno", result=text, tokens=_tokens(counts), used_tools=tools, is_success=ok,
                      llm_response=_response("agno", _get(run, "model"), run.status, text))


# -- openai-agents: RunResult / RunResultStreaming --------------------------------------------------


def openai_agents(run: Any) -> Optional[RunSummary]:
    if not (_from(run, "agents") and hasattr(run, "raw_responses") and hasattr(run, "new_items")):
        return None
    counts = [0, 0, 0, 0]
    for response in run.raw_responses or []:
        usage = _get(response, "usage")
        if usage is not None:
            details = _get(usage, "input_tokens_details")
            _add(counts, _get(usage, "input_tokens"), _get(usage, "output_tokens"), _get(details, "cached_tokens"))
    tools: List[str] = []
    for item in run.new_items or []:
        if type(item).__name__ in ("ToolCallItem", "HandoffCallItem"):
            raw = _get(item, "raw_item")
            name = _get(raw, "name") or _get(raw, "type")
            if name:
                tools.append(str(name))
    text = _text(run.final_output)
    last = getattr(run, "last_agent", None)
    model = getattr(last, "model", None)
    return RunSummary("open-ai-agents", result=text, tokens=_tokens(counts), used_tools=tools,
                      llm_response=_response("open-ai-agents", model if isinstance(model, str) else None,
                                             None, text))


# -- langchain: the graph's state ({"messages": [...]}) or one AIMessage ----------------------------


def _is_lc_message(value: Any) -> bool:
    return _from(value, "langchain_core.messages", "langchain.messages")


def _langchain_walk(messages: List[Any], counts: List[int], tools: List[str], depth: int = 0) -> Tuple[bool, Any]:
    """Sum tokens and tools over ``messages`` and the members' states carried as tool artifacts."""
    ok, model = True, None
    for message in messages:
        usage = _get(message, "usage_metadata")
        if usage:
            details = _get(usage, "input_token_details") or {}
            _add(counts, _get(usage, "input_tokens"), _get(usage, "output_tokens"),
                 _get(details, "cache_read"), _get(details, "cache_creation"))
        for call in _get(message, "tool_calls") or []:
            if _get(call, "name"):
                tools.append(str(_get(call, "name")))
        if _get(message, "type") == "tool":
            if _get(message, "status") == "error":
                ok = False
            artifact = _get(message, "artifact")
            if depth < 8 and isinstance(artifact, dict) and isinstance(artifact.get("messages"), list):
                ok = _langchain_walk(artifact["messages"], counts, tools, depth + 1)[0] and ok
        metadata = _get(message, "response_metadata") or {}
        model = _get(metadata, "model_name") or _get(metadata, "model") or model
    return ok, model


def langchain(run: Any) -> Optional[RunSummary]:
    if isinstance(run, dict) and isinstance(run.get("messages"), list) and run["messages"] \
            and all(_is_lc_message(m) for m in run["messages"]):
        messages = run["messages"]
    elif _is_lc_message(run):
        messages = [run]
    else:
        return None
    counts, tools = [0, 0, 0, 0], []  # type: List[int], List[str]
    ok, model = _langchain_walk(messages, counts, tools)
    text = _text(_get(messages[-1], "content"))
    structured = run.get("structured_response") if isinstance(run, dict) else None
    if structured is not None:
        text = _text(structured)
    return RunSummary("langchain", result=text, tokens=_tokens(counts), used_tools=tools, is_success=ok,
                      llm_response=_response("langchain", model, None, text))


# -- strands: AgentResult ---------------------------------------------------------------------------


#: Where a strands team member's delegation tool records what each call used, in the leader's
#: request state (``AgentResult.state``): a list of ``{"usage": {...}, "tools": [...]}``.
MEMBER_RUNS_STATE = "xpander_member_runs"


def _strands_usage(counts: List[int], usage: Any) -> None:
    _add(counts, _get(usage, "inputTokens"), _get(usage, "outputTokens"), _get(usage, "cacheReadInputTokens"),
         _get(usage, "cacheWriteInputTokens"))


def strands(run: Any) -> Optional[RunSummary]:
    if not (_from(run, "strands") and hasattr(run, "stop_reason") and hasattr(run, "metrics")):
        return None
    counts = [0, 0, 0, 0]
    # the agent's metrics object accumulates over its invocations: this run is the latest one
    latest = getattr(run.metrics, "latest_agent_invocation", None)
    usage = _get(latest, "usage") if latest is not None else None
    _strands_usage(counts, usage if usage is not None else (_get(run.metrics, "accumulated_usage") or {}))
    tools: List[str] = []
    state = getattr(run, "state", None)
    members = list(state.get(MEMBER_RUNS_STATE) or []) if isinstance(state, dict) else []
    for name in _get(run.metrics, "tool_metrics") or {}:
        tools.append(str(name))
        if members and str(name).startswith("ask_"):  # a member's delegation tool: its calls' tools follow
            for member in members:
                tools.extend(str(t) for t in member.get("tools") or [])
            members_done, members = members, []
            for member in members_done:
                _strands_usage(counts, member.get("usage") or {})
    for member in members:
        tools.extend(str(t) for t in member.get("tools") or [])
        _strands_usage(counts, member.get("usage") or {})
    structured = getattr(run, "structured_output", None)
    text = _text(structured) if structured is not None else str(run).strip()
    stop = str(run.stop_reason)
    ok = stop not in ("guardrail_intervened", "content_filtered", "cancelled")
    return RunSummary("strands-agents", result=text, tokens=_tokens(counts), used_tools=tools, is_success=ok,
                      llm_response=_response("strands-agents", None, stop, text))


# -- pydantic-ai: AgentRunResult --------------------------------------------------------------------


#: The key of a team member's run result in its delegation tool's return metadata (the
#: member's tokens are already in the leader's usage: only its tools are read from it).
MEMBER_RUN_METADATA = "xpander_member_run"


def _pydantic_ai_tools(run: Any, tools: List[str], depth: int = 0) -> Any:
    model = None
    messages: Iterable[Any] = run.new_messages() if callable(getattr(run, "new_messages", None)) else []
    for message in messages:
        response = _get(message, "kind") == "response"
        model = (_get(message, "model_name") if response else None) or model
        for part in _get(message, "parts") or []:
            kind = _get(part, "part_kind")
            if response and kind == "tool-call":
                tools.append(str(_get(part, "tool_name")))
            metadata = _get(part, "metadata")
            if kind == "tool-return" and depth < 8 and isinstance(metadata, dict) and MEMBER_RUN_METADATA in metadata:
                _pydantic_ai_tools(metadata[MEMBER_RUN_METADATA], tools, depth + 1)
    return model


def pydantic_ai(run: Any) -> Optional[RunSummary]:
    if not (_from(run, "pydantic_ai") and hasattr(run, "output") and hasattr(run, "usage")):
        return None
    usage = run.usage  # a property in pydantic-ai 2 (a method before)
    if not hasattr(usage, "input_tokens") and callable(usage):
        usage = usage()
    counts = [0, 0, 0, 0]
    _add(counts, _get(usage, "input_tokens", _get(usage, "request_tokens")),
         _get(usage, "output_tokens", _get(usage, "response_tokens")),
         _get(usage, "cache_read_tokens"), _get(usage, "cache_write_tokens"))
    tools: List[str] = []
    model = _pydantic_ai_tools(run, tools)
    text = _text(run.output)
    return RunSummary("pydantic-ai", result=text, tokens=_tokens(counts), used_tools=tools,
                      llm_response=_response("pydantic-ai", model, None, text))


# -- google-adk: the events of one run --------------------------------------------------------------


def google_adk(run: Any) -> Optional[RunSummary]:
    if not (isinstance(run, (list, tuple)) and run and all(_from(e, "google.adk.events") for e in run)):
        return None
    counts, tools, ok, text, model = [0, 0, 0, 0], [], True, None, None  # type: ignore[var-annotated]
    for event in run:
        usage = _get(event, "usage_metadata")
        if usage is not None:
            _add(counts, _get(usage, "prompt_token_count"), _get(usage, "candidates_token_count"),
                 _get(usage, "cached_content_token_count"))
        for call in event.get_function_calls() or []:
            tools.append(str(call.name))
        if _get(event, "error_code") or _get(event, "error_message"):
            ok = False
        model = _get(event, "model_version") or model
        content = _get(event, "content")
        if event.is_final_response() and content is not None and _get(content, "parts"):
            text = "".join(_get(p, "text") or "" for p in content.parts)
    return RunSummary("google-adk", result=text, tokens=_tokens(counts), used_tools=tools, is_success=ok,
                      llm_response=_response("google-adk", model, None, text))


#: The reader of each built-in adapter, by adapter name.
READERS: Dict[str, Callable[[Any], Optional[RunSummary]]] = {
    "agno": agno,
    "open-ai-agents": openai_agents,
    "langchain": langchain,
    "strands-agents": strands,
    "google-adk": google_adk,
    "pydantic-ai": pydantic_ai,
}

#: What each reader accepts (named in the error for an unknown object).
SUPPORTED_TYPES = (
    "agno RunOutput/TeamRunOutput, openai-agents RunResult, a LangChain agent's state {'messages': [...]} "
    "or AIMessage, strands AgentResult, pydantic-ai AgentRunResult, a list of google-adk Events, "
    "or an exception"
)

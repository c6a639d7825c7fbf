"""The run readers of ``xpander_sync.frameworks._runs`` on result-shaped objects (no framework installed).

A reader recognises a result by its class's module, so each stand-in here is a class whose
``__module__`` is the framework's; real runs are in tests/frameworks/test_report_run.py.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pytest

from xpander_sync.errors import InvalidInputError
from xpander_sync.frameworks import summarize_run


def _in(module: str, name: str, **attributes: Any) -> Any:
    cls = type(name, (), {})
    cls.__module__ = module
    instance = cls()
    for key, value in attributes.items():
        setattr(instance, key, value)
    return instance


class Answer:
    """A structured output (a pydantic-like model)."""

    def model_dump(self, mode: str = "python") -> Dict[str, Any]:
        return {"answer": 42, "sources": ["a"]}


def _agno_run(content: Any, tools: List[str], tokens: tuple, members: Optional[List[Any]] = None,
              status: str = "COMPLETED") -> Any:
    prompt, completion, read, write = tokens
    return _in("agno.run.agent", "RunOutput", content=content, status=status, model="gpt-4.1",
               metrics={"input_tokens": prompt, "output_tokens": completion, "cache_read_tokens": read,
                        "cache_write_tokens": write},
               tools=[{"tool_name": t} for t in tools], member_responses=members or [])


def test_agno_team_sums_members_and_keeps_call_order() -> None:
    member = _agno_run("found", ["Search", "Fetch"], (100, 10, 5, 1))
    team = _agno_run("done", ["delegate_task_to_member", "Summarise"], (30, 3, 0, 2), members=[member])
    summary = summarize_run(team)
    assert summary.used_tools == ["delegate_task_to_member", "Search", "Fetch", "Summarise"]
    tokens = summary.tokens
    assert (tokens.prompt_tokens, tokens.completion_tokens, tokens.cache_read_tokens, tokens.cache_write_tokens) == (
        130, 13, 5, 3)
    assert summary.is_success and summary.result == "done"


def test_structured_output_is_json_text_and_an_error_status_fails() -> None:
    summary = summarize_run(_agno_run(Answer(), [], (1, 1, 0, 0)))
    assert json.loads(summary.result or "") == {"answer": 42, "sources": ["a"]}
    failed = summarize_run(_agno_run("boom", [], (1, 1, 0, 0), members=[_agno_run("x", [], (0, 0, 0, 0),
                                                                                   status="ERROR")]))
    assert failed.is_success is False


def test_langchain_cache_tokens_and_a_failed_tool() -> None:
    ai = _in("langchain_core.messages.ai", "AIMessage", type="ai", content="",
             usage_metadata={"input_tokens": 50, "output_tokens": 5,
                             "input_token_details": {"cache_read": 20, "cache_creation": 3}},
             tool_calls=[{"name": "Search", "args": {}, "id": "c1"}], response_metadata={"model_name": "m"})
    tool = _in("langchain_core.messages.tool", "ToolMessage", type="tool", content="Error", status="error",
               artifact=None, tool_calls=None, usage_metadata=None, response_metadata={})
    final = _in("langchain_core.messages.ai", "AIMessage", type="ai", content=[{"type": "text", "text": "sorry"}],
                usage_metadata={"input_tokens": 60, "output_tokens": 4}, tool_calls=[], response_metadata={})
    summary = summarize_run({"messages": [ai, tool, final]})
    assert (summary.tokens.prompt_tokens, summary.tokens.cache_read_tokens, summary.tokens.cache_write_tokens) == (
        110, 20, 3)
    assert summary.used_tools == ["Search"] and summary.result == "sorry" and summary.is_success is False


def test_openai_agents_usage_and_items() -> None:
    usage = {"input_tokens": 70, "output_tokens": 8, "input_tokens_details": {"cached_tokens": 30}}
    call = _in("agents.items", "ToolCallItem", raw_item={"name": "Search", "type": "function_call"})
    handoff = _in("agents.items", "HandoffCallItem", raw_item={"name": "transfer_to_b", "type": "function_call"})
    run = _in("agents.result", "RunResult", raw_responses=[{"usage": usage}, {"usage": usage}],
              new_items=[handoff, call], final_output="ok", last_agent=None)
    summary = summarize_run(run)
    assert (summary.tokens.prompt_tokens, summary.tokens.completion_tokens, summary.tokens.cache_read_tokens) == (
        140, 16, 60)
    assert summary.used_tools == ["transfer_to_b", "Search"] and summary.result == "ok"


def test_a_strands_guardrail_stop_is_a_failure() -> None:
    run = _in("strands.agent.agent_result", "AgentResult", stop_reason="guardrail_intervened",
              metrics=_in("strands.telemetry.metrics", "EventLoopMetrics",
                          accumulated_usage={"inputTokens": 9, "outputTokens": 2}, tool_metrics={}),
              structured_output=None)
    summary = summarize_run(run)
    assert summary.is_success is False and summary.tokens.prompt_tokens == 9


@pytest.mark.parametrize("value", [None, "text", {"messages": []}, [object()], 42])
def test_anything_else_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="supported"):
        summarize_run(value)

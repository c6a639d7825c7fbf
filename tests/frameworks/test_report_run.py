"""``Backend.report_run``: a real turn of every framework, reported from its run result.

Each framework runs one turn (a single agent, and a team where the adapter builds one) against
the local backend's scripted model, as in :mod:`.test_run_matrix`; ``report_run`` must then
send exactly the tokens the scripted model answered (summed over every model call, each turn
with its own numbers), the tools the model called in call order, the final text and success.
A run whose model answers errors (no LLM mounted: a 503) reports ``is_success=False``: agno
returns a run with an error status, the other frameworks raise, and the exception is the
failed run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from xpander_sync import Backend, Configuration
from xpander_sync.cli_run import RUNNERS
from xpander_sync.errors import InvalidInputError
from xpander_sync.frameworks import ADAPTERS, summarize_run
from xpander_sync.local import LocalBackend
from xpander_sync.testing import ScriptedModel, Usage, answer, answer_with_tool_result, call_first_tool

from .conftest import require_framework
from .test_run_matrix import DRIVERS, FAMILIES, PROMPT, TOOL_ANSWER, TOOL_ID, _agents, platform  # noqa: F401

# Each framework's run is ``xpander-sync run``'s runner (``cli_run.RUNNERS``): one set of drivers
# for the command and these tests. Called with ``(args, prompt)`` it runs the turn unstreamed and
# returns the framework's own run result.


def _run(name: str, args: Dict[str, Any]) -> Any:
    return RUNNERS[name](args, PROMPT)


#: The frameworks whose stream shows a team member's own tool calls as they start (agno's events,
#: openai-agents' and google-adk's handoffs/transfers run the member in the same stream); the
#: others run a member inside the leader's tool call, so only that call is shown live (the report
#: still lists every tool).
MEMBERS_TOOLS_SHOWN = {"agno", "open-ai-agents", "google-adk"}
#: Every adapter's team result carries its members' runs: agno's member responses, openai-agents'
#: and google-adk's handoffs/transfers in the same run, LangChain's member state as its tool
#: message's artifact, pydantic-ai's members run with the leader's usage, strands' member tool
#: recording each call in the leader's request state.


def test_every_registered_adapter_has_a_runner() -> None:
    assert set(RUNNERS) == set(ADAPTERS)


def _setup(platform: LocalBackend, name: str) -> Any:  # noqa: F811
    require_framework(name)
    if name == "open-ai-agents":
        from agents import set_tracing_disabled

        set_tracing_disabled(True)  # traces go to OpenAI's servers (the run command disables them too)
    _agents(platform, name, FAMILIES["openai-chat"])
    model = platform.mount_llm(ScriptedModel(usage=Usage(13, 5)))
    backend = Backend(Configuration(api_key="xpk-matrix", base_url=platform.url, organization_id="local-org",
                                    agent_cache_ttl=0))
    return model, backend


def _reported(platform: LocalBackend) -> Dict[str, Any]:  # noqa: F811
    reports = platform.reports()
    assert len(reports) == 1, reports
    return reports[0]["body"]  # type: ignore[no-any-return]


def _called_tools(model: ScriptedModel) -> List[str]:
    return [r.tool_call["name"] for r in model.requests if r.tool_call]


CASES = [
    pytest.param(name, shape, id=f"{name}-{shape}", marks=pytest.mark.framework(name))
    for name in RUNNERS
    for shape in ("solo", "team")
]


@pytest.mark.parametrize("name,shape", CASES)
def test_report_run_sends_the_runs_tokens_tools_and_text(platform: LocalBackend, name: str,  # noqa: F811
                                                         shape: str) -> None:
    model, backend = _setup(platform, name)
    agent_id = "agt-mx-solo" if shape == "solo" else "agt-mx-lead"
    task = backend.invoke_agent(agent_id, PROMPT)
    args = backend.get_args(agent_id=agent_id, task=task)
    turns = [call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}, usage=Usage(101, 17)),
             answer_with_tool_result("final: ", usage=Usage(211, 29))]
    driver = DRIVERS[name]
    if shape == "team":
        delegate = driver.delegate(args) if driver.delegate else call_first_tool("ask_", {"request": PROMPT})
        model.script(delegate, *turns)
        if not driver.handoff:
            model.script(answer_with_tool_result("final: "))
    else:
        model.script(*turns)

    run = _run(name, args)
    assert model.remaining == 0 and all(r.status == 200 for r in model.requests)
    answer_ = backend.report_run(agent_id, run=run, task=task, duration=1.5)

    body = _reported(platform)
    total = model.total_usage
    assert body["tokens"]["prompt_tokens"] == total.prompt_tokens
    assert body["tokens"]["completion_tokens"] == total.completion_tokens
    assert body["used_tools"] == _called_tools(model)
    assert TOOL_ID in body["used_tools"]
    assert body["result"].startswith("final: ") and TOOL_ANSWER in body["result"]
    assert body["is_success"] is True
    assert body["id"] == task.id and body["input"] == PROMPT and body["duration"] == 1.5
    assert body["llm_response"]["framework"] == name
    assert "xpk-matrix" not in str(body) and "sk-stored" not in str(body)
    assert answer_.id == task.id


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.framework(n)) for n in RUNNERS])
def test_a_failed_run_is_reported_as_a_failure(platform: LocalBackend, name: str) -> None:  # noqa: F811
    _, backend = _setup(platform, name)
    args = backend.get_args(agent_id="agt-mx-solo")
    platform.unmount_llm()  # every model request now gets a 503
    try:
        run: Any = _run(name, args)
    except Exception as exc:  # the framework raises: the exception is the failed run
        run = exc
    if name == "agno":  # agno returns a run with an error status
        assert not isinstance(run, BaseException)
    backend.report_run("agt-mx-solo", run=run, input=PROMPT)
    body = _reported(platform)
    assert body["is_success"] is False, body
    assert body["result"], body
    assert "xpk-matrix" not in str(body) and "sk-stored" not in str(body)


@pytest.mark.framework("agno")
def test_explicit_fields_win_and_async_twin(platform: LocalBackend) -> None:  # noqa: F811
    model, backend = _setup(platform, "agno")
    args = backend.get_args(agent_id="agt-mx-solo")
    model.script(answer("plain"))
    run = _run("agno", args)
    asyncio.run(backend.areport_run("agt-mx-solo", run=run, input=PROMPT, result="mine", used_tools=["x"],
                                    is_success=False))
    body = _reported(platform)
    assert (body["result"], body["used_tools"], body["is_success"]) == ("mine", ["x"], False)
    assert body["tokens"]["prompt_tokens"] == 13 and body["tokens"]["completion_tokens"] == 5


def test_an_unknown_object_names_the_supported_types() -> None:
    with pytest.raises(InvalidInputError) as caught:
        summarize_run(object())
    assert "RunOutput" in str(caught.value) and "AgentRunResult" in str(caught.value)
    with pytest.raises(InvalidInputError):
        Backend(Configuration(api_key="xpk", base_url="http://127.0.0.1:9")).report_run("agt-1", run={"x": 1})


def test_recognising_a_result_imports_no_framework() -> None:
    before = set(sys.modules)
    with pytest.raises(InvalidInputError):
        summarize_run([1, 2])
    summary = summarize_run(RuntimeError("boom sk-secret-123456"), ["sk-secret-123456"])
    assert summary.is_success is False and "sk-secret" not in (summary.result or "")
    frameworks = {"agno", "agents", "langchain_core", "strands", "google.adk", "pydantic_ai"}
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in frameworks or m in frameworks}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.framework(n)) for n in RUNNERS])
def test_the_run_command_runs_and_reports_a_turn(platform: LocalBackend, name: str,  # noqa: F811
                                                 tmp_path: Any) -> None:
    """``xpander-sync run`` in a subprocess, for this framework: the answer, and the report's real numbers."""
    model, _ = _setup(platform, name)
    model.script(call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}, usage=Usage(101, 17)),
                 answer_with_tool_result("final: ", usage=Usage(211, 29)))
    env = dict(os.environ, XPANDER_BASE_URL=platform.url, XPANDER_API_KEY="xpk-matrix",
               XPANDER_OUTBOX=str(tmp_path / "outbox.sqlite3"))
    done = subprocess.run([sys.executable, "-m", "xpander_sync", "run", "agt-mx-solo", PROMPT, "--json"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    body = _reported(platform)
    assert document["framework"] == name and document["is_success"] is True
    assert document["result"].startswith("final: ") and TOOL_ANSWER in document["result"]
    assert document["tokens"]["prompt_tokens"] == body["tokens"]["prompt_tokens"] == model.total_usage.prompt_tokens
    assert body["tokens"]["completion_tokens"] == model.total_usage.completion_tokens
    assert document["used_tools"] == body["used_tools"] == _called_tools(model)
    assert document["report"] == {"id": body["id"], "delivered": True, "outbox": None}


@pytest.mark.framework("strands-agents")
def test_a_reused_strands_agent_reports_only_its_latest_run(platform: LocalBackend) -> None:  # noqa: F811
    """A strands agent's metrics object accumulates over its invocations: the report is this run's."""
    model, backend = _setup(platform, "strands-agents")
    from strands import Agent

    built = Agent(**backend.get_args(agent_id="agt-mx-solo"))
    model.script(answer("first", usage=Usage(50, 5)), answer("second", usage=Usage(70, 9)))
    built(PROMPT)
    backend.report_run("agt-mx-solo", run=built(PROMPT), input=PROMPT)
    body = _reported(platform)
    assert body["result"] == "second"
    assert (body["tokens"]["prompt_tokens"], body["tokens"]["completion_tokens"]) == (70, 9)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.framework(n)) for n in RUNNERS])
def test_the_run_command_streams_a_team(platform: LocalBackend, name: str, tmp_path: Any) -> None:  # noqa: F811
    """Without ``--json`` a team's run streams: the answer on stdout, each tool call on stderr as it
    starts (see SHOWN_TOOLS for whose), and the report still has every model call's tokens."""
    model, backend = _setup(platform, name)
    args = backend.get_args(agent_id="agt-mx-lead")
    driver = DRIVERS[name]
    delegate = driver.delegate(args) if driver.delegate else call_first_tool("ask_", {"request": PROMPT})
    model.script(delegate, call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}, usage=Usage(101, 17)),
                 answer_with_tool_result("final: ", usage=Usage(211, 29)))
    if not driver.handoff:
        model.script(answer_with_tool_result("final: "))
    env = dict(os.environ, XPANDER_BASE_URL=platform.url, XPANDER_API_KEY="xpk-matrix",
               XPANDER_OUTBOX=str(tmp_path / "outbox.sqlite3"))
    done = subprocess.run([sys.executable, "-m", "xpander_sync", "run", "agt-mx-lead", PROMPT],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert model.remaining == 0 and model.requests[0].stream and model.requests[-1].stream  # the leader's
    if name in MEMBERS_TOOLS_SHOWN:  # the member runs in the same stream
        assert all(r.stream for r in model.requests)
    assert done.stdout.startswith("final: ") and done.stdout.count(TOOL_ANSWER) == 1, done.stdout
    tool_lines = [line for line in done.stderr.splitlines() if line.startswith("[tool] ")]
    called = _called_tools(model)
    shown = called if name in MEMBERS_TOOLS_SHOWN else called[:1]  # the leader's delegation only
    assert tool_lines == [f"[tool] {tool}" for tool in shown], done.stderr
    body = _reported(platform)
    assert body["used_tools"] == called
    assert body["tokens"]["prompt_tokens"] == model.total_usage.prompt_tokens
    assert body["tokens"]["completion_tokens"] == model.total_usage.completion_tokens

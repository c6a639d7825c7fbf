"""``xpander-sync run``: one turn of an agent in a subprocess, against the local backend and its scripted model.

The model is mounted on the local backend (``LocalBackend.mount_llm``) in this process; the CLI,
in a subprocess, loads the agent from the backend, builds it (agno, or ``--framework``), runs it
(the model calls the xpander tool, then answers with its result), prints the answer and reports
the run. Each test checks the exit status, the output, and the report the backend stored.

Every test is marked with the framework it runs (``@pytest.mark.framework``): the default env
runs them all and skips a framework that is not installed; each framework's tox env runs its
own share (``pytest tests/frameworks tests/test_cli_run.py --framework NAME``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest

from xpander_sync import Backend, Configuration
from xpander_sync.cli_run import RUNNERS, Shown
from xpander_sync.frameworks import ADAPTERS, summarize_run
from xpander_sync.local import LocalBackend
from xpander_sync.testing import ScriptedModel, Usage, answer, answer_with_tool_result, call_first_tool, make_agent

from .faults import FaultProxy
from .frameworks.conftest import require_framework
from .frameworks.test_run_matrix import TOOL, TOOL_ANSWER, TOOL_ID


def _agno_only(test: Any) -> Any:
    """The agent's own framework (agno) builds it: marked, and skipped where agno is not installed."""
    needs = pytest.mark.skipif(not _installed("agno"), reason="agno is not installed: pip install 'xpander-sync[agno]'")
    return pytest.mark.framework("agno")(needs(test))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


#: The agents of the provider families besides OpenAI Chat Completions (``agt-run``).
FAMILY_AGENTS = {"anthropic": ("agt-run-anthropic", "anthropic", "claude-sonnet-4-6"),
                 "openai-responses": ("agt-run-responses", "openai", "gpt-5.6")}
#: One case per framework runner, each marked with its framework (skipped where it is not installed).
FRAMEWORKS = [pytest.param(name, id=name, marks=pytest.mark.framework(name)) for name in RUNNERS]

KEY = "xpk-RUN-SENTINEL-5a1c"
PROMPT = "Look up the answer"


@pytest.fixture(autouse=True)
def outbox_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "outbox.sqlite3")
    monkeypatch.setenv("XPANDER_OUTBOX", path)
    return path


@pytest.fixture
def local(tmp_path: Any) -> Any:
    with LocalBackend(db_path=str(tmp_path / "run.sqlite3"), api_key=KEY) as backend:
        backend.register_tool(TOOL_ID, lambda payload, headers: {"answer": TOOL_ANSWER})
        backend.add_agent(make_agent("agt-run", "Runner", framework="agno", model_provider="openai",
                                     model_name="gpt-4.1", tools=[TOOL], output_format="text",
                                     llm_credentials={"name": "k", "value": "sk-stored-run"}))
        for agent_id, provider, model_name in FAMILY_AGENTS.values():  # the other provider families
            backend.add_agent(make_agent(agent_id, "Runner", framework="agno", model_provider=provider,
                                         model_name=model_name, tools=[TOOL], output_format="text",
                                         llm_credentials={"name": "k", "value": "sk-stored-run"}))
        backend.add_agent(make_agent("agt-plain", "Plain", framework="agno", model_provider="openai",
                                     model_name="gpt-4.1", output_format="text",
                                     llm_credentials={"name": "k", "value": "sk-stored-run"}))
        yield backend


@pytest.fixture
def model(local: LocalBackend) -> ScriptedModel:
    return local.mount_llm(ScriptedModel(usage=Usage(13, 5)))


def run_cli(*argv: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("XPANDER_") and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env.update({"XPANDER_BASE_URL": url, "XPANDER_API_KEY": KEY, "XPANDER_OUTBOX": os.environ["XPANDER_OUTBOX"]})
    return subprocess.run([sys.executable, "-m", "xpander_sync", "run", *argv], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _script_tool_turn(model: ScriptedModel) -> None:
    model.script(call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}, usage=Usage(101, 17)),
                 answer_with_tool_result("final: ", usage=Usage(211, 29)))


def _one_report(local: LocalBackend) -> Dict[str, Any]:
    reports = local.reports()
    assert len(reports) == 1, reports
    return reports[0]["body"]  # type: ignore[no-any-return]


@_agno_only
def test_run_prints_the_answer_and_reports_the_runs_tokens_and_tools(local: LocalBackend,
                                                                      model: ScriptedModel) -> None:
    _script_tool_turn(model)
    done = run_cli("agt-run", PROMPT, url=local.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("final: ") and TOOL_ANSWER in done.stdout
    assert f"[tool] {TOOL_ID}" in done.stderr
    assert model.requests and all(r.stream for r in model.requests)  # agno's answer is streamed as it arrives
    body = _one_report(local)
    assert body["tokens"]["prompt_tokens"] == model.total_usage.prompt_tokens == 312
    assert body["tokens"]["completion_tokens"] == model.total_usage.completion_tokens == 46
    assert body["used_tools"] == [TOOL_ID] and body["is_success"] is True
    assert body["input"] == PROMPT and TOOL_ANSWER in body["result"] and body["duration"] > 0
    assert KEY not in done.stdout + done.stderr and "sk-stored-run" not in done.stdout + done.stderr


@_agno_only
def test_run_json_shape_and_task_id(local: LocalBackend, model: ScriptedModel) -> None:
    task = Backend(Configuration(api_key=KEY, base_url=local.url)).invoke_agent("agt-run", PROMPT)
    _script_tool_turn(model)
    done = run_cli("agt-run", PROMPT, "--task-id", task.id, "--json", url=local.url)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert not any(r.stream for r in model.requests)  # --json: one object at the end, nothing streamed
    assert set(document) == {"agent_id", "framework", "task_id", "result", "is_success", "tokens", "used_tools",
                             "duration", "report"}
    assert (document["agent_id"], document["framework"], document["task_id"]) == ("agt-run", "agno", task.id)
    assert document["tokens"] == {"prompt_tokens": 312, "completion_tokens": 46, "cache_read_tokens": 0,
                                  "cache_write_tokens": 0}
    assert document["used_tools"] == [TOOL_ID] and document["is_success"] is True
    assert document["report"] == {"id": task.id, "delivered": True, "outbox": None}
    assert _one_report(local)["id"] == task.id


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_a_failed_run_exits_1_and_is_reported_as_failed(local: LocalBackend, name: str) -> None:
    require_framework(name)
    # no LLM mounted: every model request gets a 503 (streamed or not)
    done = run_cli("agt-plain", PROMPT, "--framework", name, url=local.url)
    assert done.returncode == 1, done.stderr
    assert "the run failed" in done.stderr
    assert _one_report(local)["is_success"] is False


@_agno_only
def test_no_report_reports_nothing(local: LocalBackend, model: ScriptedModel) -> None:
    model.script(answer("plain answer"))
    done = run_cli("agt-plain", PROMPT, "--no-report", "--json", url=local.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["report"] is None and json.loads(done.stdout)["result"] == "plain answer"
    assert local.reports() == []


@_agno_only
@pytest.mark.parametrize("argv", [["--framework", "open-claw"], ["--framework", "no-such-framework"]])
def test_framework_errors_exit_2(local: LocalBackend, argv: Any) -> None:
    done = run_cli("agt-plain", PROMPT, *argv, url=local.url)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("xpander-sync: error:") and local.reports() == []


@_agno_only
def test_an_undeliverable_report_is_queued_exit_3(local: LocalBackend, model: ScriptedModel,
                                                   outbox_path: str) -> None:
    with FaultProxy(local.url) as proxy:
        model.script(answer("counted"))
        assert run_cli("agt-plain", PROMPT, "--no-report", url=proxy.url).returncode == 0
        before_report = len(proxy.seen)  # the platform requests of a run, before its report
        proxy.reset()
        proxy.plan(*["pass"] * before_report)
        proxy.set_default("close")
        model.script(answer("queued answer"))
        done = run_cli("agt-plain", PROMPT, url=proxy.url)
        assert done.returncode == 3, done.stderr
        assert done.stdout.strip() == "queued answer" and "report queued" in done.stderr
        assert local.reports() == []
        proxy.set_default("pass")  # the platform is back: the queued report is delivered as it was sent
        flushed = Backend(Configuration(api_key=KEY, base_url=proxy.url, outbox=outbox_path)).flush_outbox()
    assert len(flushed.delivered) == 1 and _one_report(local)["result"] == "queued answer"


# -- streaming: every framework that streams -------------------------------------------------------


def test_every_registered_adapter_has_a_streaming_runner() -> None:
    assert set(RUNNERS) == set(ADAPTERS)


def _tool_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("[tool] ")]


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_run_streams_the_answer_and_shows_each_tool_call(local: LocalBackend, model: ScriptedModel,
                                                         name: str) -> None:
    """Without ``--json`` every framework streams: the model is asked to stream, the answer is printed
    once, the tool call is shown on stderr, and the report still carries the exact tokens."""
    require_framework(name)
    _script_tool_turn(model)
    done = run_cli("agt-run", PROMPT, "--framework", name, url=local.url)
    assert done.returncode == 0, done.stderr
    assert model.remaining == 0 and model.requests and all(r.stream for r in model.requests)
    assert done.stdout.startswith("final: ") and done.stdout.count(TOOL_ANSWER) == 1, done.stdout
    assert _tool_lines(done.stderr) == [f"[tool] {TOOL_ID}"], done.stderr
    body = _one_report(local)
    assert body["result"] == done.stdout.strip() and body["is_success"] is True
    assert body["tokens"]["prompt_tokens"] == model.total_usage.prompt_tokens == 312
    assert body["tokens"]["completion_tokens"] == model.total_usage.completion_tokens == 46
    assert body["used_tools"] == [TOOL_ID]


class Recording(Shown):
    """A :class:`Shown` that also records what it was given, in order."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), io.StringIO())
        self.events: List[Tuple[str, str]] = []

    def text(self, piece: Any) -> None:
        if isinstance(piece, str) and piece:
            self.events.append(("text", piece))
        super().text(piece)

    def tool(self, name: Any, call_id: Any = None) -> None:
        before = len(self.tools)
        super().tool(name, call_id)
        if len(self.tools) > before:
            self.events.append(("tool", str(name)))


#: Every runner x every provider family it builds (google-adk reaches OpenAI through litellm's Chat
#: Completions only: no Responses case).
FAMILY_CASES = [pytest.param(name, family, id=f"{name}-{family}", marks=pytest.mark.framework(name))
                for name in RUNNERS for family in ("openai-chat", *FAMILY_AGENTS)
                if not (name == "google-adk" and family == "openai-responses")]


@pytest.mark.parametrize("name,family", FAMILY_CASES)
def test_each_runner_streams_pieces_and_returns_the_run_result(local: LocalBackend, model: ScriptedModel,
                                                               name: str, family: str) -> None:
    """In process, for each provider family: the tool call is shown before the answer, the answer
    arrives in pieces (the scripted model streams it in two), and the runner returns the run result
    ``report_run`` reads, with the exact tokens of the streamed model calls."""
    require_framework(name)
    agent_id = FAMILY_AGENTS[family][0] if family in FAMILY_AGENTS else "agt-run"
    if name == "open-ai-agents":
        from agents import set_tracing_disabled

        set_tracing_disabled(True)
    args = Backend(Configuration(api_key=KEY, base_url=local.url)).get_args(agent_id=agent_id, framework=name)
    _script_tool_turn(model)
    shown = Recording()
    run = RUNNERS[name](args, PROMPT, shown)
    pieces = [value for kind, value in shown.events if kind == "text"]
    assert shown.events[0] == ("tool", TOOL_ID) and shown.tools == [TOOL_ID], shown.events
    assert len(pieces) >= 2 and "".join(pieces).startswith("final: "), shown.events
    assert model.requests and all(r.stream and r.family == family for r in model.requests)
    summary = summarize_run(run)
    assert summary.result == "".join(pieces) and TOOL_ANSWER in summary.result
    assert (summary.tokens.prompt_tokens, summary.tokens.completion_tokens) == (312, 46)
    assert summary.used_tools == [TOOL_ID] and summary.is_success is True


def test_shown_keeps_text_and_tool_lines_apart() -> None:
    out, err = io.StringIO(), io.StringIO()
    shown = Shown(out, err)
    shown.text("Let me look")
    shown.text(" that up.")
    shown.tool("Search", "call-1")
    shown.tool("Search", "call-1")  # the same call, reported again: shown once
    shown.text(None)
    shown.text("Found it.")
    shown.tool("Fetch")
    assert out.getvalue() == "Let me look that up.\nFound it.\n" and shown.line_open is False
    assert err.getvalue() == "[tool] Search\n[tool] Fetch\n" and shown.tools == ["Search", "Fetch"]

"""The CLI, run as a user runs it: ``python -m xpander_sync`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from xpander_sync.cli import main
from xpander_sync.local import LocalBackend

SENTINEL = "xpk-CLI-SENTINEL-93b1"


@pytest.fixture(autouse=True)
def outbox_path(tmp_path, monkeypatch):
    """Keep every CLI outbox inside the test's temporary folder (never in the home directory)."""
    path = str(tmp_path / "outbox.sqlite3")
    monkeypatch.setenv("XPANDER_OUTBOX", path)
    return path


def run_cli(*argv, env=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XPANDER_") or k == "XPANDER_OUTBOX"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "xpander_sync", *argv], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def local(tmp_path):
    with LocalBackend(db_path=str(tmp_path / "cli.sqlite3"), api_key=SENTINEL) as backend:
        yield backend


def env_for(local, key=SENTINEL):
    return {"XPANDER_BASE_URL": local.url, "XPANDER_API_KEY": key}


def test_report_prints_the_task_id(local):
    done = run_cli("report", "--agent-id", "agt-openai", "--input", "q", "--result", "a", "--duration", "1.5",
                   "--prompt-tokens", "3", "--completion-tokens", "4", "--tool", "search", "--tool", "fetch",
                   env=env_for(local))
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    (report,) = local.reports()
    body = report["body"]
    assert body["id"] == task_id and body["used_tools"] == ["search", "fetch"] and body["is_success"] is True
    assert body["tokens"]["total_tokens"] == 7 and body["duration"] == 1.5


def test_report_json_and_failed_flag(local):
    done = run_cli("report", "--agent-id", "agt-openai", "--input", "q", "--result", "boom", "--failed", "--json",
                   env=env_for(local))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["agent_id"] == "agt-openai" and data["status"] == "failed"
    assert local.reports()[0]["body"]["is_success"] is False


def test_wrong_key_fails_with_one_line_and_no_secret(local):
    done = run_cli("-v", "report", "--agent-id", "agt-openai", "--input", "q", "--result", "a",
                   env=env_for(local, key="xpk-WRONG-SENTINEL-11"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("xpander-sync: failed: [403]")
    assert "xpk-WRONG-SENTINEL-11" not in done.stdout + done.stderr
    assert "DEBUG" in done.stderr  # -v was on, and still nothing leaked


def test_api_key_flag_is_never_printed(local):
    done = run_cli("--api-key", SENTINEL, "--base-url", local.url, "-v", "agents", "list", "--json")
    assert done.returncode == 0, done.stderr
    ids = [a["id"] for a in json.loads(done.stdout)]
    assert "agt-openai" in ids and "agt-team" in ids
    assert SENTINEL not in done.stdout + done.stderr


def test_missing_agent_is_a_usage_error(local):
    done = run_cli("report", "--input", "q", "--result", "a", env=env_for(local))
    assert done.returncode == 2 and "XPANDER_AGENT_ID" in done.stderr and done.stdout == ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket closes


def test_unreachable_backend_without_outbox_fails_cleanly():
    port = free_port()
    done = run_cli("report", "--no-outbox", "--agent-id", "a", "--input", "q", "--result", "a",
                   env={"XPANDER_BASE_URL": f"http://127.0.0.1:{port}", "XPANDER_API_KEY": SENTINEL})
    assert done.returncode == 1
    assert "could not connect" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and SENTINEL not in done.stderr


def test_report_during_an_outage_is_queued_then_flushed_exactly_as_sent(tmp_path, outbox_path):
    port = free_port()
    env = {"XPANDER_BASE_URL": f"http://127.0.0.1:{port}", "XPANDER_API_KEY": SENTINEL}
    done = run_cli("report", "--agent-id", "agt-openai", "--input", "q", "--result", "r", "--tool", "t",
                   "--json", env=env)
    assert done.returncode == 3, done.stderr  # queued, not delivered
    queued = json.loads(done.stdout)
    assert queued["delivered"] is False and queued["outbox"] == outbox_path
    assert "outbox flush" in done.stderr and SENTINEL not in done.stderr
    with open(outbox_path, "rb") as fh:
        assert SENTINEL.encode() not in fh.read()  # the outbox never stores the API key
    listed = json.loads(run_cli("outbox", "list", "--json", env=env).stdout)
    assert [r["task_id"] for r in listed] == [queued["id"]]

    with LocalBackend(db_path=str(tmp_path / "b.sqlite3"), api_key=SENTINEL, port=port) as local:
        flushed = run_cli("outbox", "flush", "--json", env=env)
        assert flushed.returncode == 0, flushed.stderr
        assert json.loads(flushed.stdout) == {"delivered": [queued["id"]], "failed": [], "remaining": 0}
        (report,) = local.reports()
    assert report["body"]["id"] == queued["id"] and report["body"]["used_tools"] == ["t"]
    assert report["body"]["input"] == "q" and report["body"]["result"] == "r"


def test_tasks_show_masks_secrets(local):
    from xpander_sync import Backend, Configuration

    cfg = Configuration(api_key=SENTINEL, base_url=local.url)
    task = Backend(cfg).report_external_task(agent_id="agt-openai", input="q", result="r")
    done = run_cli("tasks", "show", task.id, "--json", env=env_for(local))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["id"] == task.id and data["result"] == "r"
    text = run_cli("tasks", "show", task.id, env=env_for(local))
    assert text.returncode == 0 and f"id: {task.id}" in text.stdout


@pytest.mark.parametrize("argv", [[], ["bogus"], ["report"], ["agents"]])
def test_usage_errors_exit_2(argv):
    done = run_cli(*argv)
    assert done.returncode == 2
    assert "usage:" in done.stderr and "error:" in done.stderr and "Traceback" not in done.stderr


def test_serve_runs_until_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpander_sync", "serve", "--db", str(tmp_path / "s.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("xpander-sync local backend on http://127.0.0.1:")
        url = first.split(" on ", 1)[1].strip()
        assert requests.get(f"{url}/agents/agt-openai", timeout=5).json()["id"] == "agt-openai"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_main_in_process_returns_exit_codes(capsys, local, monkeypatch):
    monkeypatch.setenv("XPANDER_BASE_URL", local.url)
    monkeypatch.setenv("XPANDER_API_KEY", SENTINEL)
    assert main(["report", "--agent-id", "agt-openai", "--input", "i", "--result", "r"]) == 0
    assert capsys.readouterr().out.strip() == local.reports()[0]["body"]["id"]


def test_quickstart_runs_offline_and_builds_real_agents():
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    done = run_cli("quickstart", "--json", timeout=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["agno_installed"] is True
    steps = {s["step"]: s for s in summary["steps"]}
    assert all(s["ok"] for s in summary["steps"])
    assert steps["get_args + construct agt-team"]["constructed"] == "agno.team.team.Team"
    assert steps["get_args + construct agt-openai"]["constructed"] == "agno.agent.agent.Agent"
    # a real turn: the model called the tool, the platform answered it, the answer reached the model
    run = steps["run agt-openai"]
    assert run["tool_call"]["name"] == "XpanderCrmSearchContacts"
    assert run["platform_tool_call"]["sent_body"]["query_params"] == {"q": "Ada", "limit": 10, "company": "Acme"}
    assert run["platform_tool_call"]["x-execution-id"]  # the run's own task
    assert "Ada Lovelace" in run["tool_answer"] and "Ada Lovelace" in run["final"]
    assert run["tokens"] == {"prompt_tokens": 22, "completion_tokens": 14}  # two scripted responses of 11/7
    assert run["reported"]["tokens"]["total_tokens"] == 36
    assert run["reported"]["used_tools"] == ["XpanderCrmSearchContacts"]
    # the Claude agent, and the team delegating to it, run too
    assert steps["run agt-anthropic"]["model"].startswith("Claude ")
    assert json.loads(steps["run agt-anthropic"]["final"])["risk"]
    team = steps["run agt-team"]
    assert team["tool_call"]["name"] == "delegate_task_to_member" and team["final"].startswith("The team says:")
    assert "run agt-json" in steps
    # the platform features at work in one turn of agt-features (issue 15)
    features = steps["run agt-features"]
    assert features["platform_features"] == {
        "dynamic_prompt_in_instructions": True, "channel_presence_in_instructions": True,
        "environment_context_in_instructions": True, "memories_in_context": True, "knowledge_retrieved": True,
        "memory_saved": ["Dana asked about Ada Lovelace's account."], "approval_polled": 1,
        "tool_called_after_approval": True,
    }
    assert features["reported"]["used_tools"] == ["search_knowledge_base", "manage_memory", "XpanderCrmSearchContacts"]
    assert steps["MCP OAuth auth events"]["events"] == ["login_required", "token_ready"]
    assert steps["report an external task"]["status"] == "completed"


def test_args_command_summarises_without_secrets(local):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    done = run_cli("args", "agt-anthropic", "--json", env=env_for(local))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["model"] == {"class": "Claude", "id": "claude-sonnet-4-5-20250929"}
    # the local backend gives agents its own SQLite session store (a reachable one: no refused connections)
    assert summary["structured_output"] is True and summary["storage"] == {"class": "SqliteDb", "schema": None}
    assert "sk-ant-LOCAL-SAMPLE" not in done.stdout + done.stderr and SENTINEL not in done.stdout + done.stderr
    text = run_cli("args", "agt-team", env=env_for(local))
    assert text.returncode == 0 and "agno.team.Team" in text.stdout and "members:" in text.stdout
    missing = run_cli("args", "agt-nope", env=env_for(local))
    assert missing.returncode == 1 and "[404]" in missing.stderr


def test_args_command_names_the_framework_it_built_for(local):
    pytest.importorskip("agno")
    done = run_cli("args", "agt-openai", "--json", env=env_for(local))
    assert json.loads(done.stdout)["framework_class"] == "agno.agent.Agent"
    other = run_cli("args", "agt-openai", "--framework", "open-claw", env=env_for(local))
    assert other.returncode == 2 and "supported" in other.stderr  # UnsupportedFrameworkError is a ValueError


def test_serve_beyond_loopback_without_a_key_is_a_usage_error(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "api_key" in capsys.readouterr().err


def test_quickstart_needs_no_test_tooling():
    """The README's main job runs in `pip install ".[agno]"`, where pytest is not installed: the
    scripted model it uses must not come through the pytest plugin."""
    pytest.importorskip("agno")
    code = ("import sys; sys.modules['pytest'] = None  # 'import pytest' now fails, as without it\n"
            "from xpander_sync.cli import main; sys.exit(main(['quickstart', '--json']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]

"""End to end over real loopback HTTP, against the project's own local backend (no ``responses``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests

from xpander_sync import (
    AuthenticationRequiredError,
    Backend,
    Configuration,
    NotFoundError,
    PermissionDeniedError,
    Tasks,
    User,
)
from xpander_sync.frameworks._context import BuildContext
from xpander_sync.local import LocalBackend


def test_report_and_read_back(xpander_backend):
    backend = Backend(xpander_backend.configuration)
    task = backend.report_external_task(
        agent_id="agt-openai", input="q", result="a", tokens={"prompt_tokens": 3, "completion_tokens": 4},
        duration=1.5, used_tools=["kb_search"],
    )
    (report,) = xpander_backend.reports()
    assert report["body"]["id"] == task.id and report["body"]["used_tools"] == ["kb_search"]
    again = Tasks(xpander_backend.configuration).get(task.id)
    assert again.result == "a" and again.tokens.total_tokens == 7 and again.duration == 1.5


def test_wrong_api_key_is_a_typed_error(xpander_backend):
    cfg = Configuration(api_key="wrong", base_url=xpander_backend.url)
    with pytest.raises(PermissionDeniedError, match="XPANDER_API_KEY"):
        Backend(cfg).report_external_task(agent_id="agt-openai")


def test_connection_reuse(xpander_backend):
    backend = Backend(xpander_backend.configuration)
    for _ in range(5):
        backend.report_external_task(agent_id="agt-openai")
    ports = {r["client_port"] for r in xpander_backend.requests}
    assert len(ports) == 1  # one pooled keep-alive connection served all five


def test_invoke_update_and_stop(xpander_backend):
    backend = Backend(xpander_backend.configuration)
    task = backend.invoke_agent("agt-openai", "hello", user_details=User(id="u1", email="u@example.com"),
                                agent_version=3)
    assert task.agent_version == "3" and task.input.user.id == "u1" and task.configuration is backend.configuration
    task.result = "done"
    task.used_tools = ["x"]
    task.save()
    assert Tasks(xpander_backend.configuration).get(task.id).used_tools == ["x"]
    task.stop()
    assert task.status.value == "stopped"
    with pytest.raises(NotFoundError):
        Tasks(xpander_backend.configuration).get("no-such-task")


def test_tool_call_carries_this_calls_task(xpander_backend):
    context = BuildContext(Backend(xpander_backend.configuration)._transport)
    agent = context.load_agent("agt-openai")
    task = Backend(xpander_backend.configuration).invoke_agent("agt-openai", "go")
    result = context.invoke_tool(agent, task, "XpanderCrmSearchContacts", {"query_params": {"q": "ada"}})
    assert result.is_success and result.result["execution_id"] == task.id
    (call,) = xpander_backend.tool_calls()
    assert call["headers"]["x-execution-id"] == task.id and call["headers"]["x-agent-version"] == "3"


def test_oauth_flow_end_to_end(xpander_backend):
    events = []

    def click_login(agent, task, event):
        events.append(event.data["type"])
        if event.data["type"] == "login_required":
            assert requests.get(event.data["data"]["url"], timeout=5).ok  # the user logs in

    cfg = Configuration(api_key=xpander_backend.configuration.api_key, base_url=xpander_backend.url,
                        mcp_auth_poll_interval=0.05, mcp_auth_timeout=10)
    backend = Backend(cfg)
    context = BuildContext(backend._transport, auth_events_callback=click_login)
    agent = context.load_agent("agt-mcp")
    task = backend.invoke_agent("agt-mcp", "q", user_details=User(id="user-1", email="a@b.c"))
    headers = context.mcp_headers(agent, task, agent.mcp_servers[0])
    assert headers["Authorization"].startswith("Bearer ") and events == ["login_required", "token_ready"]
    pushed = xpander_backend.events(task.id)
    assert [e["event"]["data"]["type"] for e in pushed] == ["login_required", "token_ready"]
    assert pushed[1]["event"]["data"]["data"]["access_token"] == "REDACTED"

    # the token belongs to user-1: user-2 runs its own flow and, without a login, times out
    quick = BuildContext(Backend(Configuration(api_key=cfg.api_key, base_url=cfg.base_url,
                                               mcp_auth_poll_interval=0.05, mcp_auth_timeout=0.3))._transport)
    other = backend.invoke_agent("agt-mcp", "q", user_details=User(id="user-2", email="b@b.c"))
    with pytest.raises(AuthenticationRequiredError, match="Notion"):
        quick.mcp_headers(agent, other, agent.mcp_servers[0])
    assert quick.mcp_headers(agent, task, agent.mcp_servers[0]) == headers  # user-1 still logged in


def test_reports_survive_a_restart(tmp_path):
    db = str(tmp_path / "store.sqlite3")
    with LocalBackend(db_path=db) as first:
        task = Backend(Configuration(base_url=first.url)).report_external_task(agent_id="agt-openai", input="kept")
    with LocalBackend(db_path=db) as second:
        again = Tasks(Configuration(base_url=second.url)).get(task.id)
        assert again.input.text == "kept" and len(second.reports()) == 1


def test_concurrent_reports_from_several_processes(tmp_path):
    db = str(tmp_path / "store.sqlite3")
    script = textwrap.dedent(
        """
        import sys
        from xpander_sync import Backend, Configuration
        backend = Backend(Configuration(base_url=sys.argv[1]))
        for i in range(20):
            backend.report_external_task(agent_id="agt-openai", input=f"{sys.argv[2]}-{i}")
        """
    )
    with LocalBackend(db_path=db) as local:
        procs = [subprocess.Popen([sys.executable, "-c", script, local.url, f"p{n}"]) for n in range(4)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
        inputs = sorted(r["body"]["input"] for r in local.reports())
    assert len(inputs) == 80 and len(set(inputs)) == 80


def test_testing_kit_helpers(xpander_backend):
    from xpander_sync.testing import make_agent

    xpander_backend.add_agent(make_agent("agt-kit", tools=[{"id": "Echo", "name": "Echo", "parameters": {}}]))
    context = BuildContext(Backend(xpander_backend.configuration)._transport)
    agent = context.load_agent("agt-kit")
    assert agent.name == "Test Agent" and agent.tools[0].id == "Echo"
    xpander_backend.register_tool("Echo", lambda payload, headers: {"echoed": payload})
    assert context.invoke_tool(agent, None, "Echo", {"a": 1}).result == {"echoed": {"a": 1}}
    assert json.dumps(xpander_backend.requests)  # the log is plain JSON data


def test_get_args_over_loopback_builds_agents_and_calls_tools(xpander_backend):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    from agno.agent import Agent as AgnoAgent
    from agno.team import Team
    from agno.tools.function import FunctionCall

    backend = Backend(xpander_backend.configuration)
    task = backend.invoke_agent("agt-openai", "find ada", user_details=User(id="u-1", email="u@example.com"))
    args = backend.get_args(agent_id="agt-openai", task=task)
    agent = AgnoAgent(**args)
    assert agent.id == "agt-openai" and args["session_id"] == task.id and args["user_id"] == "u-1"
    search = next(t for t in args["tools"] if t.name == "XpanderCrmSearchContacts")
    outcome = FunctionCall(function=search, arguments={"query_params": {"q": "ada"}}).execute()
    assert json.loads(outcome.result)["payload"]["query_params"] == {"q": "ada", "limit": 10, "company": "Acme"}
    (call,) = xpander_backend.tool_calls()
    assert call["headers"]["x-execution-id"] == task.id

    team_args = backend.get_args(agent_id="agt-team")  # no task: works (upstream raises AttributeError)
    team = Team(**team_args)
    assert [m.name for m in team.members] == ["Contract Reviewer", "Researcher"]
    paths = [(r["method"], r["path"]) for r in xpander_backend.requests if r["path"].startswith(("/agents", "/meta"))]
    assert ("GET", "/agents/agt-team") in paths and ("GET", "/agents/agt-sub-b") in paths


def test_get_args_with_mcp_oauth_over_loopback(xpander_backend):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    from agno.agent import Agent as AgnoAgent

    seen = []

    def click(agent, task, event):
        seen.append(event.data["type"])
        if event.data["type"] == "login_required":
            requests.get(event.data["data"]["url"], timeout=5)

    cfg = Configuration(api_key=xpander_backend.configuration.api_key, base_url=xpander_backend.url,
                        mcp_auth_poll_interval=0.05)
    backend = Backend(cfg)
    task = backend.invoke_agent("agt-mcp", "q", user_details=User(id="user-9", email="n@example.com"))
    args = backend.get_args(agent_id="agt-mcp", task=task, auth_events_callback=click)
    AgnoAgent(**args)
    (toolkit,) = args["tools"]
    assert toolkit.server_params.headers["Authorization"].startswith("Bearer ")
    assert seen == ["login_required", "token_ready"]


def test_get_args_keeps_serving_when_the_backend_goes_down(tmp_path, caplog):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    import logging

    from agno.agent import Agent as AgnoAgent

    from xpander_sync import RetryPolicy, TransportError

    local = LocalBackend(db_path=str(tmp_path / "b.sqlite3")).start()
    cfg = Configuration(base_url=local.url, agent_cache_ttl=0, metadata_cache_ttl=0,
                        retry=RetryPolicy(max_retries=0))
    backend = Backend(cfg)
    backend.get_args(agent_id="agt-openai")
    local.stop()
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        args = backend.get_args(agent_id="agt-openai")
    assert AgnoAgent(**args).id == "agt-openai"
    assert "using the copy fetched" in caplog.text
    with pytest.raises(TransportError):
        backend.get_args(agent_id="agt-anthropic")  # never fetched

"""Tests of the local xpander-compatible backend (``xpander_sync.local``), through real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from xpander_sync.local import LocalBackend, ToolError, sample_agents_dir
from xpander_sync.local._payloads import DEFAULT_DB_URI, REPORT_KEYS, TASK_FIELDS

API_KEY = "xpk-LOCAL-SENTINEL-0001"
ORG = "5b0f0c36-2f1e-4c63-9a3e-0d5e7c1a9f10"
REPO_ROOT = Path(__file__).resolve().parents[2]
MCP_SERVER = {
    "type": "remote",
    "name": "Notion",
    "command": None,
    "url": "https://mcp.notion.example/mcp",
    "transport": "streamable-http",
    "auth_type": "oauth2",
    "api_key": None,
    "use_secrets_manager": False,
    "client_id": None,
    "client_secret": None,
    "headers": {},
    "env_vars": {},
    "allowed_tools": ["search", "fetch"],
    "additional_scopes": [],
    "share_user_token_across_other_agents": True,
}
LIST_ITEM_KEYS = {
    "id",
    "name",
    "icon",
    "instructions",
    "status",
    "organization_id",
    "created_at",
    "description",
    "access_scope",
    "created_by",
    "type",
}


def create_body(**overrides: Any) -> dict[str, Any]:
    """The 27-key create-task body of the current SDK (reference sample values)."""
    body: dict[str, Any] = {
        "id": None,
        "input": {
            "text": "Find Ada Lovelace in the CRM and add a note that she asked for a demo.",
            "files": ["https://files.example.com/uploads/meeting-notes.txt"],
            "user": {
                "id": "user-42",
                "first_name": "Dana",
                "last_name": "Levi",
                "email": "dana@example.com",
                "additional_attributes": {"plan": "enterprise"},
                "timezone": "Europe/Berlin",
            },
        },
        "payload_extension": None,
        "source": "sdk",
        "worker_id": None,
        "output_format": "markdown",
        "output_schema": None,
        "run_locally": False,
        "events_streaming": True,
        "additional_context": "The user is on the enterprise plan.",
        "instructions_override": None,
        "test_run_node_id": None,
        "user_oidc_token": None,
        "expected_output": "A one-paragraph confirmation.",
        "mcp_servers": [],
        "triggering_agent_id": None,
        "title": "CRM demo follow-up",
        "think_mode": "default",
        "disable_attachment_injection": False,
        "user_tokens": None,
        "return_metrics": False,
        "llm_model_provider": None,
        "llm_model_name": None,
        "llm_reasoning_effort": None,
        "harness_cli": None,
        "permission_mode": None,
        "tool_call_limit": None,
    }
    body.update(overrides)
    return body


def report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "ext-2026-0001",
        "input": "What is our refund window?",
        "llm_response": {"id": "chatcmpl-123", "choices": [{"message": {"content": "5 days"}}]},
        "tokens": {
            "completion_tokens": 14,
            "prompt_tokens": 120,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "total_tokens": 134,
        },
        "is_success": True,
        "result": "Refunds are processed within 5 business days.",
        "duration": 1.8,
        "used_tools": ["kb_search"],
    }
    body.update(overrides)
    return body


def assert_json_error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    return body["detail"]


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    with LocalBackend(api_key=API_KEY, default_llm_headers={"X-Org-Trace": "local-trace"}) as b:
        yield b


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        yield s


# -- lifecycle and binding -------------------------------------------------------------------------------


def test_binds_loopback_on_an_ephemeral_port() -> None:
    backend = LocalBackend()
    with pytest.raises(RuntimeError):
        _ = backend.url
    with backend:
        host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
        assert host == "127.0.0.1" and port > 0
        assert backend.url == f"http://127.0.0.1:{port}"
        assert backend.start() is backend  # idempotent
        assert requests.get(backend.url + "/agents/list", timeout=5).status_code == 200
    backend.stop()  # idempotent
    with pytest.raises(RuntimeError):
        backend.start()


def test_stop_closes_keep_alive_connections(session: requests.Session) -> None:
    backend = LocalBackend(api_key=API_KEY).start()
    assert session.get(backend.url + "/agents/list", timeout=5).status_code == 200
    backend.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(backend.url + "/agents/list", timeout=5)


def test_serve_forever_blocks_until_stop() -> None:
    backend = LocalBackend()
    thread = threading.Thread(target=backend.serve_forever)
    thread.start()
    try:
        for _ in range(200):
            if backend._httpd is not None:
                break
            threading.Event().wait(0.01)
        assert requests.get(backend.url + "/agents/list", timeout=5).status_code == 200
    finally:
        backend.stop()
        thread.join(5)
    assert not thread.is_alive()


# -- agents -------------------------------------------------------------------------------------------------


def test_agents_list_items(backend: LocalBackend, session: requests.Session) -> None:
    resp = session.get(backend.url + "/agents/list")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    items = resp.json()
    assert [i["id"] for i in items] == [
        "agt-anthropic",
        "agt-json",
        "agt-mcp",
        "agt-openai",
        "agt-sub-b",
        "agt-team",
    ]
    for item in items:
        assert set(item) == LIST_ITEM_KEYS
        assert item["organization_id"] == ORG
    openai = next(i for i in items if i["id"] == "agt-openai")
    assert openai["name"] == "CRM Assistant" and openai["status"] == "ACTIVE"
    assert openai["instructions"]["goal"] == ["Keep CRM records accurate"]


def test_get_agent_latest_and_versions(backend: LocalBackend, session: requests.Session) -> None:
    latest = session.get(backend.url + "/agents/agt-openai").json()
    assert latest["version"] == 3 and latest["model_name"] == "gpt-4.1" and len(latest["tools"]) == 2
    old = session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "2"}).json()
    assert old["version"] == 2 and old["model_name"] == "gpt-4o" and len(old["tools"]) == 1
    assert session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "3"}).json() == latest
    assert (
        "version"
        in assert_json_error(
            session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "9"}), 404
        ).lower()
    )
    assert_json_error(
        session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "three"}), 400
    )
    assert_json_error(session.get(backend.url + "/agents/agt-nope"), 404)


def test_private_local_keys_are_stripped(backend: LocalBackend, session: requests.Session) -> None:
    backend.add_agent(
        {
            "id": "agt-x",
            "name": "X",
            "organization_id": "org-x",
            "_local_db_uri": "postgresql://u:p@db.local:5432/x",
            "_local_note": "hidden",
        }
    )
    agent = session.get(backend.url + "/agents/agt-x").json()
    assert agent == {"id": "agt-x", "name": "X", "organization_id": "org-x"}
    db = session.get(backend.url + "/agents/agt-x/db").json()
    assert db == {
        "id": "agt-x",
        "name": "X",
        "organization_id": "org-x",
        "connection_uri": {"uri": "postgresql://u:p@db.local:5432/x"},
    }
    assert all(
        not k.startswith("_local") for i in session.get(backend.url + "/agents/list").json() for k in i
    )


def test_agent_db_placeholder(backend: LocalBackend, session: requests.Session) -> None:
    db = session.get(backend.url + "/agents/agt-openai/db").json()
    assert db == {
        "id": "agt-openai",
        "name": "CRM Assistant",
        "organization_id": ORG,
        "connection_uri": {"uri": DEFAULT_DB_URI},
    }
    assert_json_error(session.get(backend.url + "/agents/agt-nope/db"), 404)


def test_default_llm_extra_headers(backend: LocalBackend, session: requests.Session) -> None:
    assert session.get(backend.url + "/metadata/default_llm_extra_headers").json() == {
        "X-Org-Trace": "local-trace"
    }
    with LocalBackend() as plain:
        assert requests.get(plain.url + "/metadata/default_llm_extra_headers", timeout=5).json() == {}


def test_sample_agents_are_consistent() -> None:
    folder = sample_agents_dir()
    agents = {}
    for f in folder.glob("*.json"):
        agents[f.name] = json.loads(f.read_text(encoding="utf-8"))
    latest = {a["id"]: a for name, a in agents.items() if "@" not in name}
    assert set(latest) == {"agt-openai", "agt-anthropic", "agt-team", "agt-sub-b", "agt-mcp", "agt-json"}
    assert {a["organization_id"] for a in agents.values()} == {ORG}
    assert [t["id"] for t in latest["agt-openai"]["tools"]] == [
        "XpanderCrmSearchContacts",
        "XpanderCrmCreateNote",
    ]
    assert latest["agt-openai"]["knowledge_bases"] == [{"id": "kb-1", "rw": False}]
    creds = latest["agt-anthropic"]["llm_credentials"]
    assert latest["agt-anthropic"]["model_provider"] == "anthropic" and "LOCAL" in creds["value"]
    assert latest["agt-anthropic"]["output_format"] == "json"
    members = [g["item_id"] for g in latest["agt-team"]["graph"] if g["type"] == "agent"]
    assert members == ["agt-anthropic", "agt-sub-b"] and all(m in latest for m in members)
    mcp = latest["agt-mcp"]["graph"][0]["settings"]["mcp_settings"]
    assert mcp["auth_type"] == "oauth2" and mcp["type"] == "remote"
    assert (
        latest["agt-json"]["output_format"] == "json"
        and latest["agt-json"]["output_schema"]["type"] == "object"
    )
    assert latest["agt-json"]["model_provider"] == "openai"


def test_custom_agents_dir_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"id": "a", "version": 2, "name": "A2"}))
    (tmp_path / "a@1.json").write_text(json.dumps({"id": "a", "version": 1, "name": "A1"}))
    (tmp_path / "notes.txt").write_text("ignored")
    with LocalBackend(tmp_path) as b:
        assert [i["id"] for i in requests.get(b.url + "/agents/list", timeout=5).json()] == ["a"]
        assert requests.get(b.url + "/agents/a", timeout=5).json()["name"] == "A2"
        one = requests.get(b.url + "/agents/a", headers={"x-agent-version": "1"}, timeout=5).json()
        assert one["name"] == "A1"
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json"):
        LocalBackend(tmp_path)
    with pytest.raises(FileNotFoundError):
        LocalBackend(tmp_path / "missing")


# -- tasks --------------------------------------------------------------------------------------------------


def test_create_task_returns_full_task(backend: LocalBackend, session: requests.Session) -> None:
    body = create_body()
    resp = session.post(
        backend.url + "/agent-execution/agt-openai", json=body, headers={"x-agent-version": "3"}
    )
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    task = resp.json()
    assert set(TASK_FIELDS) <= set(task)
    assert uuid.UUID(task["id"]).version == 4
    assert task["agent_id"] == "agt-openai" and task["organization_id"] == ORG
    assert task["status"] == "pending" and task["agent_version"] == "3"
    assert task["input"] == body["input"]
    assert task["created_at"].endswith("Z")
    created = dt.datetime.fromisoformat(task["created_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60
    for key in (
        "title",
        "expected_output",
        "additional_context",
        "events_streaming",
        "output_format",
        "source",
    ):
        assert task[key] == body[key]
    assert task["mcp_servers"] == [] and task["used_tools"] == [] and task["tokens"] is None
    assert task["deep_planning"] == {
        "enabled": False,
        "enforce": False,
        "started": False,
        "question_raised": False,
        "tasks": [],
    }
    status = session.get(f"{backend.url}/agent-execution/{task['id']}/status")
    assert status.json() == task
    assert backend.tasks() == [task]


def test_create_task_version_and_defaults(backend: LocalBackend, session: requests.Session) -> None:
    no_header = session.post(
        backend.url + "/agent-execution/agt-openai", json={"input": {"text": "hi"}}
    ).json()
    assert no_header["agent_version"] == "3"  # latest
    assert no_header["input"] == {"text": "hi", "files": [], "user": None}
    assert no_header["think_mode"] == "default"
    v2 = session.post(
        backend.url + "/agent-execution/agt-openai", json=create_body(), headers={"x-agent-version": "2"}
    ).json()
    assert v2["agent_version"] == "2"
    assert_json_error(
        session.post(
            backend.url + "/agent-execution/agt-openai", json=create_body(), headers={"x-agent-version": "7"}
        ),
        404,
    )
    assert_json_error(session.post(backend.url + "/agent-execution/agt-nope", json=create_body()), 404)
    # invoke_agent sends files: null
    nulls = session.post(
        backend.url + "/agent-execution/agt-openai",
        json=create_body(input={"text": "x", "files": None, "user": None}),
    ).json()
    assert nulls["input"]["files"] == []


def test_create_task_with_id_continues_existing(backend: LocalBackend, session: requests.Session) -> None:
    first = session.post(backend.url + "/agent-execution/agt-openai", json=create_body(id="thread-1")).json()
    assert first["id"] == "thread-1" and first["execution_attempts"] == 1
    session.patch(
        backend.url + "/agent-execution/thread-1/update", json={"status": "completed", "result": "ok"}
    )
    again = session.post(
        backend.url + "/agent-execution/agt-openai",
        json=create_body(id="thread-1", input={"text": "follow-up"}),
    ).json()
    assert again["id"] == "thread-1" and again["created_at"] == first["created_at"]
    assert again["status"] == "pending" and again["result"] is None and again["execution_attempts"] == 2
    assert again["input"]["text"] == "follow-up"
    assert len(backend.tasks()) == 1
    assert_json_error(
        session.post(backend.url + "/agent-execution/agt-json", json=create_body(id="thread-1")), 409
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "input"),
        ({"input": "just text"}, "input"),
        (create_body(think_mode="hardest"), "think_mode"),
        (create_body(events_streaming="yes"), "events_streaming"),
        (create_body(mcp_servers={}), "mcp_servers"),
        (create_body(input={"text": "x", "user": {"id": "u"}}), "input.user.email"),
        (create_body(output_format="pdf"), "output_format"),
        ([1, 2], "object"),
    ],
)
def test_create_task_rejects_bad_bodies(
    backend: LocalBackend, session: requests.Session, body: Any, field: str
) -> None:
    detail = assert_json_error(session.post(backend.url + "/agent-execution/agt-openai", json=body), 400)
    assert field in detail
    assert backend.tasks() == []


def test_update_task_partial_and_full(backend: LocalBackend, session: requests.Session) -> None:
    task = session.post(backend.url + "/agent-execution/agt-openai", json=create_body()).json()
    url = f"{backend.url}/agent-execution/{task['id']}/update"

    executing = session.patch(
        url, json={"status": "executing", "tool_call_payload_extension": {"a": 1}}
    ).json()
    assert set(TASK_FIELDS) <= set(executing)
    assert executing["status"] == "executing" and executing["started_at"].endswith("Z")
    assert executing["payload_extension"] == {"a": 1}

    full = dict(
        executing,
        status="completed",
        result="done",
        used_tools=["XpanderCrmSearchContacts"],
        tokens={"completion_tokens": 2, "prompt_tokens": 3, "total_tokens": 5},
        started_at=None,
        agent_id="someone-else",
    )
    saved = session.patch(url, json=full).json()
    assert saved["status"] == "completed" and saved["result"] == "done"
    assert saved["used_tools"] == ["XpanderCrmSearchContacts"] and saved["tokens"]["total_tokens"] == 5
    assert saved["started_at"] == executing["started_at"]  # an explicit null does not erase it
    assert saved["finished_at"] and saved["agent_id"] == "agt-openai"
    assert session.get(f"{backend.url}/agent-execution/{task['id']}/status").json() == saved

    assert "id" in assert_json_error(session.patch(url, json=dict(full, id="other")), 400)
    assert "status" in assert_json_error(session.patch(url, json={"status": "done"}), 400)
    assert_json_error(session.patch(url, json=["status"]), 400)
    assert_json_error(
        session.patch(backend.url + "/agent-execution/nope/update", json={"status": "paused"}), 404
    )
    assert_json_error(session.get(backend.url + "/agent-execution/nope/status"), 404)


def test_stop_task(backend: LocalBackend, session: requests.Session) -> None:
    task = session.post(backend.url + "/agent-execution/agt-openai", json=create_body()).json()
    stopped = session.delete(f"{backend.url}/agent-execution/{task['id']}").json()
    assert stopped["id"] == task["id"] and stopped["status"] == "stopped"
    assert stopped["is_manually_stopped"] is True and stopped["finished_at"]
    assert_json_error(session.delete(backend.url + "/agent-execution/nope"), 404)


# -- external task reports ----------------------------------------------------------------------------------


def test_report_task_creates_task(backend: LocalBackend, session: requests.Session) -> None:
    body = report_body()
    assert set(body) == REPORT_KEYS
    task = session.post(backend.url + "/agent-execution/agt-openai/report_task", json=body).json()
    assert set(TASK_FIELDS) <= set(task)
    assert (
        task["id"] == "ext-2026-0001" and task["agent_id"] == "agt-openai" and task["organization_id"] == ORG
    )
    assert task["status"] == "completed"
    assert task["input"] == {"text": "What is our refund window?", "files": [], "user": None}
    assert (
        task["tokens"] == body["tokens"] and task["used_tools"] == ["kb_search"] and task["duration"] == 1.8
    )
    assert task["result"] == body["result"] and task["created_at"].endswith("Z")
    assert backend.reports() == [
        {
            "id": "ext-2026-0001",
            "agent_id": "agt-openai",
            "body": body,
            "received_at": pytest.approx(backend.reports()[0]["received_at"]),
        }
    ]

    failed = session.post(
        backend.url + "/agent-execution/agt-openai/report_task",
        json=report_body(id=None, is_success=False, input=None, tokens=None),
    ).json()
    assert uuid.UUID(failed["id"]).version == 4
    assert failed["status"] == "failed" and failed["input"]["text"] == "" and failed["tokens"] is None


def test_report_task_is_idempotent(backend: LocalBackend, session: requests.Session) -> None:
    url = backend.url + "/agent-execution/agt-openai/report_task"
    first = session.post(url, json=report_body()).json()
    second = session.post(url, json=report_body(result="changed")).json()
    assert second == first
    assert len(backend.reports()) == 1 and len(backend.tasks()) == 1


def test_report_finishes_a_created_task(backend: LocalBackend, session: requests.Session) -> None:
    task = session.post(backend.url + "/agent-execution/agt-openai", json=create_body()).json()
    reported = session.post(
        backend.url + "/agent-execution/agt-openai/report_task", json=report_body(id=task["id"])
    ).json()
    assert reported["status"] == "completed" and reported["input"] == task["input"]
    assert reported["created_at"] == task["created_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in report_body().items() if k != "duration"}, "duration"),
        (report_body(extra=1), "extra"),
        (report_body(is_success="yes"), "is_success"),
        (report_body(used_tools="kb_search"), "used_tools"),
        (report_body(tokens={"prompt_tokens": "many"}), "tokens.prompt_tokens"),
        ("text", "object"),
    ],
)
def test_report_task_rejects_bad_bodies(
    backend: LocalBackend, session: requests.Session, body: Any, field: str
) -> None:
    detail = assert_json_error(
        session.post(backend.url + "/agent-execution/agt-openai/report_task", json=body), 400
    )
    assert field in detail
    assert backend.reports() == []


def test_report_task_unknown_agent(backend: LocalBackend, session: requests.Session) -> None:
    # The official SDK posts to /agent-execution/None/report_task when no agent id is known.
    assert_json_error(
        session.post(backend.url + "/agent-execution/None/report_task", json=report_body()), 404
    )


# -- tools --------------------------------------------------------------------------------------------------


def test_tool_call_echo_and_record(backend: LocalBackend, session: requests.Session) -> None:
    payload = {
        "query_params": {"q": "ada", "limit": 10, "company": "Acme"},
        "path_params": {},
        "body_params": {},
    }
    headers = {"x-agent-version": "3", "x-execution-id": "task-1", "x-tool-call-id": "call-1"}
    resp = session.post(
        backend.url + "/agents/agt-openai/operations/XpanderCrmSearchContacts", json=payload, headers=headers
    )
    assert resp.json() == {
        "tool_id": "XpanderCrmSearchContacts",
        "agent_id": "agt-openai",
        "execution_id": "task-1",
        "payload": payload,
    }
    preflight = session.post(
        backend.url + "/agents/agt-openai/operations/mcp_tool_search",
        json={"body_params": {"input": {}, "output": {}}},
        headers={"x-execution-id": "task-1", "x-preflight-check": "true"},
    )
    assert preflight.status_code == 200 and "error" not in preflight.json()
    calls = backend.tool_calls()
    assert [c["tool_id"] for c in calls] == ["XpanderCrmSearchContacts", "mcp_tool_search"]
    assert calls[0]["headers"] == headers and calls[0]["body"] == payload and calls[0]["method"] == "POST"
    assert calls[1]["headers"] == {"x-execution-id": "task-1", "x-preflight-check": "true"}
    no_exec = session.post(backend.url + "/agents/agt-openai/operations/XpanderCrmCreateNote", json={}).json()
    assert no_exec["execution_id"] is None
    assert_json_error(session.post(backend.url + "/agents/agt-nope/operations/X", json={}), 404)


def test_registered_tool_handlers(backend: LocalBackend, session: requests.Session) -> None:
    seen: list[Any] = []

    def search(payload: dict[str, Any], headers: dict[str, str]) -> Any:
        seen.append((payload, headers))
        return {"contacts": [{"id": "c-1", "name": "Ada"}]}

    backend.register_tool("XpanderCrmSearchContacts", search)

    @backend.register_tool("Broken")
    def broken(payload: Any, headers: Any) -> Any:
        raise RuntimeError("boom")

    @backend.register_tool("Unprocessable")
    def unprocessable(payload: Any, headers: Any) -> Any:
        raise ToolError(422, "contact_id is required")

    url = backend.url + "/agents/agt-openai/operations/"
    resp = session.post(
        url + "XpanderCrmSearchContacts",
        json={"query_params": {"q": "ada"}},
        headers={"x-execution-id": "t-9"},
    )
    assert resp.json() == {"contacts": [{"id": "c-1", "name": "Ada"}]}
    assert seen[0][0] == {"query_params": {"q": "ada"}}
    assert seen[0][1]["x-execution-id"] == "t-9" and seen[0][1]["x-api-key"] == "***"
    assert "Broken" in assert_json_error(session.post(url + "Broken", json={}), 500)
    assert assert_json_error(session.post(url + "Unprocessable", json={}), 422) == "contact_id is required"
    assert session.get(backend.url + "/agents/list").status_code == 200  # still serving
    assert len(backend.tool_calls()) == 3


# -- MCP OAuth ----------------------------------------------------------------------------------------------


def test_mcp_login_flow_per_user(backend: LocalBackend, session: requests.Session) -> None:
    get_token = backend.url + "/mcp_auth/agt-mcp/{user}/get_token"
    first = session.post(
        get_token.format(user="user-42"),
        json=MCP_SERVER,
        params={"generate_login_url": "true", "execution_id": "task-1"},
    ).json()
    assert first["type"] == "login_required"
    data = first["data"]
    assert data["server_url"] == MCP_SERVER["url"] and data["server_name"] == "Notion"
    assert data["url"].startswith(backend.url + "/mcp_auth/login?state=")

    polled = session.post(
        get_token.format(user="user-42"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert polled == first  # polling keeps the same pending login

    # The user "clicks" the login URL: no API key involved.
    click = requests.get(data["url"], timeout=5)
    assert click.status_code == 200 and click.headers["Content-Type"] == "application/json"
    assert click.json()["status"] == "ok" and "access_token" not in click.text

    ready = session.post(
        get_token.format(user="user-42"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert ready["type"] == "token_ready" and ready["data"]["access_token"].startswith("mcp-local-")
    assert requests.get(data["url"], timeout=5).status_code == 200  # clicking twice is harmless

    # Tokens are per user: another user has to log in separately.
    other = session.post(
        get_token.format(user="user-7"), json=MCP_SERVER, params={"generate_login_url": "true"}
    ).json()
    assert other["type"] == "login_required" and other["data"]["url"] != data["url"]
    token = backend.complete_login(other["data"]["url"].split("state=")[1])
    again = session.post(
        get_token.format(user="user-7"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert again == {"type": "token_ready", "data": {"access_token": token}}
    assert token != ready["data"]["access_token"]

    # force_refresh drops the token and asks for a new login.
    refreshed = session.post(
        get_token.format(user="user-7"),
        json=MCP_SERVER,
        params={"generate_login_url": "true", "force_refresh": "true"},
    ).json()
    assert refreshed["type"] == "login_required"


def test_mcp_complete_login_directly_and_errors(backend: LocalBackend, session: requests.Session) -> None:
    backend.complete_login(user_id="u-1", server_url=MCP_SERVER["url"], token="tok-fixed")
    resp = session.post(
        backend.url + "/mcp_auth/agt-mcp/u-1/get_token",
        json=MCP_SERVER,
        params={"generate_login_url": "true"},
    ).json()
    assert resp == {"type": "token_ready", "data": {"access_token": "tok-fixed"}}
    with pytest.raises(KeyError):
        backend.complete_login("no-such-state")
    with pytest.raises(ValueError):
        backend.complete_login(user_id="u-1")
    assert_json_error(requests.get(backend.url + "/mcp_auth/login?state=no-such-state", timeout=5), 404)
    assert_json_error(requests.get(backend.url + "/mcp_auth/login", timeout=5), 400)
    assert_json_error(session.post(backend.url + "/mcp_auth/agt-mcp/u-1/get_token", json=[1]), 400)
    assert_json_error(session.post(backend.url + "/mcp_auth/agt-nope/u-1/get_token", json=MCP_SERVER), 404)
    local = session.post(
        backend.url + "/mcp_auth/agt-mcp/u-1/get_token",
        json=dict(MCP_SERVER, type="local", url=None, command="npx srv"),
    ).json()
    assert local["type"] == "not_supported" and local["data"]["message"]


# -- events and metrics -------------------------------------------------------------------------------------


def test_events_push_and_metrics(backend: LocalBackend, session: requests.Session) -> None:
    event = {
        "type": "auth_event",
        "task_id": "t-1",
        "organization_id": ORG,
        "time": "2026-03-21T09:15:03.117Z",
        "data": {"type": "token_ready", "data": {"access_token": "REDACTED"}},
    }
    resp = session.post(backend.url + "/agent-execution/t-1/events/push", json=[event])
    assert resp.status_code == 200 and resp.json() == {}
    session.post(backend.url + "/agent-execution/t-2/events/push", json=[dict(event, task_id="t-2")] * 2)
    assert [e["event"] for e in backend.events("t-1")] == [event]
    assert len(backend.events()) == 3 and len(backend.events("t-2")) == 2
    assert_json_error(session.post(backend.url + "/agent-execution/t-1/events/push", json=event), 400)

    metrics = {
        "execution_id": "t-1",
        "source": "sdk",
        "status": "completed",
        "llm_tokens": {"inner": {}, "worker": {"completion_tokens": 1, "prompt_tokens": 2}},
    }
    resp = session.post(backend.url + "/agents-metrics/agt-openai/execution", json=metrics)
    assert resp.status_code == 200 and resp.json() == {}
    assert backend.metrics()[0]["agent_id"] == "agt-openai" and backend.metrics()[0]["body"] == metrics
    assert_json_error(session.post(backend.url + "/agents-metrics/agt-openai/execution", json=[]), 400)
    assert_json_error(session.post(backend.url + "/agents-metrics/agt-nope/execution", json=metrics), 404)


# -- auth, errors, robustness -------------------------------------------------------------------------------


def test_api_key_required(backend: LocalBackend) -> None:
    url = backend.url + "/agents/agt-openai"
    assert_json_error(requests.get(url, timeout=5), 401)
    wrong = requests.get(url, headers={"x-api-key": "xpk-WRONG-guess"}, timeout=5)
    assert_json_error(wrong, 403)
    assert "xpk-WRONG-guess" not in wrong.text and API_KEY not in wrong.text
    assert_json_error(requests.get(backend.url + "/no/such/route", timeout=5), 401)  # auth before routing
    assert requests.get(url, headers={"x-api-key": API_KEY}, timeout=5).status_code == 200
    log = backend.requests_log
    assert [e["status"] for e in log] == [401, 403, 401, 200]
    assert all(e["headers"].get("x-api-key") in (None, "***") for e in log)
    assert API_KEY not in json.dumps(log) and "xpk-WRONG-guess" not in json.dumps(log)


def test_requests_log_entries(backend: LocalBackend, session: requests.Session) -> None:
    session.post(
        backend.url + "/agent-execution/agt-openai?x=1",
        json=create_body(),
        headers={"Authorization": "Bearer secret-bearer"},
    )
    session.post(
        backend.url + "/agent-execution/agt-openai",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    first, second = backend.requests_log
    assert first["method"] == "POST" and first["path"] == "/agent-execution/agt-openai"
    assert first["query"] == {"x": "1"} and first["body"] == create_body() and first["status"] == 200
    assert first["headers"]["authorization"] == "***" and first["headers"]["x-api-key"] == "***"
    assert second["body"] == "{not json" and second["status"] == 400
    backend.requests_log.clear()  # a copy: the backend's log is untouched
    assert len(backend.requests_log) == 2


def test_unknown_routes_and_methods(backend: LocalBackend, session: requests.Session) -> None:
    assert_json_error(session.get(backend.url + "/nope"), 404)
    assert_json_error(session.get(backend.url + "/agents/agt-openai/extra/segments"), 404)
    resp = session.put(backend.url + "/agents/agt-openai", json={})
    assert_json_error(resp, 405)
    assert resp.headers["Allow"] == "GET"
    assert_json_error(session.options(backend.url + "/agents/list"), 501)
    assert session.get(backend.url + "/agents/list").status_code == 200


def test_internal_error_is_500_json(
    backend: LocalBackend, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(task_id: str) -> Any:
        raise RuntimeError("database exploded with sk-SECRET")

    monkeypatch.setattr(backend._store, "get_task", broken)
    resp = session.get(backend.url + "/agent-execution/t-1/status")
    assert assert_json_error(resp, 500) == "Internal server error"
    assert "sk-SECRET" not in resp.text
    assert session.get(backend.url + "/agents/list").status_code == 200


def test_keeps_serving_after_malformed_bodies(backend: LocalBackend, session: requests.Session) -> None:
    url = backend.url + "/agent-execution/agt-openai"
    assert "JSON" in assert_json_error(session.post(url, data=b"{oops", headers={"x-api-key": API_KEY}), 400)
    assert_json_error(session.post(url, data=b"\xff\xfe\x00garbage"), 400)
    assert session.post(url, json=create_body()).status_code == 200
    # chunked bodies (a generator) are read too
    chunked = session.post(url, data=(part for part in [b'{"input": ', b'{"text": "chunked"}}']))
    assert chunked.status_code == 200 and chunked.json()["input"]["text"] == "chunked"


def _raw_exchange(backend: LocalBackend, payload: bytes) -> bytes:
    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_keeps_serving_after_raw_garbage(backend: LocalBackend, session: requests.Session) -> None:
    reply = _raw_exchange(backend, b"\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert "detail" in json.loads(body)

    bad_length = _raw_exchange(
        backend, b"POST /agents/list HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"
    )
    assert bad_length.startswith(b"HTTP/1.1 400")
    assert _raw_exchange(backend, b"GET /\r\n\r\n").startswith(b"HTTP/1.1 400")  # HTTP/0.9 refused

    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    socket.create_connection((host, port), timeout=5).close()  # connect and hang up
    assert session.get(backend.url + "/agents/list").status_code == 200


def test_logs_go_to_the_library_logger_not_stderr(
    backend: LocalBackend,
    session: requests.Session,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="xpander_sync.local")
    session.get(backend.url + "/agents/list")
    _raw_exchange(backend, b"garbage\r\n\r\n")
    assert capfd.readouterr().err == ""
    records = [r for r in caplog.records if r.name.startswith("xpander_sync.local")]
    assert any("GET /agents/list" in r.getMessage() and r.levelno == logging.DEBUG for r in records)
    assert API_KEY not in caplog.text


def test_keep_alive_reuses_one_connection(backend: LocalBackend, session: requests.Session) -> None:
    session.get(backend.url + "/agents/list")
    session.get(backend.url + "/agents/nope")  # 404 keeps the connection
    session.post(backend.url + "/agent-execution/agt-openai", data=b"{bad")  # so does a 400
    session.post(backend.url + "/agent-execution/agt-openai", json=create_body())
    session.get(backend.url + "/metadata/default_llm_extra_headers")
    ports = {e["client_port"] for e in backend.requests_log}
    assert len(ports) == 1

    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/agents/agt-json", headers={"x-api-key": API_KEY})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
            assert resp.headers.get("Connection") != "close"
    finally:
        conn.close()


# -- persistence and concurrency ----------------------------------------------------------------------------


def test_data_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    with LocalBackend(db_path=db, api_key=API_KEY) as first, requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        task = s.post(first.url + "/agent-execution/agt-openai", json=create_body()).json()
        s.post(first.url + "/agent-execution/agt-openai/report_task", json=report_body())
        s.post(first.url + f"/agent-execution/{task['id']}/events/push", json=[{"type": "task_updated"}])
        first.complete_login(user_id="user-42", server_url=MCP_SERVER["url"], token="tok-persisted")
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    with LocalBackend(db_path=db, api_key=API_KEY) as second, requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        assert second.url  # a new port is fine
        assert s.get(f"{second.url}/agent-execution/{task['id']}/status").json() == task
        assert [r["id"] for r in second.reports()] == ["ext-2026-0001"]
        assert len(second.tasks()) == 2 and len(second.events(task["id"])) == 1
        again = s.post(second.url + "/agent-execution/agt-openai/report_task", json=report_body()).json()
        assert again["id"] == "ext-2026-0001" and len(second.reports()) == 1
        token = s.post(second.url + "/mcp_auth/agt-mcp/user-42/get_token", json=MCP_SERVER).json()
        assert token == {"type": "token_ready", "data": {"access_token": "tok-persisted"}}


@pytest.mark.parametrize("db_path", [None, ":memory:"])
def test_private_temporary_database_is_removed(db_path: Any) -> None:
    backend = LocalBackend(db_path=db_path)
    path = Path(backend._store.path)
    assert path.exists()
    backend.stop()  # never started: stop still releases the store
    assert not path.exists()


def test_concurrent_reports_from_threads(backend: LocalBackend) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with requests.Session() as s:
                s.headers["x-api-key"] = API_KEY
                for i in range(25):
                    r = s.post(
                        backend.url + "/agent-execution/agt-openai/report_task",
                        json=report_body(id=f"thread-{n}-{i}"),
                        timeout=30,
                    )
                    assert r.status_code == 200, r.text
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r["id"] for r in backend.reports()}) == 200
    assert len(backend.tasks()) == 200


_PROCESS_SCRIPT = r"""
import sys
import requests
from xpander_sync.local import LocalBackend

db, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with LocalBackend(db_path=db) as backend, requests.Session() as session:
    for i in range(count):
        body = {"id": f"proc-{worker}-{i}", "input": f"question {i}", "llm_response": None,
                "tokens": {"completion_tokens": 1, "prompt_tokens": 2, "total_tokens": 3},
                "is_success": True, "result": "ok", "duration": 0.1, "used_tools": []}
        resp = session.post(backend.url + "/agent-execution/agt-openai/report_task", json=body, timeout=30)
        resp.raise_for_status()
"""


def test_concurrent_reports_from_processes(tmp_path: Path) -> None:
    """Four processes, each with its own LocalBackend on one SQLite file, report 25 tasks each."""
    db = tmp_path / "shared.db"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, str(db), str(n), "25"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    reader = LocalBackend(db_path=db)
    try:
        reports = reader.reports()
        assert len(reports) == 100
        assert {r["id"] for r in reports} == {f"proc-{w}-{i}" for w in range(4) for i in range(25)}
        assert len(reader.tasks()) == 100
    finally:
        reader.stop()

"""The platform's REST routes on the local backend (agents, tasks, reports, tools, events, metrics),
through real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import requests

from xpander_sync import errors
from xpander_sync.local import LocalBackend, ToolError
from xpander_sync.local._payloads import REPORT_KEYS, SESSIONS_DB_SUFFIX, TASK_FIELDS

from .conftest import LIST_ITEM_KEYS, ORG, assert_json_error, create_body, report_body

# -- agents ---------------------------------------------------------------------------------------------


def test_agents_list_items(backend: LocalBackend, session: requests.Session) -> None:
    resp = session.get(backend.url + "/agents/list")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    items = resp.json()
    assert [i["id"] for i in items] == [
        "agt-anthropic",
        "agt-features",
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


def test_agent_db_is_a_sqlite_file_next_to_the_store(backend: LocalBackend, session: requests.Session) -> None:
    db = session.get(backend.url + "/agents/agt-openai/db").json()
    assert db == {
        "id": "agt-openai",
        "name": "CRM Assistant",
        "organization_id": ORG,
        "connection_uri": {"uri": "sqlite:///" + backend._store.path + SESSIONS_DB_SUFFIX},
    }
    assert_json_error(session.get(backend.url + "/agents/agt-nope/db"), 404)


def test_default_llm_extra_headers(backend: LocalBackend, session: requests.Session) -> None:
    assert session.get(backend.url + "/metadata/default_llm_extra_headers").json() == {
        "X-Org-Trace": "local-trace"
    }
    with LocalBackend() as plain:
        assert requests.get(plain.url + "/metadata/default_llm_extra_headers", timeout=5).json() == {}


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


def test_tool_error_is_the_library_error() -> None:
    assert ToolError is errors.ToolError  # re-exported by xpander_sync.local for tool handlers
    error = ToolError(422, "contact_id is required")
    assert (error.status_code, error.detail, str(error)) == (422, "contact_id is required", "contact_id is required")


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

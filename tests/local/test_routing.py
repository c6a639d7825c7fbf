"""Routing and dispatch of the local backend: API key, request log, unknown routes and methods, internal
errors as JSON (through real HTTP on loopback), and the routing table and body parsing on their own."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from xpander_sync.local import LocalBackend
from xpander_sync.local._routing import Router, parse_body

from .conftest import API_KEY, assert_json_error, create_body

# -- auth, request log, routing errors ------------------------------------------------------------------


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


# -- the routing table and body parsing, without a server ----------------------------------------------------


def test_router_first_match_wins_and_lists_allowed_methods() -> None:
    router = Router()
    router.add("GET", "/agents/list", lambda req: (200, "list"))
    router.add("GET", "/agents/{agent_id}", lambda req: (200, "one"))
    router.add("DELETE", "/agents/{agent_id}", lambda req: (200, "gone"), auth=False)

    route, params, allowed = router.match("GET", "/agents/list")
    assert route is not None and route.handler(None) == (200, "list") and params == {} and allowed == []
    route, params, _ = router.match("GET", "/agents/a%2Fb%20c")
    assert route is not None and route.handler(None) == (200, "one") and params == {"agent_id": "a/b c"}
    route, _, _ = router.match("DELETE", "/agents/x")
    assert route is not None and route.auth is False
    assert router.match("POST", "/agents/x") == (None, {}, ["DELETE", "GET"])
    assert router.match("GET", "/agents/x/y") == (None, {}, [])  # a parameter is one path segment


def test_parse_body() -> None:
    assert parse_body(b"") == (None, True)
    assert parse_body(b"  \r\n") == (None, True)
    assert parse_body(b'{"a": [1]}') == ({"a": [1]}, True)
    assert parse_body(b"{oops") == ("{oops", False)
    assert parse_body(b"\xff\xfe") == ("\ufffd\ufffd", False)

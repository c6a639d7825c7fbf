"""The local backend's tool approvals, custom LLM endpoint and LLM gateway route (``local/_approvals.py``)."""

from __future__ import annotations

from typing import Any

import requests

from xpander_sync.local import LocalBackend
from xpander_sync.testing import make_agent

from .conftest import API_KEY, assert_json_error

TOOL = {"id": "Gated", "name": "Gated", "method": "GET", "path": "/g", "parameters": {"type": "object"}}


def _gated(backend: LocalBackend, **rule: Any) -> None:
    backend.add_agent(make_agent("agt-ap", tools=[TOOL], _local_approvals={"rules": [dict(tool="Gated", **rule)]}))
    backend.register_tool("Gated", lambda payload, headers: {"ran": True})


def _call(backend: LocalBackend, session: requests.Session, task: str = "t-1") -> Any:
    return session.post(f"{backend.url}/agents/agt-ap/operations/Gated", json={}, headers={"x-execution-id": task})


def test_a_gated_call_is_held_then_runs_once_after_the_approval(backend, session) -> None:
    _gated(backend, self_approve=True, wait_seconds=20, decision="approve", decide_after_polls=2, message="Ask Bob")
    held = _call(backend, session).json()
    assert held == {"type": "approval_required", "self_approve": True, "request_id": held["request_id"],
                    "wait_seconds": 20, "message": "Ask Bob"}
    assert backend.tool_calls() == []  # not run
    url = f"{backend.url}/agents/agt-ap/tool-approvals/{held['request_id']}"
    assert session.get(url).json() == {"request_id": held["request_id"], "settled": False}
    assert session.get(url).json() == {"request_id": held["request_id"], "settled": True, "approved": True}
    assert _call(backend, session).json() == {"ran": True}
    assert _call(backend, session).json()["type"] == "approval_required"  # the approval was for one call
    assert _call(backend, session, task="t-2").json()["type"] == "approval_required"  # and for that task


def test_a_rejected_request_says_why_and_the_call_stays_held(backend, session) -> None:
    _gated(backend, self_approve=True, decision="reject", message="Frozen")
    held = _call(backend, session).json()
    answer = session.get(f"{backend.url}/agents/agt-ap/tool-approvals/{held['request_id']}").json()
    assert answer == {"request_id": held["request_id"], "settled": True, "approved": False, "message": "Frozen"}
    assert _call(backend, session).json()["type"] == "approval_required"


def test_pending_never_settles_and_decide_settles_it(backend, session) -> None:
    _gated(backend, decision="pending")
    held = _call(backend, session).json()
    assert held["self_approve"] is False and held["wait_seconds"] == 60
    url = f"{backend.url}/agents/agt-ap/tool-approvals/{held['request_id']}"
    assert session.get(url).json()["settled"] is False
    backend._approvals.decide(held["request_id"], True)
    assert session.get(url).json()["approved"] is True
    assert _call(backend, session).json() == {"ran": True}


def test_unknown_requests_and_other_agents_are_404(backend, session) -> None:
    _gated(backend)
    assert_json_error(session.get(f"{backend.url}/agents/agt-ap/tool-approvals/apr-nope"), 404)
    held = _call(backend, session).json()
    assert_json_error(session.get(f"{backend.url}/agents/agt-openai/tool-approvals/{held['request_id']}"), 404)


def test_ungated_tools_run_and_preflights_pass(backend, session) -> None:
    _gated(backend)
    other = session.post(f"{backend.url}/agents/agt-openai/operations/XpanderCrmSearchContacts", json={})
    assert other.status_code == 200 and "type" not in other.json()
    pre = session.post(f"{backend.url}/agents/agt-ap/operations/Gated", json={}, headers={"x-preflight-check": "true"})
    assert pre.json() == {"ran": True}


def test_check_holds_what_a_rule_names(backend, session) -> None:
    _gated(backend, self_approve=True)
    url = f"{backend.url}/agents/agt-ap/tool-approvals/check"
    body = {"execution_id": "t-1", "operation_id": "Gated", "tool_name": "gated", "payload": {}}
    assert session.post(url, json=body).json()["type"] == "approval_required"
    assert session.post(url, json=dict(body, operation_id="Other", tool_name="other")).json() == {"type": "allowed"}
    assert_json_error(session.post(url, json={"execution_id": "t"}), 400)


def test_the_custom_llm_endpoint_names_the_agents_provider(backend, session) -> None:
    answer = session.post(f"{backend.url}/agents/agt-anthropic/custom-llm-endpoint/t-9")
    assert answer.json() == {"provider": "anthropic", "token": "local-llm-t-9"}
    backend.add_agent(make_agent("agt-off", _local_custom_llm=False))
    assert_json_error(session.post(f"{backend.url}/agents/agt-off/custom-llm-endpoint/t-9"), 404)


def test_the_gateway_route_is_the_llm_proxy_for_agents_that_ask(backend, session) -> None:
    assert_json_error(session.post(f"{backend.url}/agents/agt-openai/llm-gateway-route/t-9"), 404)
    backend.add_agent(make_agent("agt-gw", _local_llm_gateway=True))
    answer = session.post(f"{backend.url}/agents/agt-gw/llm-gateway-route/t-9").json()
    assert answer == {"base_url": backend.llm_proxy_url("openai"), "token": "local-gateway-t-9"}
    assert "_local_llm_gateway" not in session.get(f"{backend.url}/agents/agt-gw").json()


def test_the_routes_need_the_api_key(backend) -> None:
    assert requests.post(f"{backend.url}/agents/agt-openai/custom-llm-endpoint/t-1", timeout=5).status_code == 401
    assert API_KEY


def test_a_bad_decide_after_polls_is_a_clear_error_naming_the_field(backend, session) -> None:
    _gated(backend, decision="approve", decide_after_polls="soon")
    detail = assert_json_error(_call(backend, session), 500)  # was a bare 500 from int("soon")
    assert "decide_after_polls" in detail and "'soon'" in detail and "Gated" in detail
    _gated(backend, decision="approve", decide_after_polls="2")  # a number in a string is still fine
    held = _call(backend, session).json()
    url = f"{backend.url}/agents/agt-ap/tool-approvals/{held['request_id']}"
    assert session.get(url).json()["settled"] is False and session.get(url).json()["approved"] is True


def test_requests_and_grants_are_bounded(backend, session, monkeypatch) -> None:
    from xpander_sync.local import _approvals

    monkeypatch.setattr(_approvals, "MAX_REQUESTS", 3)
    _gated(backend, decision="approve")
    first = _call(backend, session, task="t-0").json()["request_id"]
    assert session.get(f"{backend.url}/agents/agt-ap/tool-approvals/{first}").json()["approved"] is True
    assert backend._approvals._granted  # one call let through, not used yet
    assert _call(backend, session, task="t-0").json() == {"ran": True}
    assert not backend._approvals._granted  # used up: dropped
    held = [_call(backend, session, task=f"t-{i}").json()["request_id"] for i in range(1, 4)]
    assert len(backend._approvals._requests) == 3
    assert first not in backend._approvals._requests  # the settled, answered request went first
    for _ in range(5):
        _call(backend, session, task="t-x")
    assert len(backend._approvals._requests) == 3  # then the oldest
    assert held[0] not in backend._approvals._requests

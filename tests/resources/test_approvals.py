"""``resources.Approvals``: a tool call's approval request, polled; and the pre-call check."""

from __future__ import annotations

import pytest
import responses

from xpander_sync import Configuration
from xpander_sync.errors import InvalidInputError, ServerError
from xpander_sync.resources import Approvals
from xpander_sync.resources.approvals import check_body

from ..conftest import BASE, SENTINEL_KEY, body_of


def test_get_is_one_get_with_a_10_s_limit_and_no_retry(mocked, config: Configuration, monkeypatch) -> None:
    url = f"{BASE}/agents/agt-1/tool-approvals/apr-1"
    mocked.get(url, json={"settled": True, "approved": True})
    seen = {}
    real = Approvals(config)._transport.request

    def spy(method, path, **kw):
        seen.update(kw)
        return real(method, path, **kw)

    approvals = Approvals(config)
    monkeypatch.setattr(approvals._transport, "request", spy)
    assert approvals.get("agt-1", "apr-1") == {"settled": True, "approved": True}
    assert mocked.calls[0].request.body is None and mocked.calls[0].request.headers["x-api-key"] == SENTINEL_KEY
    assert seen["timeout"] == (10.0, 10.0) and seen["retry"].max_retries == 0


def test_get_does_not_retry_a_5xx(mocked, config: Configuration) -> None:
    mocked.get(f"{BASE}/agents/agt-1/tool-approvals/apr-1", status=503, json={"detail": "down"})
    with pytest.raises(ServerError):
        Approvals(config).get("agt-1", "apr-1")
    assert len(mocked.calls) == 1


def test_check_posts_the_reference_body(mocked, config: Configuration) -> None:
    mocked.post(f"{BASE}/agents/agt-1/tool-approvals/check", json={"type": "allowed"})
    answer = Approvals(config).check("agt-1", "task-1", "OpSearch", "search", {"q": "x"})
    assert answer == {"type": "allowed"}
    assert body_of(mocked.calls[0]) == {"execution_id": "task-1", "operation_id": "OpSearch", "tool_name": "search",
                                        "payload": {"q": "x"}}
    assert check_body(None, "o", "t", {}) == {"execution_id": None, "operation_id": "o", "tool_name": "t",
                                              "payload": {}}


def test_ids_are_checked(config: Configuration) -> None:
    with responses.RequestsMock():
        with pytest.raises(InvalidInputError, match="request_id"):
            Approvals(config).get("agt-1", "../x")
        with pytest.raises(InvalidInputError, match="execution_id"):
            Approvals(config).check("agt-1", "a/b", "o", "t", {})

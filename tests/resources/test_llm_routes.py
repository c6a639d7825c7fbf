"""``resources.LLMRoutes``: a task's custom LLM endpoint and LLM gateway route; the LLM proxy's URL."""

from __future__ import annotations

import pytest

from xpander_sync import Configuration
from xpander_sync.errors import InvalidInputError, ServerError
from xpander_sync.resources import LLMRoutes

from ..conftest import BASE, SENTINEL_KEY


def _spy(monkeypatch, routes: LLMRoutes) -> dict:
    seen: dict = {}
    real = routes._transport.request

    def spy(method, path, **kw):
        seen.update(kw)
        return real(method, path, **kw)

    monkeypatch.setattr(routes._transport, "request", spy)
    return seen


def test_custom_endpoint_posts_no_body_once_within_8_s(mocked, config: Configuration, monkeypatch) -> None:
    mocked.post(f"{BASE}/agents/agt-1/custom-llm-endpoint/task-1", json={"provider": "openai", "token": "t"})
    routes = LLMRoutes(config)
    seen = _spy(monkeypatch, routes)
    assert routes.custom_endpoint("agt-1", "task-1") == {"provider": "openai", "token": "t"}
    request = mocked.calls[0].request
    assert request.body is None and request.headers["x-api-key"] == SENTINEL_KEY
    assert "Content-Type" not in request.headers
    assert seen["timeout"] == (8.0, 8.0) and seen["retry"].max_retries == 0 and "json" not in seen


def test_custom_endpoint_errors_reach_the_caller_once(mocked, config: Configuration) -> None:
    mocked.post(f"{BASE}/agents/agt-1/custom-llm-endpoint/task-1", status=502, json={"detail": "x"})
    with pytest.raises(ServerError):
        LLMRoutes(config).custom_endpoint("agt-1", "task-1")
    assert len(mocked.calls) == 1


def test_gateway_route_within_5_s_and_404_is_none(mocked, config: Configuration, monkeypatch) -> None:
    url = f"{BASE}/agents/agt-1/llm-gateway-route/task-1"
    mocked.post(url, json={"base_url": "https://gw", "token": "g"})
    mocked.post(url, status=404, json={"detail": "none"})
    routes = LLMRoutes(config)
    seen = _spy(monkeypatch, routes)
    assert routes.gateway_route("agt-1", "task-1") == {"base_url": "https://gw", "token": "g"}
    assert seen["timeout"] == (5.0, 5.0) and mocked.calls[0].request.body is None
    assert routes.gateway_route("agt-1", "task-1") is None


def test_proxy_url_is_the_plain_base_url_and_checks_the_provider(config: Configuration) -> None:
    assert LLMRoutes(config).proxy_url("anthropic") == f"{BASE}/llm-proxy/anthropic"
    with pytest.raises(InvalidInputError):
        LLMRoutes(config).proxy_url("a/b")

"""The platform's LLM proxy route on the local backend, served by a mounted scripted model."""

from __future__ import annotations

import json

import requests

from xpander_sync.local import LocalBackend
from xpander_sync.local._routing import Router
from xpander_sync.testing import ScriptedModel, answer, call_tool

from .conftest import API_KEY


def test_a_path_tail_parameter_matches_the_rest_of_the_path_as_sent() -> None:
    router = Router()
    router.add("POST", "/llm-proxy/{provider}/{rest:path}", lambda req: (200, None))
    route, params, _ = router.match("POST", "/llm-proxy/open%2Dai/v1/chat/completions")
    assert route is not None and params == {"provider": "open-ai", "rest": "v1/chat/completions"}
    assert router.match("POST", "/llm-proxy/openai")[0] is None  # the tail needs its slash
    assert router.match("GET", "/llm-proxy/openai/v1/messages") == (None, {}, ["POST"])


def test_unmounted_proxy_answers_503_and_agents_are_served_as_stored(backend: LocalBackend) -> None:
    response = requests.post(backend.url + "/llm-proxy/openai/v1/chat/completions", json={}, timeout=5)
    assert response.status_code == 503 and "mount_llm" in response.json()["detail"]
    agent = requests.get(backend.url + "/agents/agt-openai", headers={"x-api-key": API_KEY}, timeout=5).json()
    assert agent["llm_api_base"] is None


def test_mounted_model_answers_each_provider_format_json_and_streamed(backend: LocalBackend) -> None:
    model = backend.mount_llm(ScriptedModel([call_tool("Echo", {"text": "hi"}), answer("done")]))
    assert backend.llm is model
    base = backend.llm_proxy_url("openai")
    assert base == backend.url + "/llm-proxy/openai"
    chat = requests.post(base + "/chat/completions", headers={"Authorization": "Bearer sk-proxy", "x-team": "t"},
                         json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "Echo"
    stream = requests.post(backend.llm_proxy_url("anthropic") + "/v1/messages", headers={"x-api-key": "sk-ant"},
                           json={"model": "claude", "max_tokens": 10, "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    assert stream.status_code == 200 and stream.headers["Content-Type"] == "text/event-stream"
    assert "message_stop" in stream.text and "text_delta" in stream.text
    first, second = model.requests
    assert (first.family, first.api_key, first.header("x-team")) == ("openai-chat", "sk-proxy", "t")
    assert first.path == "/llm-proxy/openai/chat/completions"
    assert (second.family, second.api_key, second.stream, second.reply_text) == ("anthropic", "sk-ant", True, "done")
    # the backend's request log masks the model key like any other secret header
    logged = [e for e in backend.requests_log if e["path"].startswith("/llm-proxy/")]
    assert [e["status"] for e in logged] == [200, 200]
    assert "sk-proxy" not in json.dumps(logged) and "sk-ant" not in json.dumps(logged)


def test_a_mounted_model_points_agents_without_their_own_endpoint_at_the_proxy(backend: LocalBackend) -> None:
    backend.mount_llm()
    backend.add_agent({"id": "agt-own", "version": 1, "model_provider": "anthropic",
                       "llm_api_base": "https://llm.example/v1"})
    get = lambda agent_id: requests.get(  # noqa: E731
        backend.url + f"/agents/{agent_id}", headers={"x-api-key": API_KEY}, timeout=5).json()
    assert get("agt-openai")["llm_api_base"] == backend.url + "/llm-proxy/openai"
    assert get("agt-anthropic")["llm_api_base"] == backend.url + "/llm-proxy/anthropic"
    assert get("agt-own")["llm_api_base"] == "https://llm.example/v1"  # its own endpoint is kept
    backend.unmount_llm()
    assert get("agt-openai")["llm_api_base"] is None

"""Feature 7, the LLM gateway and the custom LLM endpoint: a task's model routed through the platform.

Pure routing rules first; then the exact HTTP calls over every adapter (``responses``); then a real
turn per adapter on the local backend, whose model requests must arrive at the platform's LLM
proxy with the task's token and execution id; then the worker handing such a task to a handler.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest

from xpander_sync import Backend, Configuration, Task
from xpander_sync._redact import Secret
from xpander_sync.frameworks import get_adapter
from xpander_sync.frameworks._context import BuildContext
from xpander_sync.frameworks._llm import ModelSpec
from xpander_sync.frameworks.features.gateway import (
    Gateway,
    gateway_route,
    stays_direct,
    via_custom_endpoint,
    via_gateway,
)
from xpander_sync.local import LocalBackend
from xpander_sync.resources.tasks import task_save_body
from xpander_sync.testing import ScriptedModel, answer, make_agent

from ..conftest import BASE, SENTINEL_KEY
from .conftest import TASK_ID, make_task, require_framework
from .conftest import make_agent as fixture_agent
from .test_contract import DRIVERS, each_adapter
from .test_run_matrix import DRIVERS as RUN_DRIVERS

ENDPOINT = f"{BASE}/agents/agt-openai/custom-llm-endpoint/{TASK_ID}"
GATEWAY = {"base_url": "https://gw.example/", "token": "gw-TOKEN-9c1d"}


@pytest.fixture
def name(request: pytest.FixtureRequest, openai_env: str) -> str:
    """The adapter under test (``each_adapter``); skips when its framework is not installed."""
    require_framework(request.param)
    return str(request.param)


# -- pure rules -----------------------------------------------------------------------------------


def test_the_gateway_route_comes_from_the_payload_extension() -> None:
    assert gateway_route(make_task(payload_extension={"llm_gateway": GATEWAY})) == ("https://gw.example",
                                                                                    "gw-TOKEN-9c1d")
    assert gateway_route(make_task(payload_extension={"llm_gateway": {"base_url": "x"}})) is None
    assert gateway_route(make_task(payload_extension=None)) is None and gateway_route(None) is None


def test_the_model_stays_direct_when_the_agent_has_its_own_way() -> None:
    agent, task = fixture_agent(), make_task(payload_extension={"llm_gateway": GATEWAY})
    assert not stays_direct(agent, task)
    assert stays_direct(fixture_agent(llm_api_base="https://llm.example/v1"), task)
    assert stays_direct(fixture_agent(llm_credentials={"name": "k", "value": "sk-own"}), task)
    assert stays_direct(agent, make_task(payload_extension={"llm_gateway": GATEWAY, "llm_custom_provider": "x"}))
    oidc = fixture_agent(pre_auth_audiences=["a"], use_oidc_pre_auth_token_for_llm=True,
                         oidc_pre_auth_token_llm_audience="llm")
    assert stays_direct(oidc, make_task(payload_extension={"llm_gateway": GATEWAY},
                                        user_tokens={"oidc_tokens": {"llm": "oidc-tok"}}))


def test_the_gateway_wires() -> None:
    openai = via_gateway(ModelSpec("openai", "gpt-4.1", extra_headers={"X-Org": "1"}), "https://gw", "tok", "t-1")
    assert openai is not None and openai.base_url == "https://gw/v1" and openai.api_key == Secret("tok")
    assert openai.extra_headers == {"X-Org": "1", "x-xpander-api-key": "tok", "x-xpander-execution-id": "t-1"}
    assert openai.base_url_is_custom
    assert via_gateway(ModelSpec("openai", "ft:gpt-4.1:acme"), "https://gw", "t", None).model_id \
        == "openai::ft:gpt-4.1:acme"  # type: ignore[union-attr]
    claude = via_gateway(ModelSpec("anthropic", "claude-sonnet-4-6"), "https://gw", "t", None)
    assert claude is not None and claude.base_url == "https://gw" and claude.provider == "anthropic"
    bedrock = via_gateway(ModelSpec("amazon_bedrock", "us.anthropic.claude-sonnet-4-6"), "https://gw", "t", None)
    assert bedrock is not None and bedrock.provider == "anthropic" and bedrock.base_url == "https://gw"
    assert via_gateway(ModelSpec("amazon_bedrock", "amazon.nova-pro"), "https://gw", "t", None) is None
    assert via_gateway(ModelSpec("nebius", "x"), "https://gw", "t", None) is None
    assert "tok" not in repr(openai)


def test_the_custom_endpoint_spec_and_its_oidc_exception() -> None:
    spec = ModelSpec("openai", "gpt-4.1", api_key=Secret("sk-own"), extra_headers={"X-Org": "1"})
    routed = via_custom_endpoint(spec, "https://p.example/llm-proxy/openai", "ep-tok", "t-1", keep_key=False)
    assert routed.base_url == "https://p.example/llm-proxy/openai" and routed.api_key == Secret("ep-tok")
    assert routed.extra_headers == {"X-Org": "1", "x-xpander-execution-id": "t-1"}
    assert via_custom_endpoint(spec, "u", "ep-tok", "t-1", keep_key=True).api_key == Secret("sk-own")


def test_the_gateway_token_never_leaves_for_the_platform_nor_shows() -> None:
    task = make_task(payload_extension={"llm_gateway": GATEWAY, "keep": 1})
    assert "gw-TOKEN-9c1d" not in repr(task)
    assert task_save_body(task)["payload_extension"] == {"keep": 1}
    assert task.payload_extension["llm_gateway"] == GATEWAY  # the run still has it


# -- the exact calls, over every adapter ----------------------------------------------------------


def _spec(name: str, config: Configuration, task: Task, agent: Any = None) -> ModelSpec:
    context = BuildContext(Backend(config)._transport)
    adapter = get_adapter(name)(context, task, None)
    return adapter.model_spec(agent or fixture_agent())


def _calls(mocked: Any) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]


@each_adapter()
def test_a_custom_provider_asks_the_endpoint_once_and_routes_the_model(mocked, config, name):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    mocked.post(ENDPOINT, json={"provider": "anthropic", "token": "ep-TOKEN-77"})
    task = make_task(payload_extension={"llm_custom_provider": "anthropic"})
    spec = _spec(name, config, task)
    assert _calls(mocked) == ["GET /metadata/default_llm_extra_headers",
                              f"POST /agents/agt-openai/custom-llm-endpoint/{TASK_ID}"]
    post = mocked.calls[1].request
    assert post.body in (None, b"") and post.headers["x-api-key"] == SENTINEL_KEY
    assert spec.base_url == f"{BASE}/llm-proxy/anthropic" and spec.api_key == Secret("ep-TOKEN-77")
    assert spec.extra_headers["x-xpander-execution-id"] == TASK_ID
    assert "ep-TOKEN-77" not in repr(spec)
    # cached for the task: a second build asks nothing more
    again = _spec(name, config, task)
    assert again.base_url == spec.base_url and len(mocked.calls) == 2


@each_adapter()
def test_the_custom_endpoint_fails_open(mocked, config, name):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    mocked.post(ENDPOINT, status=500, json={"detail": "down"})
    task = make_task(payload_extension={"llm_custom_provider": "anthropic"})
    spec = _spec(name, config, task)
    assert spec.base_url is None and spec.api_key == Secret("sk-env-openai")
    assert len([c for c in mocked.calls if c.request.url == ENDPOINT]) == 1  # one attempt, no retry


@each_adapter()
def test_an_answer_without_provider_and_token_is_ignored(mocked, config, name):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    mocked.post(ENDPOINT, json={"provider": "openai"})
    spec = _spec(name, config, make_task(payload_extension={"llm_custom_provider": "x"}))
    assert spec.base_url is None


@each_adapter()
def test_the_gateway_costs_no_request_and_routes_openai(mocked, config, name):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    spec = _spec(name, config, make_task(payload_extension={"llm_gateway": GATEWAY}))
    assert _calls(mocked) == ["GET /metadata/default_llm_extra_headers"]
    assert spec.base_url == "https://gw.example/v1" and spec.api_key == Secret("gw-TOKEN-9c1d")
    assert spec.extra_headers["x-xpander-api-key"] == "gw-TOKEN-9c1d"
    get_adapter(name)(BuildContext(Backend(config)._transport), None, None).model(spec)  # the adapter builds it


@each_adapter()
def test_no_routing_setting_no_request(mocked, config, name):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    spec = _spec(name, config, make_task(payload_extension={"other": 1}))
    assert _calls(mocked) == ["GET /metadata/default_llm_extra_headers"] and spec.base_url is None


def test_tool_calls_never_carry_the_gateway_token(mocked, config):
    require_framework("agno")
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    mocked.post(f"{BASE}/agents/agt-openai/operations/XpanderCrmSearchContacts", json={"ok": True})
    mocked.post(f"{BASE}/agent-execution/{TASK_ID}/events/push", json={})
    mocked.get(f"{BASE}/agents/agt-openai/db", json={"connection_uri": {"uri": "postgresql://u:p@h/x"}})
    task = make_task(payload_extension={"llm_gateway": GATEWAY, "tenant": "acme"})
    context = BuildContext(Backend(config)._transport)
    args = get_adapter("agno").build(fixture_agent(), task, None, None, None, context)
    DRIVERS["agno"].call_tool(args["tools"][0], {"query_params": {"q": "ada"}})
    from xpander_sync.frameworks._toolcall import flush_activity

    assert flush_activity(context.transport, timeout=10)
    for call in mocked.calls:
        assert "gw-TOKEN-9c1d" not in (call.request.body or b"").decode() if isinstance(call.request.body, bytes) \
            else "gw-TOKEN-9c1d" not in (call.request.body or "")
    body = json.loads(next(c.request.body for c in mocked.calls if "/operations/" in c.request.url))
    assert body["tenant"] == "acme" and "llm_gateway" not in body


def test_gateway_is_a_registered_feature() -> None:
    from xpander_sync.frameworks.features import FEATURES

    assert Gateway in FEATURES


# -- a real turn on the local backend, per adapter ------------------------------------------------


@pytest.fixture
def local(clean_environ: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")  # never sent: the route's token is
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-gw") as backend:
        yield backend


WIRES = [pytest.param("openai", "gpt-4.1", id="openai"), pytest.param("anthropic", "claude-sonnet-4-6", id="anthropic")]


def _turn(local: LocalBackend, name: str, extension: Dict[str, Any], provider: str = "openai",
          model_name: str = "gpt-4.1") -> Any:
    local.add_agent(make_agent("agt-gw", "Gateway", framework=name, output_format="text", model_provider=provider,
                               model_name=model_name))
    model = local.mount_llm(ScriptedModel(), point_agents=False)  # the route must come from the task
    model.script(answer("routed"))
    backend = Backend(Configuration(api_key="xpk-gw", base_url=local.url, organization_id="local-org"))
    task = backend.invoke_agent("agt-gw", "hello", tool_call_payload_extension=extension)
    args = backend.get_args(agent_id="agt-gw", task=task)
    final = RUN_DRIVERS[name].run(args, False)
    assert "routed" in final
    return model, task


@each_adapter()
@pytest.mark.parametrize("provider,model_name", WIRES)
def test_run_a_custom_provider_task_talks_to_the_llm_proxy_with_its_token(local, name, provider, model_name):
    model, task = _turn(local, name, {"llm_custom_provider": provider}, provider, model_name)
    assert model.requests, "no model request"
    for request in model.requests:
        assert request.path.startswith(f"/llm-proxy/{provider}/")
        assert request.family == ("anthropic" if provider == "anthropic" else "openai-chat")
        assert request.api_key == f"local-llm-{task.id}"
        assert request.header("x-xpander-execution-id") == task.id
    assert [r["path"] for r in local.requests_log if "custom-llm-endpoint" in r["path"]] == [
        f"/agents/agt-gw/custom-llm-endpoint/{task.id}"]


@each_adapter()
@pytest.mark.parametrize("provider,model_name", WIRES)
def test_run_a_gateway_task_talks_to_the_gateway_with_its_token(local, name, provider, model_name):
    model, task = _turn(local, name, {"llm_gateway": {"base_url": local.llm_proxy_url(provider),
                                                      "token": "gw-local-1"}}, provider, model_name)
    assert model.requests, "no model request"
    for request in model.requests:
        assert request.path.startswith(f"/llm-proxy/{provider}/v1/")
        assert request.family == ("anthropic" if provider == "anthropic" else "openai-chat")
        assert request.api_key == "gw-local-1" and request.header("x-xpander-api-key") == "gw-local-1"
        assert request.header("x-xpander-execution-id") == task.id
    patches = [r for r in local.requests_log if r["method"] == "PATCH"]
    assert all("gw-local-1" not in json.dumps(r.get("body")) for r in patches)


# -- the worker -----------------------------------------------------------------------------------


def test_the_worker_hands_the_task_with_its_route_and_get_args_goes_through_the_gateway(local):
    require_framework("agno")
    from xpander_sync.worker import Worker

    local.add_agent(make_agent("agt-gw", "Gateway", framework="agno", output_format="text"))
    config = Configuration(api_key="xpk-gw", base_url=local.url, organization_id="local-org")
    seen: List[Any] = []

    def handler(task: Task) -> Task:
        args = Backend(config).get_args(task=task, agent_id=task.agent_id)
        seen.append((task.payload_extension, args["model"]))
        task.result = "done"
        return task

    worker = Worker(handler, configuration=config, agent_id="agt-gw", heartbeat_interval=0.1)
    worker.start()
    try:
        assert worker.wait_registered(5)
        route = {"base_url": "https://gw.example", "token": "gw-WORKER-5"}
        task = Backend(config).invoke_agent("agt-gw", "hi", tool_call_payload_extension={"llm_gateway": route})
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        worker.join(5)
    (extension, model), = seen
    assert extension["llm_gateway"] == route
    assert str(model.base_url) == "https://gw.example/v1" and str(model.api_key) == "gw-WORKER-5"
    headers = getattr(model, "extra_headers", None) or getattr(model, "default_headers", None) or {}
    assert headers["x-xpander-api-key"] == "gw-WORKER-5" and headers["x-xpander-execution-id"] == task.id
    assert "gw-WORKER-5" not in repr(model)
    saved = [r for r in local.requests_log if r["method"] == "PATCH" and task.id in r["path"]]
    assert saved and all("gw-WORKER-5" not in json.dumps(r.get("body")) for r in saved)

"""BuildContext: caches, org headers, DB URI, tool calls, MCP token resolution and the OAuth flow."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
import responses

from xpander_sync import AuthenticationRequiredError, Configuration, ResponseDecodeError, RetryPolicy
from xpander_sync._cache import TTLCache
from xpander_sync._converter import structure
from xpander_sync.frameworks._context import BuildContext, sanitize_headers
from xpander_sync.handlers import clear_handlers, get_registered_handlers, on_auth_event
from xpander_sync.models import Agent, MCPServerDetails, Task
from xpander_sync.transport import Transport

from ..conftest import BASE, body_of, load_fixture

TOKEN_ROUTE = f"{BASE}/mcp_auth/agt-openai/user-42/get_token"
PUSH_ROUTE = f"{BASE}/agent-execution/3f7c2a9e-8d41-4c1b-9e0a-6b5d2f1e7a44/events/push"


@pytest.fixture(autouse=True)
def no_handlers():
    clear_handlers()
    yield
    clear_handlers()


@pytest.fixture
def context(config):
    return BuildContext(Transport(config, sleep=lambda s: None), sleep=lambda s: None)


def mcp_agent() -> Agent:
    return structure(load_fixture("agent_mcp"), Agent)


def a_task(**changes) -> Task:
    data = load_fixture("task_status")
    data["user_tokens"] = None
    data.update(changes)
    return structure(data, Task)


# -- caches ------------------------------------------------------------------------------


def test_ttl_cache_expires_and_single_flights():
    now = [0.0]
    cache = TTLCache(5, clock=lambda: now[0])
    calls = []
    assert cache.get_or_load("k", lambda: calls.append(1) or "v1") == "v1"
    assert cache.get_or_load("k", lambda: calls.append(1) or "v2") == "v1"
    now[0] = 6
    assert cache.get_or_load("k", lambda: calls.append(1) or "v3") == "v3"
    assert len(calls) == 2
    assert TTLCache(0).get_or_load("k", lambda: "fresh") == "fresh" and len(TTLCache(0)) == 0

    slow = TTLCache(60)
    loads = []

    def loader():
        loads.append(1)
        time.sleep(0.05)
        return "value"

    threads = [threading.Thread(target=slow.get_or_load, args=("same", loader)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1  # 20 concurrent cold callers, one load


def test_ttl_cache_does_not_cache_errors_and_is_bounded():
    cache = TTLCache(60, maxsize=2)

    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        cache.get_or_load("k", boom)
    assert cache.get_or_load("k", lambda: 1) == 1
    cache.put("a", 2)
    cache.put("b", 3)
    assert len(cache) == 2 and cache.get("k") is None


def test_agent_payload_is_cached_but_each_call_gets_a_fresh_object(mocked, context):
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    first = context.load_agent("agt-openai")
    first.name = "changed by the caller"
    second = context.load_agent("agt-openai")
    assert second.name == "CRM Assistant" and len(mocked.calls) == 1
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    context.load_agent("agt-openai", version=3)  # another version is another key
    assert mocked.calls[1].request.headers["x-agent-version"] == "3"


def test_load_agents_keeps_order(mocked, context):
    mocked.get(f"{BASE}/agents/agt-anthropic", json=load_fixture("agent_anthropic"))
    mocked.get(f"{BASE}/agents/agt-sub-b", json=load_fixture("agent_sub_b"))
    assert [a.id for a in context.load_agents(["agt-anthropic", "agt-sub-b"])] == ["agt-anthropic", "agt-sub-b"]


# -- metadata ----------------------------------------------------------------------------


def test_org_headers_are_sanitised_and_cached(mocked, context):
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers",
               json={"X-Org-Trace": " fake ", "X-Empty-Dropped": "", "": "x", "X-None": None, "X-Num": 5})
    assert context.org_llm_headers() == {"X-Org-Trace": "fake", "X-Num": "5"}
    assert context.org_llm_headers() == {"X-Org-Trace": "fake", "X-Num": "5"}
    assert len(mocked.calls) == 1
    assert sanitize_headers(["not", "a", "dict"]) == {}


def test_org_headers_fail_open(mocked, config, caplog):
    cfg = Configuration(api_key="k", base_url=BASE, retry=RetryPolicy(max_retries=0))
    context = BuildContext(Transport(cfg))
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={"detail": "down"}, status=500)
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        assert context.org_llm_headers() == {}
    assert "organization LLM headers unavailable" in caplog.text


def test_db_uri_cached_and_missing_uri_is_typed(mocked, context):
    agent = structure(load_fixture("agent_openai"), Agent)
    mocked.get(f"{BASE}/agents/agt-openai/db", json={"id": "d", "name": "n", "connection_uri": {"uri": "postgresql://u:p@h/db"}})
    assert context.db_connection_uri(agent) == "postgresql://u:p@h/db"
    assert context.db_connection_uri(agent) == "postgresql://u:p@h/db"
    assert len(mocked.calls) == 1
    other = structure(load_fixture("agent_sub_b"), Agent)
    mocked.get(f"{BASE}/agents/agt-sub-b/db", json={"id": "d", "name": "n", "connection_uri": None})
    with pytest.raises(ResponseDecodeError, match="connection_uri"):
        context.db_connection_uri(other)


# -- tools -------------------------------------------------------------------------------


def test_invoke_tool_uses_this_calls_agent_and_task(mocked, context):
    agent = structure(load_fixture("agent_openai"), Agent)
    task = a_task()
    mocked.post(f"{BASE}/agents/agt-openai/operations/XpanderCrmSearchContacts", json={"contacts": []})
    result = context.invoke_tool(agent, task, "XpanderCrmSearchContacts", {"query_params": {"q": "ada"}})
    assert result.is_success and result.result == {"contacts": []} and result.task_id == task.id
    (call,) = mocked.calls
    assert call.request.headers["x-agent-version"] == "3"
    assert call.request.headers["x-execution-id"] == task.id
    assert body_of(call) == {"query_params": {"q": "ada"}}


def test_invoke_tool_without_task_and_errors_become_results(mocked, context):
    agent = structure(load_fixture("agent_openai"), Agent)
    mocked.post(f"{BASE}/agents/agt-openai/operations/T", json={"detail": "bad payload"}, status=422)
    result = context.invoke_tool(agent, None, "T", {})
    assert result.is_error and result.status_code == 422 and result.result == "bad payload"
    assert "x-execution-id" not in mocked.calls[0].request.headers


# -- MCP token resolution ----------------------------------------------------------------


def test_static_api_key_and_headers(context):
    agent = mcp_agent()
    server = MCPServerDetails(url="https://mcp.other/x", auth_type="api_key", api_key="static-key",
                              headers={"X-Static": "1"})
    assert context.mcp_headers(agent, None, server) == {"X-Static": "1", "Authorization": "Bearer static-key"}
    assert server.headers == {"X-Static": "1"}  # not mutated


def test_user_token_string_and_dict(context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    as_string = a_task(user_tokens={"gi-mcp-1": "user-bearer"})
    assert context.mcp_headers(agent, as_string, server) == {"Authorization": "Bearer user-bearer"}
    as_dict = a_task(user_tokens={"gi-mcp-1": {"X-Custom-Auth": "abc"}})
    assert context.mcp_headers(agent, as_dict, server) == {"X-Custom-Auth": "abc"}
    assert server.api_key is None and server.headers == {}  # nothing persisted on the agent


def test_oidc_token_wins(context):
    agent = mcp_agent()
    agent.pre_auth_audiences = ["api://mcp"]
    agent.oidc_pre_auth_token_mcp_audience = "api://mcp"
    (server,) = agent.mcp_servers
    task = a_task(user_tokens={"oidc_tokens": {"api://mcp": "oidc-tok"}})
    assert context.mcp_headers(agent, task, server) == {"Authorization": "Bearer oidc-tok"}


def test_oauth_needs_a_task_user(context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    with pytest.raises(AuthenticationRequiredError, match="Notion"):
        context.mcp_headers(agent, None, server)


def test_oauth_flow_login_then_token(mocked, context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    task = a_task()
    received = []

    @on_auth_event
    def registered(agent_, task_, event):
        received.append(("registered", agent_.id, task_.id, event))

    def per_call(agent_, task_, event):
        received.append(("per_call", agent_.id, task_.id, event))

    context.auth_events_callback = per_call
    mocked.post(TOKEN_ROUTE, json=load_fixture("mcp_login_required"))
    mocked.post(PUSH_ROUTE, json={})
    mocked.post(TOKEN_ROUTE, json={"type": "login_required", "data": {}})
    mocked.post(TOKEN_ROUTE, json=load_fixture("mcp_token_ready"))
    mocked.post(PUSH_ROUTE, json={})
    headers = context.mcp_headers(agent, task, server)
    assert headers == {"Authorization": "Bearer ntn_oauth_9b1d0c7e"}

    urls = [c.request.url for c in mocked.calls]
    assert urls[0] == TOKEN_ROUTE + f"?execution_id={task.id}&generate_login_url=true"
    assert urls[2] == TOKEN_ROUTE + f"?execution_id={task.id}&generate_login_url=false"
    token_body = body_of(mocked.calls[0])
    assert token_body["url"] == "https://mcp.notion.example/mcp" and token_body["client_secret"] is None
    pushed = body_of(mocked.calls[1])
    assert isinstance(pushed, list) and len(pushed) == 1
    assert pushed[0]["type"] == "auth_event" and pushed[0]["task_id"] == task.id
    assert pushed[0]["data"]["data"]["url"].startswith("https://auth.notion.example/oauth/authorize")
    assert body_of(mocked.calls[4])[0]["data"]["data"]["access_token"] == "REDACTED"

    # two events (login required, then token ready), each delivered once to each handler
    assert [(who, e.data["type"]) for who, _, _, e in received] == [
        ("per_call", "login_required"), ("registered", "login_required"),
        ("per_call", "token_ready"), ("registered", "token_ready"),
    ]
    assert all(a == "agt-mcp" and t == task.id for _, a, t, _ in received)
    login = received[0][3]
    assert login.data["data"]["url"] == load_fixture("mcp_login_required")["data"]["url"]
    assert "ntn_oauth" not in repr(received)


def test_handler_registered_both_ways_runs_once_and_raising_handler_does_not_stop_others(mocked, context, caplog):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    calls = []

    @on_auth_event
    def both(agent_, task_, event):
        calls.append("both")

    @on_auth_event()
    def broken(agent_, task_, event):
        raise RuntimeError("handler bug")

    @on_auth_event
    async def async_handler(agent_, task_, event):
        await asyncio.sleep(0)
        calls.append("async")

    context.auth_events_callback = both
    mocked.post(TOKEN_ROUTE, json=load_fixture("mcp_token_ready"))
    mocked.post(PUSH_ROUTE, json={})
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        context.mcp_headers(agent, a_task(), server)
    assert calls == ["both", "async"]
    assert "raised RuntimeError" in caplog.text
    assert get_registered_handlers() == [both, broken, async_handler]


def test_second_user_runs_its_own_flow(mocked, context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    mocked.post(TOKEN_ROUTE, json={"type": "token_ready", "data": {"access_token": "tok-42"}})
    mocked.post(PUSH_ROUTE, json={})
    other_route = f"{BASE}/mcp_auth/agt-openai/user-7/get_token"
    mocked.post(other_route, json={"type": "token_ready", "data": {"access_token": "tok-7"}})
    mocked.post(PUSH_ROUTE, json={})
    first = context.mcp_headers(agent, a_task(), server)
    other_task = a_task()
    other_task.input.user.id = "user-7"
    second = context.mcp_headers(agent, other_task, server)
    assert first["Authorization"] == "Bearer tok-42" and second["Authorization"] == "Bearer tok-7"


def test_token_not_shared_across_agents_when_configured(mocked, context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    server.share_user_token_across_other_agents = False
    mocked.post(f"{BASE}/mcp_auth/agt-openai/agt-openai_user-42/get_token",
                json={"type": "token_ready", "data": {"access_token": "t"}})
    mocked.post(PUSH_ROUTE, json={})
    context.mcp_headers(agent, a_task(), server)


def test_oauth_timeout_is_a_clear_error(mocked, config):
    now = [0.0]
    cfg = Configuration(api_key="k", base_url=BASE, mcp_auth_timeout=3, mcp_auth_poll_interval=1)

    def fake_sleep(seconds):
        now[0] += seconds

    context = BuildContext(Transport(cfg), sleep=fake_sleep, clock=lambda: now[0])
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    mocked.post(TOKEN_ROUTE, json=load_fixture("mcp_login_required"))
    mocked.post(PUSH_ROUTE, json={})
    for _ in range(3):
        mocked.post(TOKEN_ROUTE, json={"type": "login_required", "data": {}})
    with pytest.raises(AuthenticationRequiredError) as info:
        context.mcp_headers(agent, a_task(), server)
    err = info.value
    assert err.server == "Notion" and "did not complete within 3 s" in str(err)
    assert err.login_url.startswith("https://auth.notion.example/")
    assert now[0] == 3.0


def test_token_issue_is_a_clear_error(mocked, context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    mocked.post(TOKEN_ROUTE, json={"type": "token_issue", "data": {"message": "refresh token expired"}})
    with pytest.raises(AuthenticationRequiredError, match="refresh token expired"):
        context.mcp_headers(agent, a_task(), server)


def test_on_auth_event_validates_signature():
    with pytest.raises(TypeError, match="agent, task, event"):
        on_auth_event(lambda only_one: None)
    with pytest.raises(TypeError):
        on_auth_event(42)


def test_async_handler_runs_on_the_callers_loop_under_aget(mocked, config):
    """From an async twin, a coroutine handler is delivered to the caller's loop."""
    from xpander_sync._async import async_twin

    loops = []

    async def handler(agent_, task_, event):
        loops.append(asyncio.get_running_loop())

    class Runner:
        def run(self):
            context = BuildContext(Transport(config), auth_events_callback=handler)
            agent = mcp_agent()
            context.push_auth_event(agent, a_task(), {"type": "token_ready", "data": {}})

        arun = async_twin(run)

    async def main():
        with responses.RequestsMock() as rsps:
            rsps.post(PUSH_ROUTE, json={})
            await Runner().arun()
        return asyncio.get_running_loop()

    caller = asyncio.run(main())
    assert loops == [caller]


# -- the OAuth token is reused for agent_cache_ttl ---------------------------------------------------------


def test_a_ready_token_is_reused_warm_without_lookup_or_event(mocked, context):
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    received = []

    @on_auth_event
    def registered(agent_, task_, event):
        received.append(event.data["type"])

    mocked.post(TOKEN_ROUTE, json={"type": "token_ready", "data": {"access_token": "tok-42"}})
    mocked.post(PUSH_ROUTE, json={})
    first = context.mcp_headers(agent, a_task(), server)
    # another build (another task of the same user) on the same transport: no POST, no event
    warm = BuildContext(context.transport, sleep=lambda s: None).mcp_headers(agent, a_task(id="task-2"), server)
    assert first == warm == {"Authorization": "Bearer tok-42"}
    assert len(mocked.calls) == 2 and received == ["token_ready"]
    held = context.transport.caches.mcp_tokens.values()
    assert len(held) == 1 and held[0].reveal() == "tok-42" and "tok-42" not in repr(held) + str(held[0])

    # another user runs its own flow
    other_task = a_task()
    other_task.input.user.id = "user-7"
    mocked.post(f"{BASE}/mcp_auth/agt-openai/user-7/get_token",
                json={"type": "token_ready", "data": {"access_token": "tok-7"}})
    assert context.mcp_headers(agent, other_task, server) == {"Authorization": "Bearer tok-7"}
    assert len(mocked.calls) == 4 and received == ["token_ready", "token_ready"]

    context.transport.caches.clear()  # forgotten with the rest
    assert context.transport.caches.mcp_tokens.values() == []


def test_login_required_and_failures_are_not_cached(mocked, config):
    now = [0.0]
    cfg = Configuration(api_key="k", base_url=BASE, mcp_auth_timeout=1, mcp_auth_poll_interval=1)

    def fake_sleep(seconds):
        now[0] += seconds

    context = BuildContext(Transport(cfg), sleep=fake_sleep, clock=lambda: now[0])
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    mocked.post(TOKEN_ROUTE, json=load_fixture("mcp_login_required"))
    mocked.post(PUSH_ROUTE, json={})
    mocked.post(TOKEN_ROUTE, json={"type": "login_required", "data": {}})
    with pytest.raises(AuthenticationRequiredError):
        context.mcp_headers(agent, a_task(), server)
    mocked.replace(responses.POST, TOKEN_ROUTE, json={"type": "token_issue", "data": {"message": "expired"}})
    with pytest.raises(AuthenticationRequiredError, match="expired"):
        context.mcp_headers(agent, a_task(), server)
    mocked.replace(responses.POST, TOKEN_ROUTE, json={"type": "token_ready", "data": {"access_token": "t-1"}})
    assert context.mcp_headers(agent, a_task(), server) == {"Authorization": "Bearer t-1"}
    lookups = [c for c in mocked.calls if c.request.url.startswith(TOKEN_ROUTE)]
    assert len(lookups) == 4  # login, poll, token issue, token ready: each a fresh lookup


def test_agent_cache_ttl_zero_looks_the_token_up_every_build(mocked):
    cfg = Configuration(api_key="k", base_url=BASE, agent_cache_ttl=0)
    transport = Transport(cfg)
    agent = mcp_agent()
    (server,) = agent.mcp_servers
    mocked.post(TOKEN_ROUTE, json={"type": "token_ready", "data": {"access_token": "tok-42"}})
    mocked.post(PUSH_ROUTE, json={})
    for _ in range(2):
        assert BuildContext(transport).mcp_headers(agent, a_task(), server) == {"Authorization": "Bearer tok-42"}
    assert [c.request.url.split("?")[0] for c in mocked.calls] == [TOKEN_ROUTE, PUSH_ROUTE] * 2
    assert transport.caches.mcp_tokens.values() == []

"""Feature 6, the tool-call layer: argument coercion, transient retries, approvals, activity events.

Pure helpers first; then each behaviour over every adapter (the framework calls the tool the way
it does in a run, the platform is ``responses``: exact routes, bodies and headers); then one real
turn per behaviour against the scripted model on the local backend.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from xpander_sync import Backend, Configuration, RetryPolicy
from xpander_sync.errors import (
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ToolError,
    TransportError,
)
from xpander_sync.frameworks import get_adapter
from xpander_sync.frameworks._context import BuildContext
from xpander_sync.frameworks._toolcall import (
    DISPLAY_LIMIT,
    RETRY_DELAYS,
    ToolCall,
    approval_request,
    approval_wait,
    coerce_arguments,
    decision,
    display,
    flush_activity,
    is_transient,
    request_data,
    result_data,
)
from xpander_sync.local import LocalBackend
from xpander_sync.models.tools import ToolInvocationResult
from xpander_sync.testing import ScriptedModel, answer_with_tool_result, call_first_tool, make_agent
from xpander_sync.transport import Transport

from ..conftest import BASE, SENTINEL_KEY
from ._features_kit import call_tool
from .conftest import TASK_ID, VERIFIED_BODY, make_task, require_framework
from .conftest import make_agent as fixture_agent
from .test_contract import each_adapter
from .test_run_matrix import DRIVERS as RUN_DRIVERS
from .test_run_matrix import TOOL, TOOL_ANSWER, TOOL_ID

OPERATION = f"{BASE}/agents/agt-openai/operations/XpanderCrmSearchContacts"
EVENTS = f"{BASE}/agent-execution/{TASK_ID}/events/push"
APPROVAL = f"{BASE}/agents/agt-openai/tool-approvals/apr-1"
ANSWER = {"contacts": [{"id": "c-1", "name": "Ada"}]}
TOOL_NAME = "XpanderCrmSearchContacts"


# -- pure helpers ---------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "query_params": {"type": "object", "properties": {"q": {"type": "string"}}},
        "body_params": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "object"}}}},
        "note": {"type": "string"},
    },
}


def test_stringified_json_objects_and_arrays_are_parsed_where_the_schema_wants_them() -> None:
    raw = {"query_params": '{"q": "ada"}', "body_params": {"tags": '[{"a": 1}, "{\\"b\\": 2}"]'},
           "note": '{"kept": "as text"}'}
    assert coerce_arguments(raw, SCHEMA) == {
        "query_params": {"q": "ada"}, "body_params": {"tags": [{"a": 1}, {"b": 2}]}, "note": '{"kept": "as text"}',
    }
    # the whole arguments as one JSON string
    assert coerce_arguments('{"query_params": "{\\"q\\": \\"x\\"}"}', SCHEMA) == {"query_params": {"q": "x"}}
    # not JSON, or JSON of the wrong type: left exactly as it came
    assert coerce_arguments({"query_params": "q=ada"}, SCHEMA) == {"query_params": "q=ada"}
    assert coerce_arguments({"query_params": "[1, 2]"}, SCHEMA) == {"query_params": "[1, 2]"}
    assert coerce_arguments("not json", SCHEMA) == "not json"
    assert coerce_arguments('["a"]', SCHEMA) == '["a"]'


def test_transient_means_timeout_connection_429_and_5xx() -> None:
    assert is_transient(TransportError("reset"))
    assert is_transient(RequestTimeoutError("read timeout"))
    assert is_transient(RateLimitError(429, "slow down"))
    assert is_transient(ServerError(503, "down")) and is_transient(ServerError(500, "bug"))
    assert not is_transient(NotFoundError(404, "no such tool"))
    assert RETRY_DELAYS == (1.5, 3.0)


def test_approval_answers_waits_and_decisions() -> None:
    asked = ToolInvocationResult(tool_id="t", payload={}, result={"type": "approval_required", "request_id": "r"},
                                 is_success=True)
    assert approval_request(asked) == {"type": "approval_required", "request_id": "r"}
    assert approval_request(ToolInvocationResult(tool_id="t", payload={}, result={"type": "x"}, is_success=True)) \
        is None
    assert approval_wait({"wait_seconds": 30}) == 30.0
    assert approval_wait({"wait_seconds": 9999}) == 600.0 and approval_wait({}) == 600.0
    assert decision({"settled": False}) is None and decision(None) is None
    assert decision({"settled": True, "approved": True}) is True
    assert decision({"settled": True, "approved": False}) is False
    assert decision({"settled": True, "status": "approved"}) is True


def test_event_data_and_the_display_clamp() -> None:
    call = ToolCall("Op", {"body_params": {}}, {"q": "x"}, "Search", "gi-1")
    assert request_data(call) == {
        "request_id": call.request_id, "operation_id": "Op", "tool_call_id": call.request_id,
        "graph_node_id": "gi-1", "tool_name": "Search", "payload": {"q": "x"}, "plan_task_id": None,
    }
    result = ToolInvocationResult(tool_id="Op", payload={}, result={"a": 1}, is_success=True)
    data = result_data(call, result, None)
    assert data["result"] == '{"a": 1}' and data["is_error"] is False and data["approval_request_id"] is None
    long = display("x" * (DISPLAY_LIMIT + 10))
    assert long.startswith("x" * DISPLAY_LIMIT) and long.endswith("[10 more characters]")


# -- over every adapter ---------------------------------------------------------------------------


@pytest.fixture
def name(request: pytest.FixtureRequest, openai_env: str) -> str:
    """The adapter under test (``each_adapter``); skips when its framework is not installed."""
    require_framework(request.param)
    return str(request.param)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def built(config: Configuration, sleeps: Sleeps, mocked: Any):
    """Build an agent with a real BuildContext (recorded sleeps); returns (args, context).

    The build's own requests (channel presence, memories: unmocked, so they fail open) are forgotten:
    the tests here look at the tool call's requests only.
    """

    def make(name: str, task: Any = "default") -> Any:
        transport = Transport(config, sleep=sleeps)
        context = BuildContext(transport, sleep=sleeps)
        context.org_llm_headers = lambda: {}  # type: ignore[method-assign]  # no metadata call in these tests
        context.db_connection_uri = lambda agent: "postgresql://u:p@db.example:5432/x"  # type: ignore
        chosen = make_task() if task == "default" else task
        args = get_adapter(name).build(fixture_agent(), chosen, None, None, None, context)
        mocked.calls.reset()
        return args, context

    return make


def _bodies(mocked: Any, url: str) -> List[Any]:
    return [json.loads(c.request.body) if c.request.body else None for c in mocked.calls if c.request.url == url]


def _headers(mocked: Any, url: str) -> List[Any]:
    return [c.request.headers for c in mocked.calls if c.request.url == url]


@each_adapter()
def test_stringified_arguments_are_coerced_before_the_call(mocked, name, built):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, json=ANSWER)
    text = call_tool(name, args, TOOL_NAME, {"query_params": json.dumps({"q": "ada"})})
    assert json.loads(text) == ANSWER
    assert _bodies(mocked, OPERATION) == [VERIFIED_BODY]


@each_adapter()
def test_a_transient_failure_is_retried_after_1_5_s_and_then_succeeds(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, status=503, json={"detail": "busy"})
    mocked.post(OPERATION, json=ANSWER)
    assert json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}})) == ANSWER
    assert _bodies(mocked, OPERATION) == [VERIFIED_BODY, VERIFIED_BODY]
    assert sleeps == [1.5]


@each_adapter()
def test_retries_stop_after_two_and_are_not_multiplied_by_the_transport(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    for _ in range(3):
        mocked.post(OPERATION, status=429, json={"detail": "slow down"})
    text = json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}}))
    assert text["is_error"] is True and text["status_code"] == 429
    assert len(_bodies(mocked, OPERATION)) == 3  # 1 + 2 retries, not 3 x 3 (the transport retries 429s itself)
    assert sleeps == [1.5, 3.0]


@each_adapter()
def test_a_refusal_is_not_retried(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, status=422, json={"detail": "bad q"})
    text = json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}}))
    assert text == {"is_error": True, "status_code": 422, "result": "bad q"}
    assert len(_bodies(mocked, OPERATION)) == 1 and sleeps == []


@each_adapter()
def test_a_self_approved_call_is_polled_every_2_s_then_sent_again(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, json={"type": "approval_required", "self_approve": True, "request_id": "apr-1",
                                 "wait_seconds": 30, "message": "needs a reviewer"})
    mocked.get(APPROVAL, json={"settled": False})
    mocked.get(APPROVAL, json={"settled": True, "approved": True})
    mocked.post(OPERATION, json=ANSWER)
    assert json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}})) == ANSWER
    assert [f"{c.request.method} {c.request.url}" for c in mocked.calls] == [
        f"POST {OPERATION}", f"GET {APPROVAL}", f"GET {APPROVAL}", f"POST {OPERATION}",
    ]
    assert [c.request.body for c in mocked.calls if c.request.method == "GET"] == [None, None]
    assert sleeps == [2.0]


@each_adapter()
def test_a_refused_approval_gives_the_model_the_refusal(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, json={"type": "approval_required", "self_approve": True, "request_id": "apr-1",
                                 "wait_seconds": 30})
    mocked.get(APPROVAL, json={"settled": True, "approved": False, "message": "not during the freeze"})
    text = json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}}))
    assert text["is_error"] is True and text["result"] == "not during the freeze"
    assert len(_bodies(mocked, OPERATION)) == 1 and sleeps == []


@each_adapter()
def test_an_approval_without_self_approve_gives_the_model_the_message(mocked, name, built, sleeps):
    args, _context = built(name, task=None)
    mocked.post(OPERATION, json={"type": "approval_required", "request_id": "apr-1", "wait_seconds": 30,
                                 "message": "A reviewer was asked."})
    assert call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}}) == "A reviewer was asked."
    assert len(mocked.calls) == 1 and sleeps == []


def test_an_undecided_approval_gives_up_after_wait_seconds(mocked, config, sleeps):
    args, context = _agno_or_skip(config, sleeps)
    mocked.post(OPERATION, json={"type": "approval_required", "self_approve": True, "request_id": "apr-1",
                                 "wait_seconds": 5})
    clock = [0.0]
    context._toolcalls._clock = lambda: clock[0]  # type: ignore[union-attr]

    def advance(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    context._toolcalls._sleep = advance  # type: ignore[union-attr]
    for _ in range(3):
        mocked.get(APPROVAL, json={"settled": False})
    text = json.loads(call_tool("agno", args, TOOL_NAME, {"query_params": {"q": "ada"}}))
    assert text["is_error"] is True and "not decided in time" in text["result"]
    assert sleeps == [2.0, 2.0]  # polls at 0, 2 and 4 s; a fourth (6 s) would pass wait_seconds


def test_an_approval_id_the_route_cannot_carry_leaves_the_call_held_without_raising(mocked, config, sleeps):
    args, _context = _agno_or_skip(config, sleeps)
    mocked.post(OPERATION, json={"type": "approval_required", "self_approve": True, "request_id": "apr/../1",
                                 "wait_seconds": 30, "message": "needs a reviewer"})
    text = json.loads(call_tool("agno", args, TOOL_NAME, {"query_params": {"q": "ada"}}))
    assert text["is_error"] is True and "not decided in time" in text["result"]
    tool_side = [c.request.url for c in mocked.calls if "/agents/" in c.request.url]  # not the build's presence
    assert tool_side == [OPERATION] and sleeps == []  # the call, and no poll


def _agno_or_skip(config: Configuration, sleeps: Sleeps) -> Any:
    require_framework("agno")
    transport = Transport(config, sleep=sleeps)
    context = BuildContext(transport, sleep=sleeps)
    context.org_llm_headers = lambda: {}  # type: ignore[method-assign]
    context.db_connection_uri = lambda agent: "postgresql://u:p@db.example:5432/x"  # type: ignore
    args = get_adapter("agno").build(fixture_agent(), None, None, None, None, context)
    from xpander_sync.frameworks._toolcall import ToolCalls

    context._toolcalls = ToolCalls(transport, sleep=sleeps)
    return args, context


@each_adapter()
def test_activity_events_are_pushed_for_a_task_in_order_after_the_call(mocked, name, built):
    args, context = built(name)
    mocked.post(OPERATION, json=ANSWER)
    mocked.post(EVENTS, json={})
    assert json.loads(call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}})) == ANSWER
    assert flush_activity(context.transport, timeout=10)
    pushed = [event for body in _bodies(mocked, EVENTS) for event in body]  # one push, or two when slow
    assert len(pushed) == 2
    request, result = pushed
    assert (request["type"], result["type"]) == ("tool_call_request", "tool_call_result")
    assert request["task_id"] == result["task_id"] == TASK_ID
    assert set(request) == {"type", "task_id", "organization_id", "time", "data", "identity"}
    call_id = request["data"]["request_id"]
    assert request["data"] == {
        "request_id": call_id, "operation_id": TOOL_NAME, "tool_call_id": call_id, "graph_node_id": "gi-1",
        "tool_name": "Search CRM contacts", "payload": {"query_params": {"q": "ada"}}, "plan_task_id": None,
    }
    assert result["data"] == dict(request["data"], result=json.dumps(ANSWER, ensure_ascii=False), is_error=False,
                                  approval_request_id=None)
    operation = _headers(mocked, OPERATION)[0]
    assert operation["x-tool-call-id"] == call_id and operation["x-execution-id"] == TASK_ID
    for headers in _headers(mocked, EVENTS):
        assert headers["x-api-key"] == SENTINEL_KEY


@each_adapter()
def test_no_task_no_event_and_no_tool_call_id_header_change(mocked, name, built):
    args, context = built(name, task=None)
    mocked.post(OPERATION, json=ANSWER)
    call_tool(name, args, TOOL_NAME, {"query_params": {"q": "ada"}})
    assert flush_activity(context.transport, timeout=5)
    assert [c.request.url for c in mocked.calls] == [OPERATION]
    assert "x-execution-id" not in _headers(mocked, OPERATION)[0]


def test_events_wait_while_the_platform_is_down_and_keep_their_order(mocked, config, sleeps):
    require_framework("agno")
    args, context = built_agno(config, sleeps)
    mocked.post(OPERATION, json=ANSWER)
    mocked.post(EVENTS, status=503, json={"detail": "down"})
    mocked.post(EVENTS, json={})
    call_tool("agno", args, TOOL_NAME, {"query_params": {"q": "ada"}})
    assert flush_activity(context.transport, timeout=10)
    import time

    def types() -> List[List[str]]:
        return [[e["type"] for e in body] for body in _bodies(mocked, EVENTS)]

    deadline = time.monotonic() + 10
    while len(types()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    both = ["tool_call_request", "tool_call_result"]
    assert types()[0] == both and [t for push in types()[1:] for t in push] == both  # refused once, then resent


def test_the_call_hands_over_the_raw_result_and_looks_the_delivery_thread_up_once(mocked, config, sleeps,
                                                                                 monkeypatch):
    """Nothing is built on the call's path: the thread makes the events' JSON later (same wire JSON)."""
    require_framework("agno")
    from xpander_sync.frameworks._toolcall import event_json
    from xpander_sync.reporting import activity

    lookups: List[Any] = []
    handed: List[Any] = []
    real_lookup, real_hand_over = activity.dispatcher, activity.EventDispatcher.hand_over

    def lookup(*args: Any, **kwargs: Any) -> Any:
        lookups.append(args)
        return real_lookup(*args, **kwargs)

    def hand_over(self: Any, task_id: str, build: Any, raw: Any, wake: bool = True) -> None:
        handed.append((task_id, build, raw, wake))
        real_hand_over(self, task_id, build, raw, wake)

    monkeypatch.setattr(activity, "dispatcher", lookup)
    monkeypatch.setattr(activity.EventDispatcher, "hand_over", hand_over)
    args, context = built_agno(config, sleeps)
    mocked.post(OPERATION, json=ANSWER)
    mocked.post(EVENTS, json={})
    for _ in range(2):
        call_tool("agno", args, TOOL_NAME, {"query_params": {"q": "ada"}})
    assert len(lookups) == 1
    # the request does not wake the thread in the middle of the call; the result does
    assert [(task_id, build, raw[0].value, wake) for task_id, build, raw, wake in handed] == [
        (TASK_ID, event_json, kind, wake) for kind, wake in [("tool_call_request", False),
                                                             ("tool_call_result", True)] * 2]
    for _, _, raw, _ in handed:
        assert isinstance(raw[3], float) and isinstance(raw[4], ToolCall)
    assert [raw[5] for _, _, raw, _ in handed[::2]] == [None, None]
    assert [raw[5].result for _, _, raw, _ in handed[1::2]] == [ANSWER, ANSWER]  # the raw object, not rendered
    assert flush_activity(context.transport, timeout=10)
    pushed = [event for body in _bodies(mocked, EVENTS) for event in body]
    assert [e["type"] for e in pushed] == ["tool_call_request", "tool_call_result"] * 2
    assert [e["data"]["result"] for e in pushed[1::2]] == [json.dumps(ANSWER, ensure_ascii=False)] * 2
    monkeypatch.setattr(activity, "forks", activity.forks + 1)  # as in a forked child: its threads are new
    call_tool("agno", args, TOOL_NAME, {"query_params": {"q": "ada"}})
    assert len(lookups) == 2


def test_a_call_that_raises_still_gets_its_request_event_delivered(mocked, config, sleeps):
    from xpander_sync.frameworks._toolcall import ToolCalls

    mocked.post(EVENTS, json={})
    layer = ToolCalls(Transport(config, sleep=sleeps), sleep=sleeps)

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug under the call")

    layer._send = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        layer.run(fixture_agent(), make_task(), ToolCall(TOOL_NAME, {}, {}, TOOL_NAME, None))
    import time

    deadline = time.monotonic() + 10  # no flush: the layer woke the delivery thread itself
    while not _bodies(mocked, EVENTS) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [[e["type"] for e in body] for body in _bodies(mocked, EVENTS)] == [["tool_call_request"]]


def built_agno(config: Configuration, sleeps: Sleeps) -> Any:
    transport = Transport(config.__class__(**{**_fields(config), "retry": RetryPolicy(max_retries=0)}), sleep=sleeps)
    context = BuildContext(transport, sleep=sleeps)
    context.org_llm_headers = lambda: {}  # type: ignore[method-assign]
    context.db_connection_uri = lambda agent: "postgresql://u:p@db.example:5432/x"  # type: ignore
    return get_adapter("agno").build(fixture_agent(), make_task(), None, None, None, context), context


def _fields(config: Configuration) -> Dict[str, Any]:
    import attrs

    return {f.name: getattr(config, f.name) for f in attrs.fields(type(config)) if f.init}


# -- a real turn against the scripted model, per behaviour ----------------------------------------


@pytest.fixture
def local(clean_environ: None, tmp_path: Any) -> Any:
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-tc") as backend:
        yield backend


def _run(local: LocalBackend, name: str, agent: Dict[str, Any], sleeps: Sleeps, with_task: bool = True) -> Any:
    local.add_agent(agent)
    model = local.mount_llm(ScriptedModel())
    config = Configuration(api_key="xpk-tc", base_url=local.url, organization_id="local-org", agent_cache_ttl=0)
    backend = Backend(config)
    task = backend.invoke_agent(agent["id"], "Look up the answer") if with_task else None
    context = BuildContext(backend._transport, sleep=sleeps)
    args = get_adapter(name).build(backend._agents.bind(_structure(agent, local)), task, None, None, None, context)
    model.script(call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}), answer_with_tool_result("final: "))
    final = RUN_DRIVERS[name].run(args, False)
    return model, task, final, backend


def _structure(agent: Dict[str, Any], local: LocalBackend) -> Any:
    import requests

    from xpander_sync._converter import structure
    from xpander_sync.models.agent import Agent

    served = requests.get(f"{local.url}/agents/{agent['id']}", headers={"x-api-key": "xpk-tc"}, timeout=10).json()
    return structure(served, Agent)


def _agent(name: str, **fields: Any) -> Dict[str, Any]:
    return make_agent("agt-tc", "Tool Calls", framework=name, tools=[TOOL], output_format="text",
                      llm_credentials={"name": "k", "value": "sk-stored"}, **fields)


@each_adapter()
def test_run_a_503_then_success_is_retried_within_the_turn(local, name, sleeps):
    attempts: List[int] = []

    def flaky(payload: Any, headers: Dict[str, str]) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ToolError(503, "warming up")
        return {"answer": TOOL_ANSWER}

    local.register_tool(TOOL_ID, flaky)
    model, _task, final, _ = _run(local, name, _agent(name), sleeps)
    assert len([c for c in local.tool_calls() if c["tool_id"] == TOOL_ID]) == 2 and sleeps == [1.5]
    assert TOOL_ANSWER in final
    index = next(i for i, r in enumerate(model.requests) if r.tool_call)
    assert TOOL_ANSWER in (model.requests[index + 1].last_tool_result or "")


@each_adapter()
def test_run_an_approval_is_polled_and_granted(local, name, sleeps):
    local.register_tool(TOOL_ID, lambda payload, headers: {"answer": TOOL_ANSWER})
    rules = {"rules": [{"tool": TOOL_ID, "self_approve": True, "wait_seconds": 30, "decision": "approve",
                        "decide_after_polls": 2}]}
    _model, _task, final, _ = _run(local, name, _agent(name, _local_approvals=rules), sleeps)
    approvals = [r for r in local.requests_log if "/tool-approvals/" in r["path"]]
    assert [r["method"] for r in approvals] == ["GET", "GET"] and sleeps == [2.0]
    posts = [r for r in local.requests_log if r["path"].endswith(f"/operations/{TOOL_ID}")]
    assert len(posts) == 2  # held, then (approved) sent again
    assert len([c for c in local.tool_calls() if c["tool_id"] == TOOL_ID]) == 1  # the platform ran it once
    assert TOOL_ANSWER in final


@each_adapter()
def test_run_the_events_of_a_tool_call_reach_the_local_backend(local, name, sleeps):
    local.register_tool(TOOL_ID, lambda payload, headers: {"answer": TOOL_ANSWER})
    _model, task, _final, backend = _run(local, name, _agent(name), sleeps)
    assert flush_activity(backend._transport, timeout=10)
    tool_events = [e["event"] for e in local.events(task.id) if e["event"]["type"].startswith("tool_call")]
    assert [e["type"] for e in tool_events] == ["tool_call_request", "tool_call_result"]
    call = next(c for c in local.tool_calls() if c["tool_id"] == TOOL_ID)
    assert {e["data"]["request_id"] for e in tool_events} == {call["headers"]["x-tool-call-id"]}
    assert TOOL_ANSWER in tool_events[1]["data"]["result"] and tool_events[1]["data"]["is_error"] is False

"""backend: Backend.report_external_task and Backend.invoke_agent (get_args has its own files in frameworks/)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import attrs
import pytest

from xpander_sync import (
    Backend,
    Configuration,
    InvalidInputError,
    MissingAgentError,
    NotFoundError,
    ServerError,
    Task,
    Tasks,
    Tokens,
)
from xpander_sync._converter import structure
from xpander_sync.models import Agent
from xpander_sync.resources.reports import REPORT_KEYS
from xpander_sync.transport import Transport

from .conftest import BASE, body_of, load_fixture

REPORT_URL = f"{BASE}/agent-execution/agt-openai/report_task"


def test_minimal_report_body(mocked, config):
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    task = Backend(config).report_external_task(agent_id="agt-openai")
    assert isinstance(task, Task) and task.configuration is config
    body = body_of(mocked.calls[0])
    assert tuple(body) == REPORT_KEYS
    assert uuid.UUID(body.pop("id")).version == 4
    assert body == {"input": None, "llm_response": None, "tokens": None, "is_success": True, "result": None,
                    "duration": 0.0, "used_tools": []}


def test_full_report_body_matches_reference(mocked, config):
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    reference = load_fixture("report_request")
    task = Backend(config).report_external_task(
        agent_id="agt-openai", id="ext-2026-0001", input=reference["input"],
        llm_response=reference["llm_response"], tokens=Tokens(completion_tokens=14, prompt_tokens=120),
        is_success=True, result=reference["result"], duration=1.8, used_tools=["kb_search"],
    )
    body = body_of(mocked.calls[0])
    expected = dict(reference, tokens=dict(reference["tokens"], cache_read_tokens=0, cache_write_tokens=0))
    assert body == expected
    assert task.id == "ext-2026-0001" and task.used_tools == ["kb_search"]


def test_tokens_as_dict_and_objects_as_llm_response(mocked, config):
    @attrs.define
    class AttrsReply:
        text: str

    @dataclasses.dataclass
    class DataReply:
        text: str

    for _ in range(2):
        mocked.post(REPORT_URL, json=load_fixture("report_response"))
    backend = Backend(config)
    backend.report_external_task(agent_id="agt-openai", tokens={"prompt_tokens": 5, "completion_tokens": 2},
                                 llm_response=AttrsReply("a"))
    backend.report_external_task(agent_id="agt-openai", llm_response=DataReply("b"))
    first, second = (body_of(c) for c in mocked.calls)
    assert first["tokens"]["total_tokens"] == 7 and first["llm_response"] == {"text": "a"}
    assert second["llm_response"] == {"text": "b"}


def test_agent_precedence(mocked, config, monkeypatch):
    monkeypatch.setenv("XPANDER_AGENT_ID", "from-env")
    agent = structure(load_fixture("agent_anthropic"), Agent)
    for target in ("agt-anthropic", "explicit", "from-env"):
        mocked.post(f"{BASE}/agent-execution/{target}/report_task", json=load_fixture("report_response"))
    backend = Backend(Configuration(api_key="k", base_url=BASE, agent_id=None))
    backend.report_external_task(agent=agent, agent_id="explicit")
    backend.report_external_task(agent_id="explicit")
    backend.report_external_task()
    assert [c.request.url.split("/")[-2] for c in mocked.calls] == ["agt-anthropic", "explicit", "from-env"]


def test_no_agent_anywhere_is_a_clear_error(config):
    with pytest.raises(MissingAgentError) as info:
        Backend(Configuration(base_url=BASE)).report_external_task(input="x")
    message = str(info.value)
    assert "agent=" in message and "agent_id=" in message and "XPANDER_AGENT_ID" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"input": {"a": 1}}, "input"),
        ({"result": 5}, "result"),
        ({"is_success": "yes"}, "is_success"),
        ({"duration": -1}, "duration"),
        ({"duration": float("nan")}, "duration"),
        ({"used_tools": "search"}, "used_tools"),
        ({"tokens": {"prompt_tokens": -3}}, "tokens.prompt_tokens"),
        ({"tokens": {"bogus": 1}}, "tokens"),
        ({"tokens": 12}, "tokens"),
        ({"llm_response": object()}, "llm_response"),
        ({"id": ""}, "id"),
        ({"agent": "agt-openai"}, "agent"),
    ],
)
def test_bad_report_input_names_the_field(config, kwargs, field):
    kwargs.setdefault("agent_id", "agt-openai")
    with pytest.raises(InvalidInputError, match=field):
        Backend(config).report_external_task(**kwargs)


def test_report_is_retried_with_the_same_id(mocked, config, sleeps):
    mocked.post(REPORT_URL, json={"detail": "busy"}, status=503)
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    backend = Backend(config, transport=Transport(config, sleep=sleeps, rand=lambda: 1.0))
    backend.report_external_task(agent_id="agt-openai", input="q")
    first, second = (body_of(c) for c in mocked.calls)
    assert first == second and len(sleeps.delays) == 1


def test_report_server_error_is_typed(mocked, config, sleeps):
    for _ in range(3):
        mocked.post(REPORT_URL, json={"detail": "down"}, status=502)
    backend = Backend(config, transport=Transport(config, sleep=sleeps, rand=lambda: 0.0))
    with pytest.raises(ServerError) as info:
        backend.report_external_task(agent_id="agt-openai")
    assert info.value.status_code == 502 and len(mocked.calls) == 3
    assert sleeps.delays == [0.005, 0.01]  # 50% jitter floor


def test_invoke_agent_creates_a_task_without_loading_the_agent(mocked, config):
    mocked.post(f"{BASE}/agent-execution/agt-openai", json=load_fixture("create_task_response"))
    task = Backend(config).invoke_agent("agt-openai", "hello", agent_version=3)
    assert task.id == load_fixture("create_task_response")["id"]
    (call,) = mocked.calls
    body = body_of(call)
    assert len(body) == 27 and body["input"] == {"text": "hello", "files": None, "user": None}
    assert body["source"] == "sdk" and call.request.headers["x-agent-version"] == "3"


def test_invoke_agent_with_task_id_prompt_returns_that_task(mocked, config):
    data = load_fixture("task_status")
    mocked.get(f"{BASE}/agent-execution/{data['id']}/status", json=data)
    task = Backend(config).invoke_agent("agt-openai", json.dumps({"xpander_task_id": data["id"]}))
    assert task.id == data["id"] and len(mocked.calls) == 1


def test_invoke_agent_task_id_lookup_errors_are_not_swallowed(mocked, config):
    mocked.get(f"{BASE}/agent-execution/gone/status", json={"detail": "no such task"}, status=404)
    with pytest.raises(NotFoundError):
        Backend(config).invoke_agent("agt-openai", '{"xpander_task_id": "gone"}')
    assert len(mocked.calls) == 1  # no task was created instead


def test_invoke_agent_needs_an_agent(config):
    with pytest.raises(MissingAgentError):
        Backend(Configuration(base_url=BASE)).invoke_agent(prompt="hi")


# -- issue 16, finding 8: bad input is a typed error raised before anything is sent ---------------------

@pytest.mark.parametrize(("call", "field"), [
    (lambda b: b.report_external_task(agent_id="a", duration=10**400), "duration"),
    (lambda b: b.report_external_task(agent_id="a", used_tools=5), "used_tools"),
    (lambda b: b.report_external_task(agent_id="a", tokens={"prompt_tokens": "5"}), "prompt_tokens"),
    (lambda b: b.report_external_task(agent_id="a", input="\ud800"), "JSON"),
    (lambda b: b.report_external_task(agent_id="a", id="\ud800"), "JSON"),
    (lambda b: b.invoke_agent(agent_id="a", attachments=[object()]), "JSON"),
    (lambda b: b.invoke_agent(agent_id="a", additional_context=object()), "JSON"),
    (lambda b: b.invoke_agent(agent_id="a", tool_call_payload_extension={"x": object()}), "JSON"),
    (lambda b: b.invoke_agent(agent_id="a", agent_version="1\r\n"), "agent_version"),
    (lambda b: b.get_args(agent_id="a", tools=[1, "x", None]), r"tools\[0\]"),
    (lambda b: b.get_args(agent_id="a", override={1: 2}), "override"),
])
def test_bad_input_is_invalid_input_and_nothing_is_sent(mocked, config, call, field):
    with pytest.raises(InvalidInputError, match=field):
        call(Backend(config))
    assert len(mocked.calls) == 0


def test_tokens_refuse_a_count_that_is_not_an_integer():
    with pytest.raises(InvalidInputError, match="prompt_tokens"):
        Tokens(prompt_tokens="5")


def test_an_unknown_framework_fails_before_the_agent_is_loaded(mocked, config):
    from xpander_sync import UnsupportedFrameworkError

    with pytest.raises(UnsupportedFrameworkError, match="nope"):
        Backend(config).get_args(agent_id="a", framework="nope")
    assert len(mocked.calls) == 0


# -- issue 12: a model is bound to the client that loaded it --------------------------------------

def test_a_reported_task_reloads_through_its_backends_own_transport(mocked, config, sleeps):
    transport = Transport(config, sleep=sleeps, rand=lambda: 1.0)
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    task = Backend(config, transport=transport).report_external_task(agent_id="agt-openai")
    status_url = f"{BASE}/agent-execution/{task.id}/status"
    mocked.get(status_url, status=503)
    mocked.get(status_url, json=dict(load_fixture("report_response"), result="reloaded"))
    assert task.reload() is task and task.result == "reloaded"
    assert len(sleeps.delays) == 1  # the retry slept through the injected transport, not a new one


def test_a_model_built_by_hand_has_no_client_and_says_how_to_get_one(config):
    data = load_fixture("task_status")
    task = structure(data, Task)
    assert task.configuration is None
    with pytest.raises(InvalidInputError, match=r"Task.reload\(\) needs the platform client.*bind"):
        task.reload()
    assert Tasks(config).bind(task).configuration is config

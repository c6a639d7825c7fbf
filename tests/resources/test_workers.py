"""``resources.Workers``: the worker's routes, and the metrics body (:mod:`xpander_sync.resources.workers`)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
import responses

from xpander_sync import Configuration, Task
from xpander_sync.errors import ConfigurationError, InvalidInputError, NotFoundError, TransportError
from xpander_sync.resources import Workers
from xpander_sync.transport import Transport
from xpander_sync.worker import build_metrics_body

from ..conftest import BASE, SENTINEL_KEY, body_of

AGENT = "agt-openai"
METRICS_KEYS = {
    "execution_id", "source", "sub_executions", "memory_thread_id", "task", "triggered_by", "skills", "status",
    "internal_status", "duration", "ai_model", "worker", "ai_employee_id", "api_calls_made", "result",
    "llm_tokens",
}


def _task(**fields: Any) -> Task:
    data = {"id": "t-1", "agent_id": AGENT, "organization_id": "org", "created_at": "2026-03-21T09:15:02Z",
            "input": {"text": "Find Ada", "files": [], "user": None}, "source": "sdk"}
    data.update(fields)
    from xpander_sync._converter import structure

    return structure(data, Task)


def test_metrics_body_has_the_reference_shape() -> None:
    task = _task(status="completed", result="done", used_tools=["XpanderCrmSearchContacts"], duration=1.5,
                 tokens={"prompt_tokens": 1830, "completion_tokens": 212})
    body = build_metrics_body(task)
    assert set(body) == METRICS_KEYS
    assert body["execution_id"] == body["memory_thread_id"] == "t-1"
    assert body["task"] == "Find Ada" and body["status"] == "completed" and body["result"] == "done"
    assert body["triggered_by"] == "N/A" and body["skills"] == [] and body["ai_model"] == "xpander"
    assert body["api_calls_made"] == ["XpanderCrmSearchContacts"] and body["duration"] == 1.5
    assert body["llm_tokens"]["inner"] == {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0}
    assert body["llm_tokens"]["worker"]["total_tokens"] == 2042
    json.dumps(body)
    orchestration = _task(is_orchestration=True, return_metrics=True, used_tools=["x"], tokens={})
    assert build_metrics_body(orchestration)["api_calls_made"] == []
    with pytest.raises(ValueError, match="tokens"):
        build_metrics_body(_task())


# -- the routes ------------------------------------------------------------------------------------------------


EVENTS = f"{BASE}/org-test/events"


def test_heartbeat_and_capacity_post_worker_events_to_the_events_root(
    mocked: responses.RequestsMock, transport: Transport, sleeps: Any
) -> None:
    workers = Workers(transport=transport)
    mocked.post(f"{EVENTS}/wrk-1", status=503)  # an event carries its own id: safe to send again
    mocked.post(f"{EVENTS}/wrk-1", json={})
    mocked.post(f"{EVENTS}/wrk-1", json={})
    workers.heartbeat("wrk-1", AGENT)
    workers.update_capacity("wrk-1", AGENT, is_busy=True)
    beat, capacity = body_of(mocked.calls[1]), body_of(mocked.calls[2])
    assert len(sleeps.delays) == 1  # the one transport retry
    for call in mocked.calls:
        assert call.request.url == f"{EVENTS}/wrk-1?type=worker&agent_id={AGENT}"
        assert call.request.headers["x-api-key"] == SENTINEL_KEY
    assert set(beat) == {"id", "event", "data"} and uuid.UUID(beat["id"]).version == 4
    assert beat["event"] == "worker-heartbeat" and dt.datetime.fromisoformat(beat["data"]).tzinfo is None
    assert capacity["event"] == "worker-capacity-update" and capacity["data"] == {"is_busy": True}
    assert capacity["id"] != beat["id"]


def test_a_refused_worker_event_raises_and_is_not_retryable(mocked: responses.RequestsMock, config: Any) -> None:
    mocked.post(f"{EVENTS}/wrk-gone", status=404, json={"detail": "Worker not found"})
    with pytest.raises(NotFoundError, match="Worker not found") as info:
        Workers(config).heartbeat("wrk-gone", AGENT)
    assert info.value.retryable is False
    with pytest.raises(InvalidInputError, match="worker_id"):
        Workers(config).heartbeat("wrk/../x", AGENT)


def test_report_metrics_posts_the_metrics_body(mocked: responses.RequestsMock, config: Any) -> None:
    mocked.post(f"{BASE}/agents-metrics/{AGENT}/execution", json={})
    task = _task(status="completed", result="done", tokens={"prompt_tokens": 3, "completion_tokens": 1})
    Workers(config).report_metrics(task)
    assert body_of(mocked.calls[0]) == build_metrics_body(task)
    with pytest.raises(InvalidInputError, match="tokens"):
        Workers(config).report_metrics(_task())


def test_open_stream_is_one_unredirected_streaming_get(mocked: responses.RequestsMock, config: Any) -> None:
    workers = Workers(config)
    assert workers.stream_url(AGENT) == f"{EVENTS}/{AGENT}/"
    mocked.get(f"{EVENTS}/{AGENT}/", body="event: worker-registration\ndata: {}\n\n",
               content_type="text/event-stream")
    mocked.get(f"{EVENTS}/{AGENT}/", status=302, headers={"Location": "https://elsewhere.test/"})
    response = workers.open_stream(AGENT, environment="local", idle_timeout=7.0)
    try:
        assert response.status_code == 200 and response.raw.read() == b"event: worker-registration\ndata: {}\n\n"
    finally:
        response.close()
    request = mocked.calls[0].request
    assert request.url == f"{EVENTS}/{AGENT}/?environment=local&supports_llm_gateway=true"
    assert request.headers["Accept"] == "text/event-stream" and request.headers["Cache-Control"] == "no-store"
    assert request.headers["x-api-key"] == SENTINEL_KEY
    assert request.req_kwargs["stream"] is True and request.req_kwargs["timeout"] == (config.connect_timeout, 7.0)
    redirected = workers.open_stream(AGENT, environment="xpander", idle_timeout=7.0)
    assert redirected.status_code == 302 and len(mocked.calls) == 2  # returned as is: not followed


def test_open_stream_maps_a_failed_connection_and_checks_its_inputs(config: Any) -> None:
    unreachable = Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url="http://127.0.0.1:9")
    with pytest.raises(TransportError) as info:
        Workers(unreachable).open_stream(AGENT, environment="local", idle_timeout=1.0)
    assert info.value.retryable and SENTINEL_KEY not in str(info.value)
    with pytest.raises(InvalidInputError, match="agent_id"):
        Workers(config).stream_url("a/b")
    with pytest.raises(ConfigurationError, match="organization_id"):
        Workers(Configuration(api_key=SENTINEL_KEY, base_url=BASE)).stream_url(AGENT)

"""The :class:`~xpander_sync.worker.Worker` against a real local backend: construction, the wire of one task
end to end, boot and shutdown hooks, and the drain (short timings throughout)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from typing import Callable, List

import pytest

from xpander_sync import AgentExecutionStatus, Task, Tokens
from xpander_sync.errors import ConfigurationError, MissingAgentError
from xpander_sync.handlers import on_boot, on_shutdown, on_task
from xpander_sync.local import LocalBackend
from xpander_sync.worker import BootHookError, Worker

from .conftest import AGENT, API_KEY, FAST, METRICS_KEYS, config_for, handle, invoke, wait_task


def test_worker_needs_key_organization_agent_and_a_handler(backend: LocalBackend) -> None:
    good = config_for(backend)
    with pytest.raises(ConfigurationError, match="api_key"):
        Worker(handle, configuration=config_for(backend, api_key=None), agent_id=AGENT)
    with pytest.raises(ConfigurationError, match="organization_id"):
        Worker(handle, configuration=config_for(backend, organization_id=None), agent_id=AGENT)
    with pytest.raises(MissingAgentError):
        Worker(handle, configuration=good)
    with pytest.raises(ValueError, match="concurrency"):
        Worker(handle, configuration=good, agent_id=AGENT, concurrency=0)
    with pytest.raises(TypeError, match="task"):
        Worker(lambda: None, configuration=good, agent_id=AGENT)
    with pytest.raises(TypeError, match="no @on_task handler"):
        Worker(configuration=good, agent_id=AGENT)
    on_task(handle)
    worker = Worker(configuration=config_for(backend, agent_id=AGENT))
    assert worker.handler is handle and worker.agent_id == AGENT and worker.concurrency == 6
    assert worker.stream_url == f"{backend.url}/local-org/events/{AGENT}/"
    assert API_KEY not in repr(worker)

    @on_task
    def another(task: Task) -> Task:
        return task

    with pytest.raises(TypeError, match="several"):
        Worker(configuration=good, agent_id=AGENT)


def test_handles_a_task_end_to_end_with_the_reference_wire(
    backend: LocalBackend, running: Callable[..., Worker]
) -> None:
    seen: List[Task] = []

    def handler(task: Task) -> Task:
        seen.append(task)
        task.result = f"handled: {task.to_message()}"
        task.used_tools = ["XpanderCrmSearchContacts"]
        task.tokens = Tokens(prompt_tokens=100, completion_tokens=20)
        return task

    config = config_for(backend)
    worker = running(handler, config)
    task_id = invoke(config, "Find Ada Lovelace")
    stored = wait_task(backend, task_id)
    assert stored["status"] == "completed" and stored["result"] == "handled: Find Ada Lovelace"
    assert stored["used_tools"] == ["XpanderCrmSearchContacts"]
    assert stored["tokens"]["prompt_tokens"] == 100 and stored["started_at"] and stored["finished_at"]
    assert seen[0].configuration is config and seen[0].status == AgentExecutionStatus.COMPLETED
    deadline = time.monotonic() + 5
    while not backend.metrics() and time.monotonic() < deadline:
        time.sleep(0.01)
    (metric,) = backend.metrics()
    assert metric["agent_id"] == AGENT and set(metric["body"]) == METRICS_KEYS
    assert metric["body"]["api_calls_made"] == ["XpanderCrmSearchContacts"]
    assert metric["body"]["llm_tokens"]["worker"]["total_tokens"] == 120

    log = backend.requests_log
    (stream,) = [e for e in log if e["method"] == "GET" and "/events/" in e["path"]]
    assert stream["path"] == f"/local-org/events/{AGENT}/"
    assert stream["query"] == {"environment": "local", "supports_llm_gateway": "true"}
    assert stream["headers"]["x-api-key"] == "***" and stream["headers"]["accept"] == "text/event-stream"
    patches = [e for e in log if e["method"] == "PATCH" and task_id in e["path"]]
    assert [p["body"]["status"] for p in patches] == ["executing", "completed"]
    assert patches[0]["body"]["result"] is None
    # heartbeats: uuid4 ids, naive ISO datetimes, to the registered worker id
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        beats = [e for e in backend.requests_log if e["method"] == "POST" and e["path"].startswith("/local-org/")]
        if len(beats) >= 2:
            break
        time.sleep(0.02)
    for entry in beats:
        assert entry["path"] == f"/local-org/events/{worker.worker_id}" and entry["status"] == 200
        assert entry["query"] == {"type": "worker", "agent_id": AGENT}
        assert set(entry["body"]) == {"id", "event", "data"} and uuid.UUID(entry["body"]["id"]).version == 4
        if entry["body"]["event"] == "worker-heartbeat":
            assert dt.datetime.fromisoformat(entry["body"]["data"]).tzinfo is None
    assert backend.workers()[0]["heartbeats"] >= 1
    assert API_KEY not in json.dumps(backend.requests_log)


# -- boot, shutdown, drain ---------------------------------------------------------------------------------


def test_a_failing_boot_hook_aborts_before_connecting(backend: LocalBackend) -> None:
    ran: List[str] = []

    def ok() -> None:
        ran.append("ok")

    async def broken() -> None:
        raise RuntimeError(f"database unreachable (key {API_KEY})")

    def after() -> None:
        ran.append("after")

    worker = Worker(handle, configuration=config_for(backend), agent_id=AGENT, boot_hooks=[ok, broken, after],
                    shutdown_hooks=[lambda: ran.append("shutdown")], **FAST)
    with pytest.raises(BootHookError) as info:
        worker.run()
    assert "broken failed: RuntimeError: database unreachable (key ***)" in str(info.value)
    assert info.value.hook.endswith("broken") and API_KEY not in str(info.value)
    assert ran == ["ok"]
    assert not [e for e in backend.requests_log if "/events/" in e["path"]]


def test_hooks_run_around_the_stream_and_stop_drains_in_flight_tasks(backend: LocalBackend) -> None:
    events: List[str] = []
    started = threading.Event()

    @on_boot
    def boot() -> None:
        events.append(f"boot, workers connected: {len(backend.workers())}")

    @on_shutdown
    async def shutdown() -> None:
        events.append("shutdown")

    @on_shutdown
    def broken() -> None:
        raise RuntimeError("ignored")

    @on_shutdown
    def last() -> None:
        events.append("last")

    def slow(task: Task) -> Task:
        started.set()
        time.sleep(0.4)
        task.result = "finished during the drain"
        events.append("handler done")
        return task

    config = config_for(backend)
    worker = Worker(slow, configuration=config, agent_id=AGENT, **FAST)
    worker.start()
    assert worker.wait_registered(5)
    task_id = invoke(config, "slow")
    assert started.wait(5)
    worker.stop()
    assert worker.join(5)
    assert backend._store.get_task(task_id)["result"] == "finished during the drain"
    assert events == ["boot, workers connected: 0", "handler done", "shutdown", "last"]
    assert worker.stats()["completed"] == 1
    assert backend.workers()[0]["connected"] is False

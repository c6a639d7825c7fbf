"""The runner (:mod:`xpander_sync.worker._runner`): handler outcomes, one Task per call, duplicates and
continuations, the drain deadline, and saving through an outage."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, Callable, List, Optional

import pytest

from xpander_sync import AgentExecutionStatus, Backend, Task, Tasks
from xpander_sync.errors import APIError, ConflictError, TransportError
from xpander_sync.local import LocalBackend
from xpander_sync.worker import ServerSentEvent, Worker

from .conftest import AGENT, API_KEY, FAST, config_for, handle, invoke, wait_stats, wait_task


def test_a_raising_handler_saves_an_error_and_the_worker_goes_on(
    backend: LocalBackend, running: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="xpander_sync")

    def handler(task: Task) -> Task:
        if task.input.text == "boom":
            raise RuntimeError(f"model refused; key was {API_KEY}")
        task.result = "fine"
        return task

    config = config_for(backend)
    worker = running(handler, config)
    failed = wait_task(backend, invoke(config, "boom"))
    assert failed["status"] == "error"
    assert failed["result"] == "model refused; key was ***"
    fine = wait_task(backend, invoke(config, "next"))
    assert fine["status"] == "completed" and fine["result"] == "fine"
    wait_stats(worker, completed=1, failed=1)  # counted just after the save returns
    assert "RuntimeError" in caplog.text and "Traceback" in caplog.text
    assert API_KEY not in caplog.text


def test_async_handlers_status_overrides_and_return_values(
    backend: LocalBackend, running: Callable[..., Worker]
) -> None:
    async def handler(task: Task) -> Any:
        await asyncio.sleep(0.01)
        text = task.input.text
        if text == "in place":
            task.result = "changed in place"
            return None
        if text == "not a task":
            return "a string"
        if text == "paused":
            task.status = AgentExecutionStatus.PAUSED
            task.result = "waiting for a human"
        if text == "structured":
            task.result = {"answer": 42}
        return task

    config = config_for(backend)
    running(handler, config)
    ids = {text: invoke(config, text) for text in ("in place", "not a task", "paused", "structured")}
    assert wait_task(backend, ids["in place"])["result"] == "changed in place"
    bad = wait_task(backend, ids["not a task"])
    assert bad["status"] == "error" and "returned str, expected the Task" in bad["result"]
    paused = wait_task(backend, ids["paused"], statuses=("paused",))
    assert paused["result"] == "waiting for a human"
    assert json.loads(wait_task(backend, ids["structured"])["result"]) == {"answer": 42}


def test_each_handler_call_gets_its_own_task(backend: LocalBackend, running: Callable[..., Worker]) -> None:
    calls: List[tuple] = []
    lock = threading.Lock()
    gate = threading.Barrier(4, timeout=5)

    def handler(task: Task) -> Task:
        with lock:
            calls.append((task, task.id, task.input.text))
        gate.wait()  # all four run at the same time
        task.result = task.input.text.upper()
        return task

    config = config_for(backend)
    running(handler, config, concurrency=4)
    ids = [invoke(config, f"text-{i}") for i in range(4)]
    results = {wait_task(backend, i)["result"] for i in ids}
    assert results == {f"TEXT-{i}" for i in range(4)}
    assert len({id(task) for task, _, _ in calls}) == 4
    for task, task_id, text in calls:
        assert task.id == task_id and task.configuration is config and task.result == text.upper()


def test_duplicate_deliveries_are_dropped_but_continuations_run(backend: LocalBackend) -> None:
    release = threading.Event()
    calls: List[str] = []

    def handler(task: Task) -> Task:
        calls.append(task.input.text)
        release.wait(5)
        task.result = "r:" + task.input.text
        return task

    config = config_for(backend)
    worker = Worker(handler, configuration=config, agent_id=AGENT, **FAST)  # not running: frames fed by hand
    backend_client = Backend(config)
    created = backend_client.invoke_agent(agent_id=AGENT, prompt="first")
    frame = ServerSentEvent("agent-execution", json.dumps(backend._store.get_task(created.id)))
    worker._reader.on_event(frame)
    worker._reader.on_event(frame)  # again while in flight
    release.set()
    wait_task(backend, created.id)
    deadline = time.monotonic() + 5
    while worker.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    worker._reader.on_event(frame)  # a stale copy after it finished: checked, still completed, dropped
    assert calls == ["first"] and worker.stats()["duplicates"] == 2
    backend_client.invoke_agent(agent_id=AGENT, prompt="second", existing_task_id=created.id)
    worker._reader.on_event(ServerSentEvent("agent-execution", json.dumps(backend._store.get_task(created.id))))
    assert wait_task(backend, created.id, statuses=("completed",))["execution_attempts"] == 2
    deadline = time.monotonic() + 5
    while backend._store.get_task(created.id)["result"] != "r:second" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == ["first", "second"]


def test_handlers_past_the_drain_deadline_are_marked_and_not_overwritten(backend: LocalBackend) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck(task: Task) -> Task:
        started.set()
        release.wait(10)
        task.result = "too late"
        finished.set()
        return task

    config = config_for(backend)
    worker = Worker(stuck, configuration=config, agent_id=AGENT, **{**FAST, "drain_timeout": 0.2})
    worker.start()
    assert worker.wait_registered(5)
    task_id = invoke(config, "stuck")
    assert started.wait(5)
    began = time.monotonic()
    worker.stop()
    assert worker.join(5)
    assert time.monotonic() - began < 2
    stored = backend._store.get_task(task_id)
    assert stored["status"] == "error" and stored["result"] == "the worker stopped before the handler finished"
    release.set()
    assert finished.wait(5)
    time.sleep(0.1)  # give a (wrong) late save the time to land
    assert backend._store.get_task(task_id)["result"] == "the worker stopped before the handler finished"
    assert worker.stats()["abandoned"] == 1


def test_the_result_is_saved_through_a_backend_outage(tmp_path: Any) -> None:
    db = tmp_path / "outage.db"
    first = LocalBackend(db_path=db, api_key=API_KEY, stream_poll_interval=0.02).start()
    port = first._httpd.server_address[1]  # type: ignore[union-attr]
    started, release = threading.Event(), threading.Event()

    def handler(task: Task) -> Task:
        started.set()
        release.wait(5)
        task.result = "survived"
        return task

    config = config_for(first)
    worker = Worker(handler, configuration=config, agent_id=AGENT, **FAST)
    worker.start()
    second: Optional[LocalBackend] = None
    try:
        assert worker.wait_registered(5)
        task_id = invoke(config, "outage")
        assert started.wait(5)
        first.stop()
        release.set()  # the save now fails: connection refused
        time.sleep(0.3)  # a few failed save attempts
        assert worker.stats()["in_flight"] == 1
        second = LocalBackend(db_path=db, api_key=API_KEY, port=port, stream_poll_interval=0.02).start()
        stored = wait_task(second, task_id)
        assert stored["status"] == "completed" and stored["result"] == "survived"
    finally:
        worker.stop()
        assert worker.join(5)
        if second is not None:
            second.stop()


def test_saves_are_retried_only_while_the_error_is_retryable(backend: LocalBackend) -> None:
    worker = Worker(handle, configuration=config_for(backend), agent_id=AGENT, **FAST)
    runner = worker._runner
    calls: List[str] = []

    def flaky() -> None:
        calls.append("flaky")
        if len(calls) < 3:
            raise APIError(425, "too early", method="PATCH", route="/x")  # retryable: try again later
        return None

    assert runner._until_done(flaky, "save", give_up=lambda: False) is True and len(calls) == 3

    def refused() -> None:
        calls.append("refused")
        raise ConflictError(409, "conflict", method="PATCH", route="/x")

    calls.clear()
    assert runner._until_done(refused, "save", give_up=lambda: False) is False and calls == ["refused"]

    def down() -> None:
        calls.append("down")
        raise TransportError("connection refused")

    calls.clear()
    assert runner._until_done(down, "save", give_up=lambda: len(calls) >= 2) is False and len(calls) == 2


def test_a_handler_error_is_scrubbed_of_every_secret_the_library_knows(
    backend: LocalBackend, running: Callable[..., Worker], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16, finding 14: not only the API key: the environment's LLM keys and the task's MCP
    credentials too (an LLM SDK's error often quotes the key it was given)."""
    llm_key, mcp_token = "sk-WORKER-LLM-SENTINEL-8c2f", "mcp-WORKER-TOKEN-SENTINEL-1b7e"
    monkeypatch.setenv("OPENAI_API_KEY", llm_key)
    caplog.set_level(logging.DEBUG, logger="xpander_sync")

    def handler(task: Task) -> Task:
        raise RuntimeError(f"401 from the model: key {llm_key} refused; MCP said {mcp_token}")

    config = config_for(backend)
    running(handler, config)
    task_id = Tasks(config).create(
        AGENT, "go", mcp_servers=[{"url": "https://mcp.example", "headers": {"Authorization": mcp_token}}]
    ).id
    failed = wait_task(backend, task_id)
    assert failed["status"] == "error" and "401 from the model" in failed["result"]
    for secret in (llm_key, mcp_token):
        assert secret not in failed["result"] and secret not in caplog.text

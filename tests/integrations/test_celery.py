"""The Celery path (``xpander_sync.contrib.celery``) with real parts: a ``redis-server`` on a loopback port,
Celery worker processes (prefork), the stream reader as ``xpander-sync worker ... --dispatch celery``, and
platform tasks from the local backend. Every handler run is counted in Redis (``runs:<task id>``) and every
save in the backend's request log.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

from xpander_sync import Backend, Configuration, QueuedReport, RetryPolicy

from ..conftest import wait_until as _wait_until
from .conftest import require, xpander_settings

require("celery", "redis")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "celery_project"))
import harness  # noqa: E402

AGENT = "agt-openai"


@pytest.fixture
def redis_server() -> Iterator[harness.RedisServer]:
    server = harness.RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def processes() -> Iterator[List[Any]]:
    started: List[Any] = []
    yield started
    for process in reversed(started):
        harness.stop(process)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    return _wait_until(condition, timeout, what, interval=0.05)  # Celery's pace: poll less often


def completed(xpander_backend: Any, ids: List[str]) -> Dict[str, Dict[str, Any]]:
    wanted = set(ids)
    return {t["id"]: t for t in xpander_backend.tasks() if t["id"] in wanted and t["status"] == "completed"}


def saves(xpander_backend: Any, task_id: str) -> int:
    """PATCHes that saved a finished result for the task (the executing update excluded)."""
    return sum(1 for r in xpander_backend.requests
               if r["method"] == "PATCH" and r["path"].endswith(f"/{task_id}/update")
               and isinstance(r.get("body"), dict) and r["body"].get("status") == "completed")


def runs(server: harness.RedisServer, ids: List[str]) -> Dict[str, int]:
    import redis

    client = redis.Redis.from_url(server.url)
    return {tid: int(client.get(f"runs:{tid}") or 0) for tid in ids}


def invoke(xpander_backend: Any, prompts: List[str]) -> List[str]:
    client = Backend(xpander_backend.configuration)
    return [client.invoke_agent(agent_id=AGENT, prompt=p).id for p in prompts]


def test_200_tasks_each_run_exactly_once_through_celery(xpander_backend, redis_server, processes, tmp_path):
    env = harness.environment(redis_server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path))
    processes.append(harness.start_celery_worker(env, concurrency=4))
    reader = harness.start_reader(env)
    processes.append(reader)
    wait_until(lambda: xpander_backend.local.workers(connected=True), 30, "the reader to connect")

    ids = invoke(xpander_backend, [f"q{i}" for i in range(200)])

    done = wait_until(lambda: (lambda d: d if len(d) == 200 else None)(completed(xpander_backend, ids)), 120,
                      "200 completed tasks")
    assert {done[tid]["result"] for tid in ids} == {f"done: q{i}" for i in range(200)}
    assert runs(redis_server, ids) == dict.fromkeys(ids, 1)
    assert {saves(xpander_backend, tid) for tid in ids} == {1}
    (worker,) = xpander_backend.local.workers(connected=True)
    assert len(worker["delivered"]) == 200  # one reader received every task; it ran none itself


@pytest.mark.parametrize("host", ["django", "flask"])
def test_the_django_and_flask_commands_dispatch_to_celery(host, xpander_backend, redis_server, processes, tmp_path):
    require(host, "agno")
    env = harness.environment(redis_server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path))
    processes.append(harness.start_celery_worker(env, concurrency=2))
    reader = harness.start_reader(env, host=host)
    processes.append(reader)
    wait_until(lambda: xpander_backend.local.workers(connected=True), 60, f"the {host} reader to connect")

    ids = invoke(xpander_backend, [f"q{i}" for i in range(20)])

    done = wait_until(lambda: (lambda d: d if len(d) == 20 else None)(completed(xpander_backend, ids)), 60,
                      "20 completed tasks")
    assert {done[tid]["result"] for tid in ids} == {f"done: q{i}" for i in range(20)}
    assert runs(redis_server, ids) == dict.fromkeys(ids, 1)
    processes.remove(reader)
    assert "(20 dispatched)" in harness.stop(reader)


def test_two_messages_for_one_task_run_it_once(xpander_backend, redis_server, processes, tmp_path):
    from celery import Celery

    from xpander_sync.contrib.celery import RUN_TASK

    env = harness.environment(redis_server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path),
                              XPANDER_TEST_SLEEP="1.0")
    (task_id,) = invoke(xpander_backend, ["twice"])  # no reader: the test sends the messages itself
    sender = Celery("sender", broker=redis_server.url, set_as_current=False)
    for _ in range(2):  # as after a reader reconnect: the still-pending task is enqueued again
        sender.send_task(RUN_TASK, args=[task_id, "handlers:handle"])
    processes.append(harness.start_celery_worker(env, concurrency=2))  # both copies start at once

    wait_until(lambda: completed(xpander_backend, [task_id]), 60, "the task to complete")
    time.sleep(1.5)  # the second copy has had time to run, if it were going to
    assert runs(redis_server, [task_id]) == {task_id: 1} and saves(xpander_backend, task_id) == 1


def test_a_worker_process_killed_mid_task_costs_one_rerun(xpander_backend, redis_server, processes, tmp_path):
    import redis

    env = harness.environment(redis_server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path))
    celery_worker = harness.start_celery_worker(env, concurrency=2)
    processes.append(celery_worker)
    processes.append(harness.start_reader(env))
    wait_until(lambda: xpander_backend.local.workers(connected=True), 30, "the reader to connect")
    client = redis.Redis.from_url(redis_server.url)

    ids = invoke(xpander_backend, ["slow one", *[f"q{i}" for i in range(20)]])
    slow_pid = int(wait_until(lambda: client.get("slow-pid"), 60, "the slow task to start"))
    assert slow_pid in harness.pool_children(celery_worker)
    os.kill(slow_pid, signal.SIGKILL)  # the pool process running the task dies mid-handler

    done = wait_until(lambda: (lambda d: d if len(d) == 21 else None)(completed(xpander_backend, ids)), 90,
                      "21 completed tasks")
    assert done[ids[0]]["result"] == "done: slow one"
    counted = runs(redis_server, ids)
    assert counted.pop(ids[0]) == 2  # killed once, re-delivered and run once more
    assert set(counted.values()) == {1}
    assert {saves(xpander_backend, tid) for tid in ids} == {1}  # one result per task
    assert celery_worker.poll() is None  # the worker replaced its pool process and went on


def test_broker_down_at_start_then_up(xpander_backend, processes, tmp_path):
    from xpander_sync.contrib.celery import report_external_task

    server = harness.RedisServer()  # its port is chosen, nothing listens yet
    env = harness.environment(server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path))
    reader = harness.start_reader(env)
    processes.append(reader)
    wait_until(lambda: xpander_backend.local.workers(connected=True), 30, "the reader to connect")
    ids = invoke(xpander_backend, [f"q{i}" for i in range(10)])

    # A report sent while the broker is down is kept in the outbox, with its id.
    outbox = str(tmp_path / "outbox.sqlite3")
    sending_app(server.url, Configuration(
        base_url=xpander_backend.url, api_key=xpander_backend.configuration.api_key, organization_id="local-org",
        outbox=outbox, retry=RetryPolicy(max_retries=0)))
    started = time.monotonic()
    queued = report_external_task.delay(agent_id=AGENT, input="while the broker was down", result="ok")
    assert time.monotonic() - started < 5  # the caller is not held up by the broker's outage
    assert isinstance(queued, QueuedReport) and queued.outbox == outbox and "broker" in queued.reason
    wait_until(lambda: "not dispatched" in harness.output(reader), 60, "the reader to fail a dispatch")
    assert runs_before_broker(xpander_backend, ids) == "pending"  # nothing ran: no broker, no worker

    server.start()
    try:
        processes.append(harness.start_celery_worker(env, concurrency=2))
        done = wait_until(lambda: (lambda d: d if len(d) == 10 else None)(completed(xpander_backend, ids)), 90,
                          "10 completed tasks once the broker is up")
        assert {done[t]["result"] for t in ids} == {f"done: q{i}" for i in range(10)}
        assert runs(server, ids) == dict.fromkeys(ids, 1)
        assert "dispatched after" in harness.output(reader)  # it retried, then sent
        flushed = Backend(Configuration(base_url=xpander_backend.url, api_key=xpander_backend.configuration.api_key,
                                        organization_id="local-org", outbox=outbox)).flush_outbox()
        assert flushed.delivered == [queued.task_id]
        (report,) = xpander_backend.reports()
        assert report["body"]["id"] == queued.task_id and report["body"]["input"] == "while the broker was down"
    finally:
        for process in reversed(processes):
            harness.stop(process)
        processes.clear()
        server.stop()


def sending_app(broker: str, configuration: Any = None) -> Any:
    """A Celery app of this process (the current one), for sending ``report_external_task``."""
    from celery import Celery

    app = Celery("sender", broker=broker, set_as_current=True)
    app.conf.broker_transport_options = {"max_retries": 1}  # fall back to the outbox at once (docs/guides/celery.md)
    app.conf.xpander_configuration = configuration
    return app


def runs_before_broker(xpander_backend: Any, ids: List[str]) -> str:
    statuses = {t["status"] for t in xpander_backend.tasks() if t["id"] in set(ids)}
    return statuses.pop() if len(statuses) == 1 else str(statuses)


def test_report_task_delivers_through_a_celery_worker(xpander_backend, redis_server, processes, tmp_path):
    from celery.result import AsyncResult

    from xpander_sync.contrib.celery import report_external_task

    env = harness.environment(redis_server.url, xpander_settings(xpander_backend), XDG_STATE_HOME=str(tmp_path))
    processes.append(harness.start_celery_worker(env, concurrency=1))
    sending_app(redis_server.url)
    sent = report_external_task.delay(agent_id=AGENT, input="from celery", result="ok",
                                      tokens={"prompt_tokens": 3, "completion_tokens": 1})

    assert isinstance(sent, AsyncResult)
    (report,) = wait_until(lambda: xpander_backend.reports(), 30, "the report")
    assert report["body"]["input"] == "from celery" and report["body"]["tokens"]["prompt_tokens"] == 3
    assert report["agent_id"] == AGENT and report["body"]["is_success"] is True


class _FailingClient:
    """A claim client whose every command fails as redis-py does when the broker drops or stalls."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def set(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class _FakeApp:
    """Just what ``_claim`` uses of a Celery app: ``conf`` and ``connection_for_write``."""

    def __init__(self, client: Any) -> None:
        from types import SimpleNamespace

        self.conf = SimpleNamespace(broker_transport_options={"visibility_timeout": 60})
        self.client = client
        self.options: List[Dict[str, Any]] = []

    def connection_for_write(self, transport_options: Any = None) -> Any:
        from contextlib import nullcontext
        from types import SimpleNamespace

        self.options.append(dict(transport_options or {}))
        return nullcontext(SimpleNamespace(transport=SimpleNamespace(driver_type="redis"),
                                           default_channel=SimpleNamespace(client=self.client)))


def test_a_claim_client_that_raises_runs_the_task(caplog):
    """Finding 5: redis-py's own ConnectionError/TimeoutError escaped the claim (only kombu's OperationalError
    was caught); the claim now logs and runs the task, and its connection has a socket timeout."""
    import redis

    from xpander_sync.contrib.celery import CLAIM_TIMEOUT, _claim

    for error in (redis.exceptions.ConnectionError("Connection reset by peer"),
                  redis.exceptions.TimeoutError("Timeout reading from socket")):
        app = _FakeApp(_FailingClient(error))
        assert _claim(app, "t-1", "m-1") is True
        assert f"task t-1: could not claim it ({type(error).__name__}" in caplog.text
        (options,) = app.options
        assert options == {"visibility_timeout": 60, "socket_timeout": CLAIM_TIMEOUT,
                           "socket_connect_timeout": CLAIM_TIMEOUT}


def test_the_claim_connection_has_a_socket_timeout(redis_server):
    """The real kombu channel takes the claim's timeout (a user's own setting wins)."""
    from celery import Celery

    from xpander_sync.contrib.celery import CLAIM_TIMEOUT, _claim

    seen: List[Dict[str, Any]] = []
    app = Celery("claims", broker=redis_server.url, set_as_current=False)
    original = app.connection_for_write

    def connection_for_write(**kwargs: Any) -> Any:
        connection = original(**kwargs)
        seen.append(connection.default_channel.client.connection_pool.connection_kwargs)
        return connection

    app.connection_for_write = connection_for_write  # type: ignore[method-assign]
    assert _claim(app, "t-1", "m-1") is True and _claim(app, "t-1", "m-2") is False
    assert seen[0]["socket_timeout"] == CLAIM_TIMEOUT and seen[0]["socket_connect_timeout"] == CLAIM_TIMEOUT
    app.conf.broker_transport_options = {"socket_timeout": 1.5}
    assert _claim(app, "t-1", "m-1") is True
    assert seen[-1]["socket_timeout"] == 1.5


def test_a_refused_save_fails_the_celery_task_without_a_retry(xpander_backend, monkeypatch):
    """Finding 1 through the Celery task: a 422 on the save fails the task (not retried, the handler ran once)."""
    from celery import Celery

    import xpander_sync.contrib.celery as contrib
    from xpander_sync import Task, Tasks
    from xpander_sync.errors import APIError

    (task_id,) = invoke(xpander_backend, ["refused"])
    runs_of: List[str] = []

    def handler(task: Task) -> Task:
        runs_of.append(task.id)
        task.result = "done"
        return task

    def save(self: Tasks, task: Task, **kwargs: Any) -> Task:
        if task.status != "executing":
            raise APIError(422, "result rejected", method="PATCH", route=f"/agent-execution/{task.id}/update")
        return original_save(self, task, **kwargs)

    original_save = Tasks.save
    monkeypatch.setattr(Tasks, "save", save)
    monkeypatch.setattr(contrib, "_handler", lambda target: handler)
    monkeypatch.setattr(contrib, "_claim", lambda app, task_id, message_id: True)
    app = Celery("eager", set_as_current=False)
    app.conf.xpander_configuration = xpander_backend.configuration
    task = app.tasks[contrib.RUN_TASK]

    result = task.apply(args=[task_id, "unused:handler"])

    assert result.state == "FAILURE" and isinstance(result.result, APIError)
    assert result.result.status_code == 422
    assert runs_of == [task_id]  # the handler ran once: no retry re-ran it

"""The worker and its decorators: ``@on_task``/``@on_boot``/``@on_shutdown``, the SSE parser, and a
:class:`~xpander_sync.worker.Worker` running against a real local backend (short timings throughout)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socketserver
import threading
import time
import uuid
from typing import Any, Callable, Iterator, List, Optional

import pytest

from xpander_sync import AgentExecutionStatus, Backend, Configuration, RetryPolicy, Task, Tokens
from xpander_sync.errors import ConfigurationError, MissingAgentError
from xpander_sync.handlers import (
    boot_hooks,
    clear_worker_handlers,
    on_auth_event,
    on_boot,
    on_shutdown,
    on_task,
    shutdown_hooks,
    task_handler_configuration,
    task_handlers,
)
from xpander_sync.local import LocalBackend
from xpander_sync.worker import (
    BootHookError,
    ServerSentEvent,
    SSEParser,
    Worker,
    build_metrics_body,
    load_handler,
)

API_KEY = "xpk-WORKER-SENTINEL-5e8d1c"
AGENT = "agt-openai"
METRICS_KEYS = {
    "execution_id", "source", "sub_executions", "memory_thread_id", "task", "triggered_by", "skills", "status",
    "internal_status", "duration", "ai_model", "worker", "ai_employee_id", "api_calls_made", "result",
    "llm_tokens",
}
FAST = dict(heartbeat_interval=0.1, backoff_base=0.02, backoff_max=0.2, drain_timeout=3.0)


@pytest.fixture(autouse=True)
def clean_registries() -> Iterator[None]:
    clear_worker_handlers()
    yield
    clear_worker_handlers()


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02, keepalive_interval=1.0) as b:
        yield b


def config_for(backend: LocalBackend, **overrides: Any) -> Configuration:
    values: dict[str, Any] = dict(
        base_url=backend.url, api_key=API_KEY, organization_id="local-org",
        retry=RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.02),
    )
    values.update(overrides)
    return Configuration(**values)


class Running:
    """A worker started on a thread; stopped and joined at the end of the test."""

    def __init__(self, handler: Callable[..., Any], configuration: Configuration, **options: Any) -> None:
        options = {**FAST, **options}
        self.worker = Worker(handler, configuration=configuration, agent_id=options.pop("agent_id", AGENT),
                             **options)
        self.worker.start()
        assert self.worker.wait_registered(5), "the worker did not register"

    def stop(self) -> None:
        self.worker.stop()
        assert self.worker.join(10), "the worker did not stop"


@pytest.fixture
def running() -> Iterator[Callable[..., Worker]]:
    started: List[Running] = []

    def start(handler: Callable[..., Any], configuration: Configuration, **options: Any) -> Worker:
        run = Running(handler, configuration, **options)
        started.append(run)
        return run.worker

    yield start
    for run in started:
        run.stop()


def wait_task(backend: LocalBackend, task_id: str, statuses: tuple = ("completed", "error", "failed"),
              timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = backend._store.get_task(task_id)
        if task is not None and task["status"] in statuses:
            return task
        time.sleep(0.01)
    raise AssertionError(f"task {task_id} never reached {statuses}: {backend._store.get_task(task_id)}")


def wait_stats(worker: Worker, timeout: float = 5.0, **expected: int) -> None:
    deadline = time.monotonic() + timeout
    while any(worker.stats()[k] != v for k, v in expected.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"stats {worker.stats()} never reached {expected}")
        time.sleep(0.01)


def invoke(configuration: Configuration, prompt: str) -> str:
    return Backend(configuration).invoke_agent(agent_id=AGENT, prompt=prompt).id


# -- decorators --------------------------------------------------------------------------------------------


def test_on_task_returns_the_function_unchanged_bare_and_called() -> None:
    threads = threading.active_count()

    def plain(task: Task) -> Task:
        return task

    async def coroutine(task: Task) -> Task:
        return task

    assert on_task(plain) is plain
    assert on_task()(coroutine) is coroutine
    config = Configuration(api_key="k", base_url="https://x.test", organization_id="o")

    def configured(task: Task) -> Task:
        return task

    assert on_task(configuration=config)(configured) is configured
    assert task_handlers.handlers() == [plain, coroutine, configured]
    assert task_handler_configuration(configured) is config and task_handler_configuration(plain) is None
    assert threading.active_count() == threads  # decorating started nothing
    sentinel = object()
    assert plain(sentinel) is sentinel  # type: ignore[arg-type]  # still a plain function


@pytest.mark.parametrize(
    "handler",
    [lambda: None, lambda payload: payload, lambda task, extra: task, "not callable"],
    ids=["no-args", "wrong-name", "extra-required", "not-callable"],
)
def test_on_task_rejects_handlers_it_could_not_call(handler: Any) -> None:
    with pytest.raises(TypeError, match="on_task"):
        on_task(handler)
    assert task_handlers.handlers() == []


def test_on_task_accepts_keyword_only_task_and_defaults() -> None:
    def keyword(*, task: Task, verbose: bool = False) -> Task:
        return task

    assert on_task(keyword) is keyword
    with pytest.raises(TypeError, match="Configuration"):
        on_task(configuration={"api_key": "k"})  # type: ignore[arg-type]


def test_boot_and_shutdown_hooks_register_in_order() -> None:
    def first() -> None: ...

    async def second() -> None: ...

    assert on_boot(first) is first and on_boot()(second) is second
    assert on_shutdown(second) is second and on_shutdown()(first) is first
    assert boot_hooks.handlers() == [first, second]
    assert shutdown_hooks.handlers() == [second, first]
    with pytest.raises(TypeError, match="no arguments"):
        on_boot(lambda task: None)
    with pytest.raises(TypeError, match="no arguments"):
        on_shutdown(lambda x: None)


def test_on_auth_event_is_unchanged() -> None:
    from xpander_sync.handlers import auth_event_handlers, clear_handlers

    def handler(agent: Any, task: Any, event: Any) -> None: ...

    try:
        assert on_auth_event(handler) is handler and on_auth_event()(handler) is handler
        assert auth_event_handlers.handlers() == [handler]
        with pytest.raises(TypeError, match=r"must accept \(agent, task, event\)"):
            on_auth_event(lambda task: None)
    finally:
        clear_handlers()


# -- the SSE parser --------------------------------------------------------------------------------------


STREAM = (
    b"\xef\xbb\xbf: hello\r\n\r\n"
    b"event: worker-registration\r\ndata: {\"id\": \"wrk-1\"}\r\n\r\n"
    b"id: 7\nevent: agent-execution\ndata: {\"a\":\ndata:  1}\n\n"
    b"data: plain\r\r"
    b"event: only-a-name\n\n"
    b"event: caf\xc3\xa9\ndata\n\n"
)
EXPECTED = [
    ServerSentEvent("worker-registration", '{"id": "wrk-1"}'),
    ServerSentEvent("agent-execution", '{"a":\n 1}', "7"),
    ServerSentEvent("message", "plain", "7"),
    ServerSentEvent("café", "", "7"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_sse_parser_is_independent_of_chunking(size: int) -> None:
    parser = SSEParser()
    events = []
    for start in range(0, len(STREAM), size):
        events += parser.feed(STREAM[start:start + size])
    assert events == EXPECTED
    assert parser.comments == 1
    assert events[1].json() == {"a": 1}


def test_sse_parser_crlf_split_between_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == [ServerSentEvent("message", "x")]  # CR LF, then a lone CR: one blank line
    assert parser.feed(b"\ndata: y\n\n") == [ServerSentEvent("message", "y")]


# -- metrics body -------------------------------------------------------------------------------------------


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


# -- construction ---------------------------------------------------------------------------------------------


def handle(task: Task) -> Task:
    task.result = "ok"
    return task


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


def test_load_handler_from_module_and_function(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wk_app.py").write_text(
        "from xpander_sync.handlers import on_task\n"
        "@on_task\n"
        "def decorated(task):\n    return task\n"
        "def plain(task):\n    return task\n"
        "def wrong(payload):\n    return payload\n"
        "value = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_handler("wk_app").__name__ == "decorated"  # importing did not block
    assert load_handler("wk_app:plain").__name__ == "plain"
    with pytest.raises(TypeError, match="task"):
        load_handler("wk_app:wrong")
    with pytest.raises(TypeError, match="no attribute"):
        load_handler("wk_app:missing")
    with pytest.raises(TypeError):
        load_handler("wk_app:value")
    with pytest.raises(ImportError):
        load_handler("wk_no_such_module:handler")
    with pytest.raises(TypeError, match="MODULE:FUNCTION"):
        load_handler("wk_app:")


# -- handling tasks -------------------------------------------------------------------------------------------


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


def test_stream_loss_reconnects_and_serving_resumes(
    backend: LocalBackend, running: Callable[..., Worker]
) -> None:
    config = config_for(backend)
    worker = running(handle, config)
    first_id = worker.worker_id
    assert backend.disconnect_workers(abrupt=True) == 1
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stats()["connections"] == 2 and worker.worker_id != first_id
    assert backend.disconnect_workers() == 1  # a clean end of the stream too
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wait_task(backend, invoke(config, "after"))["status"] == "completed"
    assert [w["connected"] for w in backend.workers()] == [False, False, True]


def test_refused_stream_is_retried_forever_and_logged_without_the_key(
    backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xpander_sync.worker")
    worker = Worker(handle, configuration=config_for(backend, api_key="xpk-WRONG-KEY-123456"), agent_id=AGENT,
                    **FAST)
    worker.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        attempts = [e for e in backend.requests_log if e["method"] == "GET" and "/events/" in e["path"]]
        if len(attempts) >= 4:
            break
        time.sleep(0.01)
    worker.stop()
    assert worker.join(5)
    assert len(attempts) >= 4 and all(e["status"] == 403 for e in attempts)
    assert "HTTP 403: Invalid API key (check the API key" in caplog.text
    assert "xpk-WRONG-KEY-123456" not in caplog.text
    delays = [worker.settings.delay(n) for n in range(1, 12)]
    assert all(0.5 * min(0.2, 0.02 * 2 ** (n - 1)) <= d <= 0.2 for n, d in zip(range(1, 12), delays))
    assert 0.1 <= worker.settings.delay(10_000) <= 0.2  # hours of outage: still the cap (no float overflow)


class _RawSSE(socketserver.BaseRequestHandler):
    """A bare HTTP/1.1 event stream: no chunked encoding (ends at close), CRLF line ends."""

    frames: List[bytes] = []
    hold = 0.0

    def handle(self) -> None:
        request_line = self.request.recv(65536).split(b"\r\n", 1)[0]
        if not request_line.startswith(b"GET ") or b"/events/" not in request_line:
            body = b'{"detail": "Not found"}'
            self.request.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            return
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        for frame in self.frames:
            self.request.sendall(frame)
            time.sleep(0.02)
        time.sleep(self.hold)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., str]]:
    servers: List[socketserver.ThreadingTCPServer] = []

    def serve(frames: List[bytes], hold: float = 0.0) -> str:
        handler = type("Handler", (_RawSSE,), {"frames": frames, "hold": hold})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_environment_conflict_waits_the_longest_backoff(
    raw_server: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xpander_sync.worker")
    url = raw_server([
        b'event: worker-registration\r\ndata: {"id": "wrk-raw"}\r\n\r\n',
        b'event: worker-environment-conflict\r\ndata: {"error": "agent already has a worker"}\r\n\r\n',
    ])
    config = Configuration(base_url=url, api_key=API_KEY, organization_id="local-org")
    worker = Worker(handle, configuration=config, agent_id=AGENT, heartbeat_interval=5, backoff_base=0.01,
                    backoff_max=0.3)
    started = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    worker.stop()
    assert worker.join(5)
    assert worker.stats()["connections"] == 2 and elapsed >= 0.3  # not the 0.01 s first backoff
    assert "worker-environment-conflict: agent already has a worker; retrying in 0.3s" in caplog.text


def test_frames_on_an_unchunked_stream_are_read_as_they_arrive(raw_server: Callable[..., str]) -> None:
    task = {"id": "t-raw", "agent_id": AGENT, "organization_id": "o", "created_at": "2026-03-21T09:15:02Z",
            "input": {"text": "x", "files": [], "user": None}, "status": "pending"}
    url = raw_server(
        [b'event: worker-registration\ndata: {"id": "wrk-raw"}\n\n',
         b"event: agent-execution\ndata: " + json.dumps(task).encode() + b"\n\n"],
        hold=10.0,  # the connection stays open: the frames must be read before the end of the stream
    )
    config = Configuration(base_url=url, api_key=API_KEY, organization_id="local-org",
                           retry=RetryPolicy(max_retries=0))
    worker = Worker(handle, configuration=config, agent_id=AGENT, heartbeat_interval=5, backoff_base=0.01,
                    backoff_max=0.1)
    worker.start()
    try:
        assert worker.wait_registered(3)
        deadline = time.monotonic() + 3
        while worker.stats()["received"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.stats()["received"] == 1
    finally:
        started = time.monotonic()
        worker.stop()
        assert worker.join(5)
        assert time.monotonic() - started < 2  # stop() cut the open stream, it did not wait for it


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


def test_worker_posts_check_the_status(backend: LocalBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xpander_sync.worker")
    worker = Worker(handle, configuration=config_for(backend), agent_id=AGENT, **FAST)
    assert worker._heartbeat.beat("wrk-unknown") is False
    assert "worker-heartbeat for worker wrk-unknown not accepted: [404] Worker not found" in caplog.text


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

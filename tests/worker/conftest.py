"""Shared by the worker tests: a local backend, a configuration for it, a worker run on a thread, waits."""

from __future__ import annotations

import socketserver
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

from xpander_sync import Backend, Configuration, RetryPolicy, Task
from xpander_sync.handlers import clear_worker_handlers
from xpander_sync.local import LocalBackend
from xpander_sync.worker import Worker

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


def handle(task: Task) -> Task:
    task.result = "ok"
    return task


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

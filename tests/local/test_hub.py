"""The worker-stream hub of the local backend: the worker stream and the worker POST route, through real HTTP
on loopback.

The stream is read here with a deliberately small reader (split on blank lines), independent of the
worker's SSE parser and its other internals, so these tests pin down the bytes the backend sends.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests

from xpander_sync.local import LocalBackend
from xpander_sync.worker._stream import _stream_socket  # the worker's way to reach the stream's socket

API_KEY = "xpk-LOCAL-STREAM-SENTINEL-0002"
ORG = "local-org"
AGENT = "agt-openai"
ASSET_KEYS = {
    "id", "name", "organization_id", "type", "created_at", "created_by", "last_heartbeat", "configuration",
    "dedicated_agent_id", "parent_asset_id", "is_busy", "metadata",
}


class Frames:
    """A worker stream read on a thread; every frame (or ``None`` at the end) lands in a queue."""

    def __init__(self, backend: LocalBackend, agent_id: str = AGENT, *, key: str = API_KEY,
                 query: str = "environment=local&supports_llm_gateway=true") -> None:
        self.response = requests.get(
            f"{backend.url}/{ORG}/events/{agent_id}/?{query}",
            headers={"x-api-key": key, "Accept": "text/event-stream"},
            stream=True,
            timeout=(5, 30),
        )
        self.frames: queue.Queue[Optional[dict[str, Any]]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status_code == 200:
            self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.response.raw.read1(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    self.frames.put(_parse(raw.decode("utf-8")))
        except Exception:  # the connection was cut: that is an end too
            pass
        self.frames.put(None)

    def next(self, timeout: float = 5.0, *, comments: bool = False) -> Optional[dict[str, Any]]:
        """The next frame (skipping keep-alive comments unless asked); ``None`` at the end of the stream."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            if frame is None or comments or frame["event"] != "comment":
                return frame

    def tasks(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        frames = [self.next(timeout) for _ in range(count)]
        assert all(f is not None and f["event"] == "agent-execution" for f in frames), frames
        return [f["data"] for f in frames]  # type: ignore[index]

    def registration(self) -> dict[str, Any]:
        frame = self.next()
        assert frame is not None and frame["event"] == "worker-registration", frame
        return frame["data"]

    def cut(self) -> None:
        """Close the connection from the client side (as a worker that goes away)."""
        sock = _stream_socket(self.response)
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.response.close()


def _parse(raw: str) -> dict[str, Any]:
    lines = raw.split("\n")
    if all(line.startswith(":") for line in lines):
        return {"event": "comment", "data": raw}
    fields = dict(line.split(": ", 1) for line in lines)
    return {"event": fields["event"], "data": json.loads(fields["data"])}


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02, keepalive_interval=5.0) as b:
        yield b


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        yield s


def create(backend: LocalBackend, session: requests.Session, text: str, agent_id: str = AGENT,
           **fields: Any) -> dict[str, Any]:
    body = {"input": {"text": text, "files": [], "user": None}, **fields}
    resp = session.post(f"{backend.url}/agent-execution/{agent_id}", json=body, timeout=5)
    resp.raise_for_status()
    return resp.json()


def patch(backend: LocalBackend, session: requests.Session, task_id: str, **body: Any) -> dict[str, Any]:
    resp = session.patch(f"{backend.url}/agent-execution/{task_id}/update", json=body, timeout=5)
    resp.raise_for_status()
    return resp.json()


def worker_post(backend: LocalBackend, session: requests.Session, worker_id: str, body: Any,
                **query: str) -> requests.Response:
    params = {"type": "worker", "agent_id": AGENT, **query}
    return session.post(f"{backend.url}/{ORG}/events/{worker_id}", params=params, json=body, timeout=5)


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- the stream ------------------------------------------------------------------------------------------------


def test_registration_first_then_pending_tasks_oldest_first(
    backend: LocalBackend, session: requests.Session
) -> None:
    first = create(backend, session, "one")
    second = create(backend, session, "two")
    other_agent = create(backend, session, "not mine", agent_id="agt-anthropic")
    stream = Frames(backend)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"] == "text/event-stream"
    assert stream.response.headers["Transfer-Encoding"] == "chunked"
    asset = stream.registration()
    assert set(asset) == ASSET_KEYS
    assert asset["type"] == "worker" and asset["dedicated_agent_id"] == AGENT and asset["is_busy"] is False
    assert asset["id"].startswith("wrk-") and asset["metadata"]["name"] == "CRM Assistant"
    assert [t["id"] for t in stream.tasks(2)] == [first["id"], second["id"]]
    third = create(backend, session, "three")  # created while connected: sent without waiting for a poll
    (sent,) = stream.tasks(1)
    assert sent == backend._store.get_task(third["id"])  # the full stored Task JSON
    assert sent["status"] == "pending"
    (worker,) = backend.workers()
    assert worker["id"] == asset["id"] and worker["connected"] is True
    assert worker["delivered"] == [first["id"], second["id"], third["id"]]
    assert other_agent["id"] not in worker["delivered"]
    stream.cut()


def test_two_streams_never_get_the_same_task(backend: LocalBackend, session: requests.Session) -> None:
    streams = [Frames(backend), Frames(backend)]
    ids = [stream.registration()["id"] for stream in streams]
    created = {create(backend, session, f"t{i}")["id"] for i in range(12)}
    wait_for(lambda: sum(len(w["delivered"]) for w in backend.workers()) == 12)
    delivered = {w["id"]: w["delivered"] for w in backend.workers()}
    assert set(delivered[ids[0]]).isdisjoint(delivered[ids[1]])
    assert set(delivered[ids[0]]) | set(delivered[ids[1]]) == created
    for stream, worker_id in zip(streams, ids):
        # what each stream actually carried is exactly what the backend says it sent there
        assert [t["id"] for t in stream.tasks(len(delivered[worker_id]))] == delivered[worker_id]
        stream.cut()


def test_pending_tasks_of_a_lost_stream_go_to_the_next_one(
    backend: LocalBackend, session: requests.Session
) -> None:
    started = create(backend, session, "started")
    never_started = create(backend, session, "never started")
    first = Frames(backend)
    first_id = first.registration()["id"]
    assert {t["id"] for t in first.tasks(2)} == {started["id"], never_started["id"]}
    patch(backend, session, started["id"], status="executing")
    first.cut()  # the worker vanished without saying anything
    wait_for(lambda: not backend.workers()[0]["connected"])
    second = Frames(backend)
    assert second.registration()["id"] != first_id
    assert [t["id"] for t in second.tasks(1)] == [never_started["id"]]
    # nothing else follows: the executing task is never sent again
    patch(backend, session, never_started["id"], status="executing")
    marker = create(backend, session, "marker")
    assert [t["id"] for t in second.tasks(1)] == [marker["id"]]
    second.cut()


def test_a_task_put_back_to_pending_is_delivered_again(backend: LocalBackend, session: requests.Session) -> None:
    stream = Frames(backend)
    stream.registration()
    task = create(backend, session, "turn 1")
    assert stream.tasks(1)[0]["id"] == task["id"]
    patch(backend, session, task["id"], status="executing")
    patch(backend, session, task["id"], status="completed", result="answer 1")
    body = {"id": task["id"], "input": {"text": "turn 2", "files": [], "user": None}}
    session.post(f"{backend.url}/agent-execution/{AGENT}", json=body, timeout=5).raise_for_status()
    again = stream.tasks(1)[0]
    assert again["id"] == task["id"] and again["input"]["text"] == "turn 2" and again["execution_attempts"] == 2
    patch(backend, session, task["id"], status="completed")
    patch(backend, session, task["id"], status="pending")  # reopened by an update
    assert stream.tasks(1)[0]["id"] == task["id"]
    stream.cut()


def test_re_posting_a_task_still_pending_does_not_send_it_twice(
    backend: LocalBackend, session: requests.Session
) -> None:
    first = Frames(backend)
    first.registration()
    task = create(backend, session, "original")
    assert first.tasks(1)[0]["id"] == task["id"]
    second = Frames(backend)
    second.registration()
    body = {"id": task["id"], "input": {"text": "re-posted", "files": [], "user": None}}
    session.post(f"{backend.url}/agent-execution/{AGENT}", json=body, timeout=5).raise_for_status()
    marker = create(backend, session, "marker")
    # whichever stream gets the marker, neither gets the re-posted task a second time
    wait_for(lambda: any(marker["id"] in w["delivered"] for w in backend.workers()))
    assert [w["delivered"].count(task["id"]) for w in backend.workers()] == [1, 0]
    first.cut()
    second.cut()


def test_a_busy_worker_is_sent_nothing_until_it_is_free(session: requests.Session) -> None:
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02, keepalive_interval=0.2) as backend:
        stream = Frames(backend)
        worker_id = stream.registration()["id"]
        busy = {"id": str(uuid.uuid4()), "event": "worker-capacity-update", "data": {"is_busy": True}}
        assert worker_post(backend, session, worker_id, busy).status_code == 200
        task = create(backend, session, "wait for me")
        # The next thing on the stream is a keep-alive, not the task.
        assert stream.next(2.0, comments=True) == {"event": "comment", "data": ": keep-alive"}
        assert backend.workers()[0]["delivered"] == []
        free = dict(busy, id=str(uuid.uuid4()), data={"is_busy": False})
        assert worker_post(backend, session, worker_id, free).status_code == 200
        assert stream.tasks(1)[0]["id"] == task["id"]
        assert backend.workers()[0]["capacity_updates"] == [True, False]
        stream.cut()


def test_keep_alive_comments_on_a_quiet_stream() -> None:
    with LocalBackend(stream_poll_interval=0.02, keepalive_interval=0.1) as backend:
        stream = Frames(backend, key="")
        stream.registration()
        started = time.monotonic()
        assert stream.next(2.0, comments=True) == {"event": "comment", "data": ": keep-alive"}
        assert stream.next(2.0, comments=True) == {"event": "comment", "data": ": keep-alive"}
        assert time.monotonic() - started < 1.5
        stream.cut()


def test_stop_ends_streams_at_once() -> None:
    backend = LocalBackend(api_key=API_KEY).start()  # default 15 s keep-alive and 0.25 s poll
    stream = Frames(backend)
    stream.registration()
    started = time.monotonic()
    backend.stop()
    assert stream.next(3.0) is None
    assert time.monotonic() - started < 1.5


def test_disconnect_workers_cleanly_and_abruptly(backend: LocalBackend) -> None:
    stream = Frames(backend)
    stream.registration()
    assert backend.disconnect_workers() == 1
    assert stream.next(3.0) is None  # the terminating chunk: a clean end of the stream
    assert backend.workers(connected=True) == []
    abrupt = Frames(backend)
    abrupt.registration()
    assert backend.disconnect_workers(abrupt=True) == 1
    assert abrupt.next(3.0) is None
    wait_for(lambda: backend.workers(connected=True) == [])
    assert backend.disconnect_workers() == 0


def test_restart_on_the_same_file_and_port_redelivers_pending_tasks(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    first = LocalBackend(db_path=db, api_key=API_KEY, stream_poll_interval=0.02).start()
    port = first._httpd.server_address[1]  # type: ignore[union-attr]
    with requests.Session() as session:
        session.headers["x-api-key"] = API_KEY
        executing = create(first, session, "executing")
        pending = create(first, session, "pending")
        stream = Frames(first)
        stream.registration()
        assert len(stream.tasks(2)) == 2
        patch(first, session, executing["id"], status="executing")
        first.stop()
        assert stream.next(3.0) is None
        second = LocalBackend(db_path=db, api_key=API_KEY, port=port, stream_poll_interval=0.02).start()
        try:
            assert second.url == first.url
            again = Frames(second)
            again.registration()
            assert [t["id"] for t in again.tasks(1)] == [pending["id"]]
            marker = create(second, session, "marker")
            assert [t["id"] for t in again.tasks(1)] == [marker["id"]]
            again.cut()
        finally:
            second.stop()


def test_stream_refusals_are_json(backend: LocalBackend) -> None:
    def get(path: str, key: Optional[str] = API_KEY) -> requests.Response:
        headers = {"x-api-key": key} if key else {}
        return requests.get(backend.url + path, headers=headers, timeout=5)

    cases = [
        (get(f"/{ORG}/events/{AGENT}/", key=None), 401),
        (get(f"/{ORG}/events/{AGENT}/", key="wrong"), 403),
        (get(f"/{ORG}/events/agt-nope/"), 404),
        (get(f"/other-org/events/{AGENT}/"), 404),
        (get(f"/{ORG}/events/{AGENT}/?environment=prod"), 400),
    ]
    for resp, status in cases:
        assert resp.status_code == status, resp.text
        assert resp.headers["Content-Type"] == "application/json" and "detail" in resp.json()
    assert backend.workers() == []
    # The 2.0.0 client's "?environment=local/" and the path without a trailing slash are both streams.
    for stream in (Frames(backend, query="environment=local/"), Frames(backend, query="environment=xpander")):
        assert stream.registration()["metadata"]["environment"] in ("local", "xpander")
        stream.cut()
    assert [w["environment"] for w in backend.workers()] == ["local", "xpander"]


# -- the worker POST route -----------------------------------------------------------------------------------


def test_worker_posts_are_recorded(backend: LocalBackend, session: requests.Session) -> None:
    stream = Frames(backend)
    worker_id = stream.registration()["id"]
    now = dt.datetime.now().isoformat()
    beat = {"id": str(uuid.uuid4()), "event": "worker-heartbeat", "data": now}
    for _ in range(2):
        resp = worker_post(backend, session, worker_id, beat)
        assert resp.status_code == 200 and resp.json() == {}
    busy = {"id": str(uuid.uuid4()), "event": "worker-capacity-update", "data": {"is_busy": True}}
    assert worker_post(backend, session, worker_id, busy).status_code == 200
    done = {"id": str(uuid.uuid4()), "event": "worker-finished", "data": {}}
    assert worker_post(backend, session, worker_id, done).status_code == 200
    (worker,) = backend.workers()
    assert worker["heartbeats"] == 2 and worker["last_heartbeat"] == now
    assert worker["is_busy"] is True and worker["capacity_updates"] == [True] and worker["finished"] is True
    entries = [e for e in backend.requests_log if e["method"] == "POST"]
    assert all(e["headers"]["x-api-key"] == "***" for e in entries)
    assert API_KEY not in json.dumps(backend.requests_log)
    stream.cut()


@pytest.mark.parametrize(
    ("body", "query", "status"),
    [
        ({"id": "e1", "event": "worker-heartbeat", "data": "not a date"}, {}, 400),
        ({"id": "e1", "event": "worker-heartbeat", "data": 5}, {}, 400),
        ({"id": "e1", "event": "worker-capacity-update", "data": {"is_busy": "yes"}}, {}, 400),
        ({"id": "e1", "event": "worker-dance", "data": {}}, {}, 400),
        ({"event": "worker-finished", "data": {}}, {}, 400),
        ([], {}, 400),
        ({"id": "e1", "event": "worker-finished", "data": {}}, {"type": "gateway"}, 400),
        ({"id": "e1", "event": "worker-finished", "data": {}}, {"agent_id": "agt-anthropic"}, 400),
        ({"id": "e1", "event": "worker-finished", "data": {}}, {"agent_id": ""}, 400),
    ],
)
def test_worker_post_validation(
    backend: LocalBackend, session: requests.Session, body: Any, query: dict[str, str], status: int
) -> None:
    stream = Frames(backend)
    worker_id = stream.registration()["id"]
    resp = worker_post(backend, session, worker_id, body, **query)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json" and isinstance(resp.json()["detail"], str)
    stream.cut()


def test_worker_post_unknown_worker_org_and_key(backend: LocalBackend, session: requests.Session) -> None:
    beat = {"id": "e1", "event": "worker-heartbeat", "data": dt.datetime.now().isoformat()}
    assert worker_post(backend, session, "wrk-unknown", beat).status_code == 404
    resp = session.post(f"{backend.url}/other-org/events/wrk-unknown", params={"type": "worker",
                                                                               "agent_id": AGENT}, json=beat)
    assert resp.status_code == 404
    assert requests.post(f"{backend.url}/{ORG}/events/wrk-unknown", json=beat, timeout=5).status_code == 401

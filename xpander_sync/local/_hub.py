"""The worker-stream hub: the event stream ``xpander-sync worker`` connects to, and the worker's POSTs.

Both routes live under the organization segment of ``Configuration.events_root`` (``{url}/{organization_id}``):

* ``GET /{org}/events/{agent_id}/?environment=local|xpander`` answers ``text/event-stream`` (chunked). The first
  frame is ``worker-registration`` (a ``DeployedAsset`` with a fresh worker id); then every ``pending`` task of
  the agent that no other open stream holds is sent as ``agent-execution`` (the stored Task JSON), oldest
  first, and *claimed* by this stream. Nothing is sent while the worker reported ``is_busy: true``. A
  ``: keep-alive`` comment goes out after ``keepalive_interval`` seconds of silence.
* Exactly-once delivery: a claimed task is never sent on another stream while the claiming stream is open.
  When a stream ends (the worker left, :meth:`WorkerHub.disconnect`, or the backend stopped), its claims are
  dropped, so tasks it received but never moved out of ``pending`` are sent again to the next worker; a task
  that reached ``executing`` is never re-sent. Claims live in memory: a backend restarted on the same
  ``db_path`` re-sends every task still ``pending``. A task put back to ``pending`` (a continuation, or an
  update back to ``pending``) is delivered again (:meth:`WorkerHub.task_deliverable`).
* ``POST /{org}/events/{worker_id}?type=worker&agent_id=...`` takes the worker's ``{"id", "event", "data"}``
  bodies: ``worker-heartbeat`` (an ISO datetime), ``worker-capacity-update`` (``{"is_busy": bool}``),
  ``worker-finished``. Unknown worker → 404; a bad body → 400.
* A stream notices a worker that went away within ``stream_poll_interval`` (the socket turns readable at EOF)
  and :meth:`WorkerHub.close` ends every stream at once.

One condition variable guards the hub's state and wakes the streams when a task becomes deliverable.
"""

from __future__ import annotations

import functools
import logging
import secrets
import socket
import threading
import time
from typing import Any, Optional

from . import _payloads as payloads
from ._agents import AgentCatalog
from ._routing import EventStream, HTTPError, PeerClosed, Request, StreamWrite
from .store import Store

logger = logging.getLogger(__name__)

#: Disconnected workers remembered by :meth:`WorkerHub.workers`.
_WORKER_HISTORY = 1000


class WorkerStream:
    """One connected worker: its registration, what it reported, and what it was sent.

    Args:
        worker_id: The id handed out in the registration frame.
        agent_id: The agent the worker serves.
        environment: ``local`` or ``xpander``.
        asset: The ``DeployedAsset`` JSON of the registration frame.
    """

    def __init__(self, worker_id: str, agent_id: str, environment: str, asset: dict[str, Any]) -> None:
        self.id = worker_id
        self.agent_id = agent_id
        self.environment = environment
        self.asset = asset
        self.connected = True
        self.is_busy = False
        self.heartbeats = 0
        self.last_heartbeat: Optional[str] = None
        self.capacity_updates: list[bool] = []
        self.finished = False
        self.delivered: list[str] = []
        self.connected_at = time.time()
        self.disconnected_at: Optional[float] = None
        self.close_requested = False
        self.sock: Optional[socket.socket] = None

    def snapshot(self) -> dict[str, Any]:
        """Return what :meth:`LocalBackend.workers` lists for this worker.

        Returns:
            A new dict (lists copied).
        """
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "connected": self.connected,
            "is_busy": self.is_busy,
            "heartbeats": self.heartbeats,
            "last_heartbeat": self.last_heartbeat,
            "capacity_updates": list(self.capacity_updates),
            "finished": self.finished,
            "delivered": list(self.delivered),
            "connected_at": self.connected_at,
            "disconnected_at": self.disconnected_at,
        }


class WorkerHub:
    """Open worker streams, the tasks each one claimed, and the routes of the worker protocol.

    Args:
        agents: The agents served (a stream is opened for one of them).
        store: Where the pending tasks are read from.
        organization_id: The organization segment of the worker routes.
        keepalive_interval: Seconds of silence after which a stream gets a ``: keep-alive`` comment.
        poll_interval: Seconds between a stream's checks for new pending tasks and for a vanished worker.
    """

    def __init__(
        self,
        agents: AgentCatalog,
        store: Store,
        *,
        organization_id: str,
        keepalive_interval: float,
        poll_interval: float,
    ) -> None:
        self._agents = agents
        self._store = store
        self._organization_id = organization_id
        self._keepalive_interval = keepalive_interval
        self._poll_interval = poll_interval
        self._delivery = threading.Condition()
        self._closed = False
        self._workers: dict[str, WorkerStream] = {}
        self._claims: dict[str, str] = {}  # task id -> id of the worker stream that was sent it
        self._worker_numbers: dict[str, int] = {}

    def close(self) -> None:
        """End every stream now (not at its next poll) and refuse new ones."""
        with self._delivery:
            self._closed = True
            self._delivery.notify_all()

    def task_deliverable(self, task_id: str, release: bool = True) -> None:
        """A task became pending (created or reopened): forget who was sent it (``release``), wake the streams.

        Args:
            task_id: The task id.
            release: Drop the claim on the task, so any stream may be sent it again.
        """
        with self._delivery:
            if release:
                self._claims.pop(task_id, None)
            self._delivery.notify_all()

    def workers(self, connected: Optional[bool] = None) -> list[dict[str, Any]]:
        """Return worker snapshots, oldest first (see :meth:`LocalBackend.workers`).

        Args:
            connected: ``True`` for open streams only, ``False`` for closed ones only, ``None`` for all.

        Returns:
            A list of snapshot dicts.
        """
        with self._delivery:
            snapshots = [w.snapshot() for w in self._workers.values()]
        if connected is not None:
            snapshots = [w for w in snapshots if w["connected"] is connected]
        return snapshots

    def disconnect(self, *, abrupt: bool = False) -> int:
        """End every open stream (see :meth:`LocalBackend.disconnect_workers`).

        Args:
            abrupt: Cut the TCP connection instead of ending the stream cleanly.

        Returns:
            How many streams were open.
        """
        with self._delivery:
            streams = [w for w in self._workers.values() if w.connected]
            for stream in streams:
                stream.close_requested = True
            self._delivery.notify_all()
        if abrupt:
            for stream in streams:
                if stream.sock is not None:
                    try:
                        stream.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        return len(streams)

    # -- routes --------------------------------------------------------------------------------------

    def _check_org(self, org: str) -> None:
        if org != self._organization_id:
            raise HTTPError(404, "Unknown organization")

    def open_stream(self, req: Request) -> tuple[int, Any]:
        """``GET /{org}/events/{agent_id}``: register a worker and answer with its event stream."""
        self._check_org(req.params["org"])
        agent = self._agents.get(req.params["agent_id"])
        # The official 2.0.0 client appends "/" after the query string ("?environment=local/").
        environment = (req.query.get("environment") or "local").rstrip("/")
        if environment not in payloads.WORKER_ENVIRONMENTS:
            raise HTTPError(400, "environment must be local or xpander")
        with self._delivery:
            if self._closed:
                raise HTTPError(503, "The backend is stopping")
            number = self._worker_numbers.get(agent["id"], 0) + 1
            self._worker_numbers[agent["id"]] = number
            worker_id = "wrk-" + secrets.token_hex(6)
            asset = payloads.worker_asset(worker_id, agent, self._agents.org(agent), environment, number)
            stream = WorkerStream(worker_id, agent["id"], environment, asset)
            self._workers[worker_id] = stream
            if len(self._workers) > _WORKER_HISTORY:
                gone = [w.id for w in self._workers.values() if not w.connected]
                for old_id in gone[: len(self._workers) - _WORKER_HISTORY]:
                    del self._workers[old_id]
        logger.debug("worker %s connected for agent %s", worker_id, agent["id"])
        return 200, EventStream(
            "worker " + worker_id, functools.partial(self._run, stream), functools.partial(self._end, stream)
        )

    def worker_event(self, req: Request) -> tuple[int, Any]:
        """``POST /{org}/events/{worker_id}``: a heartbeat, capacity update or finish from a worker."""
        self._check_org(req.params["org"])
        if req.query.get("type") != "worker":
            raise HTTPError(400, "type must be worker")
        agent_id = req.query.get("agent_id")
        if not agent_id:
            raise HTTPError(400, "agent_id query parameter is required")
        with self._delivery:
            stream = self._workers.get(req.params["worker_id"])
        if stream is None:
            raise HTTPError(404, "Worker not found")
        if stream.agent_id != agent_id:
            raise HTTPError(400, "agent_id does not match the worker's agent")
        event, data = payloads.validate_worker_event(req.body)
        with self._delivery:
            if event == "worker-heartbeat":
                stream.heartbeats += 1
                stream.last_heartbeat = data
            elif event == "worker-capacity-update":
                stream.is_busy = data["is_busy"]
                stream.capacity_updates.append(data["is_busy"])
                self._delivery.notify_all()
            else:
                stream.finished = True
        return 200, {}

    # -- one stream ----------------------------------------------------------------------------------

    def _claim_pending(self, stream: WorkerStream) -> list[dict[str, Any]]:
        """The agent's pending tasks no open stream holds, now claimed by ``stream``."""
        with self._delivery:
            held = set(self._claims)
        candidates = self._store.pending_tasks(stream.agent_id, exclude=held)
        claimed = []
        with self._delivery:
            for task in candidates:
                if task["id"] in self._claims or not stream.connected or stream.is_busy:
                    continue
                self._claims[task["id"]] = stream.id
                stream.delivered.append(task["id"])
                claimed.append(task)
        return claimed

    def _run(self, stream: WorkerStream, write: StreamWrite, peer_closed: PeerClosed, sock: socket.socket) -> None:
        """Serve one worker stream until the worker leaves or the hub closes (on the connection's thread).

        Raises:
            OSError: Writing to the worker failed (it went away).
        """
        with self._delivery:
            stream.sock = sock
        try:
            write(payloads.sse_frame("worker-registration", stream.asset))
            last_write = time.monotonic()
            while True:
                with self._delivery:
                    if self._closed or stream.close_requested:
                        return
                    busy = stream.is_busy
                if peer_closed():
                    return
                if not busy:
                    for task in self._claim_pending(stream):
                        write(payloads.sse_frame("agent-execution", task))
                        last_write = time.monotonic()
                if time.monotonic() - last_write >= self._keepalive_interval:
                    write(payloads.SSE_KEEPALIVE)
                    last_write = time.monotonic()
                with self._delivery:
                    if not (self._closed or stream.close_requested):
                        self._delivery.wait(
                            min(self._poll_interval,
                                max(0.0, self._keepalive_interval - (time.monotonic() - last_write)))
                        )
        finally:
            self._end(stream)

    def _end(self, stream: WorkerStream) -> None:
        """Mark ``stream`` gone and release its claims (idempotent)."""
        with self._delivery:
            if not stream.connected:
                return
            stream.connected = False
            stream.disconnected_at = time.time()
            stream.sock = None
            # Tasks this stream was sent but that never left "pending" go to the next worker.
            for task_id in [t for t, w in self._claims.items() if w == stream.id]:
                del self._claims[task_id]
            self._delivery.notify_all()
        logger.debug("worker %s disconnected", stream.id)

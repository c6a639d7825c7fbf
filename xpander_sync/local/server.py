"""A local, xpander-compatible HTTP backend built on the standard library only.

:class:`LocalBackend` serves the REST routes the Backend module of the official SDK calls (agents, tasks,
external-task reports, tool calls, MCP OAuth, event pushes, metrics) from a folder of agent JSON files and a
SQLite store (:mod:`xpander_sync.local.store`). It is meant for tests, demos and offline development: point
the client's ``base_url`` at :attr:`LocalBackend.url` (the routes carry no organization segment).

Design notes:

* ``http.server.ThreadingHTTPServer`` on ``127.0.0.1`` and an ephemeral port (never a fixed one), one thread
  per connection, HTTP/1.1 keep-alive with a ``Content-Length`` on every response so a ``requests.Session``
  reuses its connections.
* Every response, error or not, is JSON with ``Content-Type: application/json``; errors are
  ``{"detail": "..."}``. Protocol errors raised inside ``http.server`` (garbage request lines, unsupported
  methods) are answered in the same JSON shape, and the server keeps serving.
* Routing and behaviour live on :class:`LocalBackend` (``_handle``); the request handler class only moves
  bytes. Route functions raise :class:`_HTTPError` for client errors; anything else becomes a 500 whose body
  names no internals.
* :meth:`LocalBackend.stop` shuts the listening socket *and* every open keep-alive connection, so no request
  is served after it returns.
* Secrets: the configured API key is compared in constant time and never echoed; secret headers
  (``x-api-key``, ``authorization``, cookies, ... as :mod:`xpander_sync._redact` lists them) are replaced
  by ``"***"`` in :attr:`LocalBackend.requests_log` and in what tool handlers receive. Issued MCP tokens are only
  returned by ``get_token`` (``token_ready``) and :meth:`LocalBackend.complete_login`.

The worker stream (what ``xpander-sync worker`` connects to), under the organization segment of
``Configuration.events_root`` (``{url}/{organization_id}``):

* ``GET /{org}/events/{agent_id}/?environment=local|xpander`` answers ``text/event-stream`` (chunked). The first
  frame is ``worker-registration`` (a ``DeployedAsset`` with a fresh worker id); then every ``pending`` task of
  the agent that no other open stream holds is sent as ``agent-execution`` (the stored Task JSON), oldest
  first, and *claimed* by this stream. Nothing is sent while the worker reported ``is_busy: true``. A
  ``: keep-alive`` comment goes out after ``keepalive_interval`` seconds of silence.
* Exactly-once delivery: a claimed task is never sent on another stream while the claiming stream is open.
  When a stream ends (the worker left, :meth:`LocalBackend.disconnect_workers`, or the backend stopped), its
  claims are dropped, so tasks it received but never moved out of ``pending`` are sent again to the next
  worker; a task that reached ``executing`` is never re-sent. Claims live in memory: a backend restarted on
  the same ``db_path`` re-sends every task still ``pending``. A task put back to ``pending`` (a continuation
  through ``POST /agent-execution/{agent_id}`` with its id) is delivered again.
* ``POST /{org}/events/{worker_id}?type=worker&agent_id=...`` takes the worker's
  ``{"id", "event", "data"}`` bodies: ``worker-heartbeat`` (an ISO datetime), ``worker-capacity-update``
  (``{"is_busy": bool}``), ``worker-finished``. Unknown worker → 404; a bad body → 400.
* A stream notices a worker that went away within ``stream_poll_interval`` (the socket turns readable at
  EOF) and :meth:`LocalBackend.stop` ends every stream at once.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import os
import re
import secrets
import select
import selectors
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Union
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .._redact import redact_headers
from . import _payloads as payloads
from .store import Store, StoreClosedError

logger = logging.getLogger(__name__)

#: A local tool handler: ``fn(payload, headers) -> JSON-able result``.
ToolHandler = Callable[[Any, dict[str, str]], Any]

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Tool-call headers recorded by ``POST /agents/{agent_id}/operations/{tool_id}``.
TOOL_CALL_HEADERS = ("x-agent-version", "x-execution-id", "x-preflight-check", "x-tool-call-id")
#: Most entries kept in :attr:`LocalBackend.requests_log` (oldest dropped first).
REQUEST_LOG_LIMIT = 10_000

_STOP_JOIN_S = 2.0
#: Disconnected workers remembered by :meth:`LocalBackend.workers`.
_WORKER_HISTORY = 1000


def sample_agents_dir() -> Path:
    """Return the folder of bundled sample agents (``agt-openai``, ``agt-anthropic``, ``agt-team``, …).

    Returns:
        The absolute path of the ``sample_agents`` folder shipped with the package.
    """
    return Path(__file__).resolve().parent / "sample_agents"


class ToolError(Exception):
    """Raise from a registered tool handler to answer with a specific HTTP status.

    Args:
        status_code: The HTTP status of the response (e.g. 422).
        detail: The JSON ``detail`` of the error body.
    """

    def __init__(self, status_code: int, detail: str = "tool failed") -> None:
        super().__init__(detail)
        self.status_code = int(status_code)
        self.detail = detail


class _HTTPError(Exception):
    """A client-visible error: answered as ``{"detail": detail}`` with ``status``."""

    def __init__(self, status: int, detail: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class _Request(NamedTuple):
    """One parsed request, as seen by a route function."""

    method: str
    path: str
    params: dict[str, str]  # path parameters (URL-decoded)
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None for an empty body


class _Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: str  # name of the LocalBackend method
    auth: bool


def _route(method: str, template: str, handler: str, *, auth: bool = True) -> _Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return _Route(method, re.compile(regex), handler, auth)


# Order matters: the first full match wins (``/agents/list`` before ``/agents/{agent_id}``).
_ROUTES = (
    _route("GET", "/agents/list", "_r_agents_list"),
    _route("GET", "/agents/{agent_id}", "_r_agent_get"),
    _route("GET", "/agents/{agent_id}/db", "_r_agent_db"),
    _route("POST", "/agents/{agent_id}/operations/{tool_id}", "_r_tool_call"),
    _route("GET", "/metadata/default_llm_extra_headers", "_r_llm_headers"),
    _route("POST", "/agent-execution/{agent_id}/report_task", "_r_report_task"),
    _route("POST", "/agent-execution/{task_id}/events/push", "_r_events_push"),
    _route("GET", "/agent-execution/{task_id}/status", "_r_task_status"),
    _route("PATCH", "/agent-execution/{task_id}/update", "_r_task_update"),
    _route("POST", "/agent-execution/{agent_id}", "_r_task_create"),
    _route("DELETE", "/agent-execution/{task_id}", "_r_task_stop"),
    _route("POST", "/agents-metrics/{agent_id}/execution", "_r_metrics"),
    _route("GET", "/mcp_auth/login", "_r_mcp_login", auth=False),  # the user's browser: no API key
    _route("POST", "/mcp_auth/{agent_id}/{user_id}/get_token", "_r_mcp_get_token"),
    # The worker stream and its POST route live under the organization segment (Configuration.events_root).
    _route("GET", "/{org}/events/{agent_id}/", "_r_worker_stream"),
    _route("GET", "/{org}/events/{agent_id}", "_r_worker_stream"),
    _route("POST", "/{org}/events/{worker_id}", "_r_worker_event"),
)


class _WorkerStream:
    """One connected worker: its registration, what it reported, and what it was sent."""

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


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client closed its side: a worker sends nothing after its request, so a readable socket
    means EOF (or garbage, which we ignore)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _flag(value: Optional[str], default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes")


class LocalBackend:
    """A local HTTP server speaking the xpander.ai Backend REST API.

    Agents come from ``*.json`` files (one agent object per file, keyed by its ``id``; older versions may sit
    in ``{id}@{version}.json`` files, the highest ``version`` is the latest). Tasks, reports, events, tool
    calls, metrics and MCP tokens live in SQLite, so they survive a restart on the same ``db_path`` and
    several processes may share one file.

    Example::

        with LocalBackend() as backend:
            requests.get(backend.url + "/agents/agt-openai").json()["name"]  # 'CRM Assistant'

    Args:
        agents_dir: Folder of agent JSON files; ``None`` uses :func:`sample_agents_dir`.
        db_path: SQLite file; ``None`` (or ``":memory:"``) uses a private temporary file deleted by
            :meth:`stop`.
        api_key: When set, every route except the simulated login page requires ``x-api-key``: missing → 401,
            wrong → 403.
        host: Interface to bind (default loopback only).
        port: Port to bind; ``0`` (default) picks a free one.
        organization_id: Used for agents (and their tasks) whose JSON has no ``organization_id``; also the
            organization segment of the worker routes (``Configuration(base_url=backend.url,
            organization_id=...).events_root``).
        default_llm_headers: Returned by ``GET /metadata/default_llm_extra_headers`` (default ``{}``).
        keepalive_interval: Seconds of silence after which a worker stream gets a ``: keep-alive`` comment.
        stream_poll_interval: Seconds between a worker stream's checks for new pending tasks (tasks created
            through this backend are sent at once) and for a vanished worker.

    Raises:
        FileNotFoundError: ``agents_dir`` is not a folder.
        ValueError: An agent file is not a JSON object with a string ``id`` and an integer ``version``, or
            ``keepalive_interval`` or ``stream_poll_interval`` is not positive.
    """

    def __init__(
        self,
        agents_dir: Union[str, os.PathLike[str], None] = None,
        db_path: Union[str, os.PathLike[str], None] = None,
        *,
        api_key: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        organization_id: str = "local-org",
        default_llm_headers: Optional[dict[str, str]] = None,
        keepalive_interval: float = 15.0,
        stream_poll_interval: float = 0.25,
    ) -> None:
        if keepalive_interval <= 0 or stream_poll_interval <= 0:
            raise ValueError("keepalive_interval and stream_poll_interval must be positive")
        self._api_key = api_key
        self._host = host
        self._port = int(port)
        self.organization_id = organization_id
        self._default_llm_headers = dict(default_llm_headers or {})
        self._loaded_at = payloads.now_iso()

        self._lock = threading.RLock()
        self._agents: dict[str, dict[int, dict[str, Any]]] = {}
        self._tools: dict[str, ToolHandler] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)
        self._keepalive_interval = float(keepalive_interval)
        self._stream_poll_interval = float(stream_poll_interval)
        # Worker streams: guarded by _delivery, which also wakes streams when tasks become deliverable.
        self._delivery = threading.Condition()
        self._workers: dict[str, _WorkerStream] = {}
        self._claims: dict[str, str] = {}  # task id -> id of the worker stream that was sent it
        self._worker_numbers: dict[str, int] = {}

        self._load_agents(Path(agents_dir) if agents_dir is not None else sample_agents_dir())
        self._store = Store(None if db_path is None else os.fspath(db_path))

        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None  # the thread running the accept loop
        self._owns_thread = False  # True when start() created that thread
        self._stopped = False

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None and not self._stopped else "not serving"
        return f"<LocalBackend {where} agents={len(self._agents)}>"

    # -- agents and tools --------------------------------------------------------------------------

    def _load_agents(self, folder: Path) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"agents_dir is not a folder: {folder}")
        for file in sorted(folder.glob("*.json")):
            try:
                agent = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"{file.name}: not a readable JSON file ({exc.__class__.__name__})"
                ) from None
            try:
                self.add_agent(agent)
            except ValueError as exc:
                raise ValueError(f"{file.name}: {exc}") from None

    def add_agent(self, agent: dict[str, Any]) -> None:
        """Add (or replace) one version of an agent.

        The agent is served as given (a deep copy), except keys starting with ``_local``, which configure the
        local backend (``_local_db_uri`` overrides the ``GET /agents/{id}/db`` connection string) and are
        stripped from every response.

        Args:
            agent: The agent JSON; needs a string ``id``; ``version`` (integer) defaults to 1.

        Raises:
            ValueError: ``agent`` is not an object with a string ``id``, or ``version`` is not an integer.
        """
        if not isinstance(agent, dict) or not isinstance(agent.get("id"), str) or not agent["id"]:
            raise ValueError("an agent must be a JSON object with a non-empty string 'id'")
        version = payloads.agent_version(agent)
        with self._lock:
            self._agents.setdefault(agent["id"], {})[version] = copy.deepcopy(agent)

    def register_tool(self, tool_id: str, fn: Optional[ToolHandler] = None) -> Any:
        """Serve ``POST /agents/{agent_id}/operations/{tool_id}`` with a Python function.

        The handler is called as ``fn(payload, headers)`` with the parsed JSON body (``{}`` when empty) and
        the request headers (lower-case names, API key redacted); its return value is sent as JSON. Raising
        :class:`ToolError` answers with that status; any other exception answers 500. Usable as a decorator:
        ``@backend.register_tool("MyTool")``.

        Args:
            tool_id: The tool id of the route.
            fn: The handler; omit to get a decorator.

        Returns:
            ``fn`` unchanged, or a decorator when ``fn`` is omitted.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if fn is None:
            return lambda f: self.register_tool(tool_id, f)
        if not callable(fn):
            raise TypeError("fn must be callable")
        with self._lock:
            self._tools[tool_id] = fn
        return fn

    def _agent(self, agent_id: str, version_header: Optional[str] = None) -> dict[str, Any]:
        """Return an agent (a given version or the latest); 404 for an unknown agent or version."""
        with self._lock:
            versions = self._agents.get(agent_id)
            if not versions:
                raise _HTTPError(404, "Agent not found")
            if version_header is None or version_header.strip() == "":
                return versions[max(versions)]
            try:
                version = int(version_header.strip())
            except ValueError:
                raise _HTTPError(400, "x-agent-version must be an integer") from None
            if version not in versions:
                raise _HTTPError(404, "Agent version not found")
            return versions[version]

    def _org(self, agent: dict[str, Any]) -> str:
        return str(agent.get("organization_id") or self.organization_id)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _bind(self) -> _Server:
        with self._lock:
            if self._stopped:
                raise RuntimeError(
                    "this LocalBackend was stopped; create a new one (same db_path to keep data)"
                )
            if self._httpd is None:
                self._httpd = _Server(self, self._host, self._port)
                logger.debug("local backend listening on %s", self.url)
            return self._httpd

    def start(self) -> LocalBackend:
        """Start serving in a daemon thread (idempotent).

        Returns:
            ``self``, so ``backend = LocalBackend().start()`` works.

        Raises:
            RuntimeError: The backend was already stopped.
            OSError: The address cannot be bound.
        """
        httpd = self._bind()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=httpd.serve,
                    name="xpander-local-backend",
                    daemon=True,
                )
                self._owns_thread = True
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` (from another thread) or Ctrl-C; then clean up.

        Meant for a command line; tests use :meth:`start`.

        Raises:
            RuntimeError: The backend is already serving in a thread, or was stopped.
        """
        httpd = self._bind()
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("already serving (start() was called)")
            self._thread = threading.current_thread()
        try:
            httpd.serve()
        except KeyboardInterrupt:
            logger.debug("local backend interrupted")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close every connection and the store. Idempotent.

        A private temporary database (``db_path=None``) is deleted; a named ``db_path`` keeps its data.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            httpd, thread = self._httpd, self._thread
        with self._delivery:
            self._delivery.notify_all()  # worker streams end now, not at their next poll
        if httpd is not None:
            if thread is not None and thread is not threading.current_thread():
                httpd.stop_serving()  # returns once the accept loop has ended
                if self._owns_thread:
                    thread.join(_STOP_JOIN_S)
            httpd.server_close()
            httpd.close_connections(_STOP_JOIN_S)
        self._store.close()
        logger.debug("local backend stopped")

    def __enter__(self) -> LocalBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash).

        Raises:
            RuntimeError: The server is not bound yet (call :meth:`start`).
        """
        if self._httpd is None:
            raise RuntimeError("the local backend is not started")
        address = self._httpd.server_address
        host, port = str(address[0]), address[1]
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- read-only helpers for tests ---------------------------------------------------------------

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        """Every request that reached routing (newest last), as dicts.

        Requests rejected while still being read (garbage request line, bad ``Content-Length``) are not
        listed.

        Keys: ``method``, ``path``, ``query`` (dict), ``headers`` (lower-case names; ``x-api-key`` and
        ``authorization`` values are ``"***"``), ``body`` (parsed JSON; ``None`` when empty; the raw text when
        not JSON), ``status`` (the response status) and ``client_port`` (the peer's port: equal ports mean a
        reused connection).
        """
        with self._lock:
            return copy.deepcopy(list(self._log))

    def tasks(self) -> list[dict[str, Any]]:
        """Return every stored Task JSON, oldest first.

        Returns:
            A list of Task JSON dicts.
        """
        return self._store.list_tasks()

    def reports(self) -> list[dict[str, Any]]:
        """Return every external-task report as ``{"id", "agent_id", "body", "received_at"}``.

        Returns:
            A list of report dicts, oldest first.
        """
        return self._store.list_reports()

    def events(self, task_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Return pushed events as ``{"task_id", "event", "received_at"}``, optionally for one task.

        Args:
            task_id: Only the events of this task; ``None`` for every task.

        Returns:
            A list of event dicts, oldest first.
        """
        return self._store.list_events(task_id)

    def tool_calls(self) -> list[dict[str, Any]]:
        """Return tool calls as ``{"agent_id", "tool_id", "method", "headers", "body", "received_at"}``.

        ``headers`` holds only the tool headers that were sent (``x-agent-version``, ``x-execution-id``,
        ``x-preflight-check``, ``x-tool-call-id``).

        Returns:
            A list of tool-call dicts, oldest first.
        """
        return self._store.list_tool_calls()

    def metrics(self) -> list[dict[str, Any]]:
        """Return execution-metrics reports as ``{"agent_id", "body", "received_at"}``.

        Returns:
            A list of metrics dicts, oldest first.
        """
        return self._store.list_metrics()

    def workers(self, *, connected: Optional[bool] = None) -> list[dict[str, Any]]:
        """Return the worker streams opened on this backend (oldest first), optionally only (dis)connected ones.

        Keys: ``id``, ``agent_id``, ``environment``, ``connected``, ``is_busy`` (last capacity update),
        ``heartbeats`` (count), ``last_heartbeat`` (the datetime string sent), ``capacity_updates`` (every
        ``is_busy`` received, in order), ``finished``, ``delivered`` (task ids sent on the stream, in order),
        ``connected_at`` and ``disconnected_at`` (epoch seconds).

        Args:
            connected: ``True`` for open streams only, ``False`` for closed ones only, ``None`` for all.

        Returns:
            A list of worker snapshot dicts (copies).
        """
        with self._delivery:
            snapshots = [w.snapshot() for w in self._workers.values()]
        if connected is not None:
            snapshots = [w for w in snapshots if w["connected"] is connected]
        return snapshots

    def disconnect_workers(self, *, abrupt: bool = False) -> int:
        """End every open worker stream (the workers are expected to reconnect), as a platform restart would.

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

    # -- MCP login -----------------------------------------------------------------------------------

    def complete_login(
        self,
        state: Optional[str] = None,
        *,
        user_id: Optional[str] = None,
        server_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> str:
        """Finish an MCP OAuth login, as if the user completed it in a browser.

        Either pass the ``state`` of a login URL handed out by ``get_token`` (``login_required``), or
        ``user_id`` and ``server_url`` directly (no pending login needed). The next ``get_token`` for that
        user and server answers ``token_ready``.

        Args:
            state: The ``state`` query value of the login URL.
            user_id: The user id as used in the ``get_token`` route (used when ``state`` is omitted).
            server_url: The MCP server URL (used when ``state`` is omitted).
            token: The access token to issue; a random one when omitted.

        Returns:
            The issued access token.

        Raises:
            ValueError: Neither ``state`` nor both ``user_id`` and ``server_url`` were given.
            KeyError: ``state`` is unknown.
        """
        if state is not None:
            login = self._store.get_mcp_login(state)
            if login is None:
                raise KeyError("unknown login state")
            user_id, server_url = login["user_id"], login["server_url"]
        if not user_id or not server_url:
            raise ValueError("pass state, or both user_id and server_url")
        issued = token or ("mcp-local-" + secrets.token_hex(16))
        self._store.set_mcp_token(user_id, server_url, issued)
        return issued

    # -- request handling ----------------------------------------------------------------------------

    def _handle(
        self, method: str, target: str, headers: dict[str, str], raw_body: bytes, client_port: int
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: ``(status, JSON payload, extra headers)``. Never raises."""
        split = urlsplit(target)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        body, body_ok = _parse_body(raw_body)
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": query,
            "headers": redact_headers(headers),
            "body": body,
            "status": None,
            "client_port": client_port,
        }
        with self._lock:
            self._log.append(entry)
        try:
            route, params, allowed = self._match(method, path)
            if route is None or route.auth:
                self._check_auth(headers)
            if route is None:
                if allowed:
                    raise _HTTPError(405, "Method not allowed", {"Allow": ", ".join(allowed)})
                raise _HTTPError(404, "Not found")
            if not body_ok:
                raise _HTTPError(400, "Request body is not valid JSON")
            request = _Request(method, path, params, query, headers, body)
            status, payload = getattr(self, route.handler)(request)
            extra: dict[str, str] = {}
        except _HTTPError as exc:
            status, payload, extra = exc.status, {"detail": exc.detail}, exc.headers
        except payloads.BodyError as exc:
            status, payload, extra = 400, {"detail": str(exc)}, {}
        except Exception:
            logger.exception("local backend: %s %s failed", method, path)
            status, payload, extra = 500, {"detail": "Internal server error"}, {}
        with self._lock:
            entry["status"] = status
        return status, payload, extra

    @staticmethod
    def _match(method: str, path: str) -> tuple[Optional[_Route], dict[str, str], list[str]]:
        """Return ``(route, path params, [])``, or ``(None, {}, allowed methods)`` when nothing matches."""
        allowed: list[str] = []
        for route in _ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}, []
            allowed.append(route.method)
        return None, {}, sorted(set(allowed))

    def _check_auth(self, headers: dict[str, str]) -> None:
        if self._api_key is None:
            return
        given = headers.get("x-api-key")
        if not given:
            raise _HTTPError(401, "Missing x-api-key header")
        if not hmac.compare_digest(given.encode("utf-8"), self._api_key.encode("utf-8")):
            raise _HTTPError(403, "Invalid API key")

    # -- routes: agents ------------------------------------------------------------------------------

    def _r_agents_list(self, req: _Request) -> tuple[int, Any]:
        with self._lock:
            latest = [versions[max(versions)] for _, versions in sorted(self._agents.items())]
        return 200, [payloads.agent_list_item(a, self.organization_id, self._loaded_at) for a in latest]

    def _r_agent_get(self, req: _Request) -> tuple[int, Any]:
        agent = self._agent(req.params["agent_id"], req.headers.get("x-agent-version"))
        return 200, payloads.public_agent(agent)

    def _r_agent_db(self, req: _Request) -> tuple[int, Any]:
        agent = self._agent(req.params["agent_id"])
        uri = agent.get("_local_db_uri") or payloads.DEFAULT_DB_URI
        return 200, {
            "id": agent["id"],
            "name": agent.get("name", agent["id"]),
            "organization_id": self._org(agent),
            "connection_uri": {"uri": uri},
        }

    def _r_llm_headers(self, req: _Request) -> tuple[int, Any]:
        return 200, dict(self._default_llm_headers)

    # -- routes: tasks -------------------------------------------------------------------------------

    def _r_task_create(self, req: _Request) -> tuple[int, Any]:
        agent = self._agent(req.params["agent_id"], req.headers.get("x-agent-version"))
        payloads.validate_create_body(req.body)
        body = req.body
        task_id = body.get("id") or payloads.new_id()

        was_pending = False

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            nonlocal was_pending
            if previous is not None and previous.get("agent_id") != agent["id"]:
                raise _HTTPError(409, "Task id belongs to another agent")
            was_pending = previous is not None and previous.get("status") == "pending"
            return payloads.task_from_create_body(
                body,
                task_id=task_id,
                agent_id=agent["id"],
                organization_id=self._org(agent),
                agent_version=str(payloads.agent_version(agent)),
                previous=previous,
            )

        task = self._store.upsert_task(task_id, build)
        # New, or continued after it ran (pending again): deliverable, even to a worker that had it before.
        # Re-posted while still pending: whoever holds it keeps it (sending it twice could run it twice).
        self._task_deliverable(task_id, release=not was_pending)
        return 200, task

    def _r_task_status(self, req: _Request) -> tuple[int, Any]:
        task = self._store.get_task(req.params["task_id"])
        if task is None:
            raise _HTTPError(404, "Task not found")
        return 200, task

    def _r_task_update(self, req: _Request) -> tuple[int, Any]:
        reopened = False

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            nonlocal reopened
            if previous is None:
                raise _HTTPError(404, "Task not found")
            task = payloads.merge_task_update(previous, req.body)
            reopened = previous.get("status") != "pending" and task.get("status") == "pending"
            return task

        task = self._store.upsert_task(req.params["task_id"], build)
        if reopened:
            self._task_deliverable(req.params["task_id"])
        return 200, task

    def _r_task_stop(self, req: _Request) -> tuple[int, Any]:
        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            if previous is None:
                raise _HTTPError(404, "Task not found")
            task = payloads.merge_task_update(previous, {"status": "stopped"})
            task["is_manually_stopped"] = True
            return task

        return 200, self._store.upsert_task(req.params["task_id"], build)

    def _r_report_task(self, req: _Request) -> tuple[int, Any]:
        agent = self._agent(req.params["agent_id"])
        payloads.validate_report_body(req.body)
        body = req.body
        task_id = body["id"] or payloads.new_id()

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            return payloads.task_from_report(
                body,
                task_id=task_id,
                agent_id=agent["id"],
                organization_id=self._org(agent),
                previous=previous,
            )

        task, created = self._store.add_report(task_id, agent["id"], body, build)
        if not created:
            logger.debug("report %s already stored; returning the stored task", task_id)
        return 200, task

    def _r_events_push(self, req: _Request) -> tuple[int, Any]:
        if not isinstance(req.body, list):
            raise _HTTPError(400, "invalid request body: the body must be a JSON array of events")
        self._store.add_events(req.params["task_id"], req.body)
        return 200, {}

    def _r_metrics(self, req: _Request) -> tuple[int, Any]:
        agent = self._agent(req.params["agent_id"])
        if not isinstance(req.body, dict):
            raise _HTTPError(400, "invalid request body: the body must be a JSON object")
        self._store.add_metric(agent["id"], req.body)
        return 200, {}

    # -- routes: tools -------------------------------------------------------------------------------

    def _r_tool_call(self, req: _Request) -> tuple[int, Any]:
        agent_id, tool_id = req.params["agent_id"], req.params["tool_id"]
        self._agent(agent_id)
        self._store.add_tool_call(
            {
                "agent_id": agent_id,
                "tool_id": tool_id,
                "method": req.method,
                "headers": {h: req.headers[h] for h in TOOL_CALL_HEADERS if h in req.headers},
                "body": req.body,
                "received_at": payloads.now_iso(),
            }
        )
        with self._lock:
            handler = self._tools.get(tool_id)
        if handler is None:
            return 200, {
                "tool_id": tool_id,
                "agent_id": agent_id,
                "execution_id": req.headers.get("x-execution-id"),
                "payload": req.body,
            }
        payload = req.body if req.body is not None else {}
        try:
            result = handler(payload, redact_headers(req.headers))
            json.dumps(result)
        except ToolError as exc:
            raise _HTTPError(exc.status_code, exc.detail) from None
        except Exception as exc:
            logger.warning("local tool handler %r raised %s", tool_id, exc.__class__.__name__, exc_info=True)
            raise _HTTPError(500, f"Tool handler {tool_id!r} failed: {exc.__class__.__name__}") from None
        return 200, result

    # -- routes: the worker stream -------------------------------------------------------------------

    def _check_org(self, org: str) -> None:
        if org != self.organization_id:
            raise _HTTPError(404, "Unknown organization")

    def _task_deliverable(self, task_id: str, *, release: bool = True) -> None:
        """A task became pending (created or reopened): forget who was sent it (``release``), wake the streams."""
        with self._delivery:
            if release:
                self._claims.pop(task_id, None)
            self._delivery.notify_all()

    def _r_worker_stream(self, req: _Request) -> tuple[int, Any]:
        self._check_org(req.params["org"])
        agent = self._agent(req.params["agent_id"])
        # The official 2.0.0 client appends "/" after the query string ("?environment=local/").
        environment = (req.query.get("environment") or "local").rstrip("/")
        if environment not in payloads.WORKER_ENVIRONMENTS:
            raise _HTTPError(400, "environment must be local or xpander")
        with self._delivery:
            if self._stopped:
                raise _HTTPError(503, "The backend is stopping")
            number = self._worker_numbers.get(agent["id"], 0) + 1
            self._worker_numbers[agent["id"]] = number
            worker_id = "wrk-" + secrets.token_hex(6)
            asset = payloads.worker_asset(worker_id, agent, self._org(agent), environment, number)
            stream = _WorkerStream(worker_id, agent["id"], environment, asset)
            self._workers[worker_id] = stream
            if len(self._workers) > _WORKER_HISTORY:
                for old_id in [w.id for w in self._workers.values() if not w.connected][: len(self._workers)
                                                                                          - _WORKER_HISTORY]:
                    del self._workers[old_id]
        logger.debug("worker %s connected for agent %s", worker_id, agent["id"])
        return 200, stream

    def _r_worker_event(self, req: _Request) -> tuple[int, Any]:
        self._check_org(req.params["org"])
        if req.query.get("type") != "worker":
            raise _HTTPError(400, "type must be worker")
        agent_id = req.query.get("agent_id")
        if not agent_id:
            raise _HTTPError(400, "agent_id query parameter is required")
        with self._delivery:
            stream = self._workers.get(req.params["worker_id"])
        if stream is None:
            raise _HTTPError(404, "Worker not found")
        if stream.agent_id != agent_id:
            raise _HTTPError(400, "agent_id does not match the worker's agent")
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

    def _claim_pending(self, stream: _WorkerStream) -> list[dict[str, Any]]:
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

    def _run_worker_stream(
        self, stream: _WorkerStream, write: Callable[[bytes], None], peer_closed: Callable[[], bool]
    ) -> None:
        """Serve one worker stream until the worker leaves or the backend stops (on the connection's thread).

        Raises:
            OSError: Writing to the worker failed (it went away).
        """
        try:
            write(payloads.sse_frame("worker-registration", stream.asset))
            last_write = time.monotonic()
            while True:
                with self._delivery:
                    if self._stopped or stream.close_requested:
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
                    if not (self._stopped or stream.close_requested):
                        self._delivery.wait(
                            min(self._stream_poll_interval,
                                max(0.0, self._keepalive_interval - (time.monotonic() - last_write)))
                        )
        finally:
            self._end_worker_stream(stream)

    def _end_worker_stream(self, stream: _WorkerStream) -> None:
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

    # -- routes: MCP OAuth ---------------------------------------------------------------------------

    def _r_mcp_get_token(self, req: _Request) -> tuple[int, Any]:
        agent_id, user_id = req.params["agent_id"], req.params["user_id"]
        self._agent(agent_id)
        server = req.body
        if not isinstance(server, dict):
            raise _HTTPError(400, "invalid request body: the body must be the MCP server details object")
        server_url = server.get("url")
        if not isinstance(server_url, str) or not server_url:
            return 200, {
                "type": "not_supported",
                "data": {"message": "the local backend handles OAuth for remote MCP servers with a url only"},
            }
        if _flag(req.query.get("force_refresh"), False):
            self._store.delete_mcp_token(user_id, server_url)
        token = self._store.get_mcp_token(user_id, server_url)
        if token is not None:
            return 200, {"type": "token_ready", "data": {"access_token": token}}
        login = None
        if not _flag(req.query.get("generate_login_url"), True):
            login = self._store.pending_mcp_login(user_id, server_url)
        if login is None:
            login = {
                "state": secrets.token_urlsafe(16),
                "agent_id": agent_id,
                "user_id": user_id,
                "server_url": server_url,
                "server_name": server.get("name"),
                "execution_id": req.query.get("execution_id"),
                "created_at": time.time(),
            }
            self._store.add_mcp_login(login)
        return 200, {
            "type": "login_required",
            "data": {
                "url": f"{self.url}/mcp_auth/login?state={quote(login['state'])}",
                "server_url": server_url,
                "server_name": login["server_name"],
            },
        }

    def _r_mcp_login(self, req: _Request) -> tuple[int, Any]:
        state = req.query.get("state")
        if not state:
            raise _HTTPError(400, "Missing state query parameter")
        login = self._store.get_mcp_login(state)
        if login is None:
            raise _HTTPError(404, "Unknown or expired login state")
        if login["completed_at"] is None:
            self.complete_login(state)
        return 200, {
            "status": "ok",
            "detail": "Login complete. You can close this window.",
            "user_id": login["user_id"],
            "server_url": login["server_url"],
            "server_name": login["server_name"],
        }


def _parse_body(raw: bytes) -> tuple[Any, bool]:
    """Return ``(value, ok)``: parsed JSON, ``None`` for an empty body, or the raw text with ``ok=False``."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw.decode("utf-8")), True
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", errors="replace"), False


class _Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with an accept loop that stops at once and tracked connections.

    ``BaseServer.serve_forever`` notices ``shutdown()`` only at its next poll (0.5 s by default);
    :meth:`serve` also watches a socket pair, so :meth:`stop_serving` wakes it immediately and an idle
    server never polls. :meth:`close_connections` ends the keep-alive loops of open connections.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, backend: LocalBackend, host: str, port: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.backend = backend
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._stop_requested = False
        self._loop_done = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__((host, port), _Handler)
        self.socket.setblocking(False)

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving` (each one is handled on its own thread)."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._stop_requested:
                    ready = selector.select()
                    if self._stop_requested:
                        break
                    if any(key.fileobj is self for key, _ in ready):
                        # accepts one connection and hands it to process_request (a thread); the listening
                        # socket is non-blocking, so a connection that vanished before accept() is skipped.
                        self._handle_request_noblock()  # type: ignore[attr-defined]
                    self.service_actions()
        finally:
            self._loop_done.set()

    def stop_serving(self) -> None:
        """Ask :meth:`serve` to return and wait until it has (call only while it runs or is about to)."""
        self._stop_requested = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._loop_done.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="xpander-local-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection (ending keep-alive loops) and wait up to ``timeout`` for its thread."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, thread in conns:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Default prints a traceback to stderr; a vanished client is routine here.
        logger.debug("local backend: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Moves bytes between the socket and :meth:`LocalBackend._handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "xpander-sync-local"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except _HTTPError as exc:
            self.close_connection = True  # the rest of the body (if any) is still in the socket
            self._send_json(exc.status, {"detail": exc.detail})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.backend._handle(
            self.command, self.path, headers, raw, self.client_address[1]
        )
        if isinstance(payload, _WorkerStream):
            self._send_worker_stream(payload)
            return
        self._send_json(status, payload, extra)

    def _send_worker_stream(self, stream: _WorkerStream) -> None:
        """Send an endless ``text/event-stream`` (chunked) until the backend says stop."""
        self.close_connection = True  # the stream is the last thing on this connection
        sock = self.connection
        stream.sock = sock

        def write(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.server.backend._run_worker_stream(stream, write, lambda: _peer_closed(sock))
            self.wfile.write(b"0\r\n\r\n")  # a clean end: the worker reconnects
        except (OSError, ValueError):
            logger.debug("worker stream %s: connection lost", stream.id)
        except StoreClosedError:
            logger.debug("worker stream %s: the backend stopped", stream.id)
        finally:
            self.server.backend._end_worker_stream(stream)  # also when the headers never went out

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _HTTPError(400, "Invalid Content-Length header") from None
        if length < 0:
            raise _HTTPError(400, "Invalid Content-Length header")
        if length > MAX_BODY_BYTES:
            raise _HTTPError(413, "Request body too large")
        data = self.rfile.read(length)
        if len(data) != length:
            raise _HTTPError(400, "Incomplete request body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HTTPError(400, "Invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise _HTTPError(413, "Request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _HTTPError(400, "Incomplete request body")
            chunks.append(chunk)
            self.rfile.readline()  # the CRLF closing the chunk

    def _send_json(self, status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not supported")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Answer protocol errors raised by ``http.server`` as JSON (and close the connection)."""
        if self.request_version == "HTTP/0.9":  # unparsable request line: still answer with HTTP/1.1
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        short = self.responses.get(code, ("Error",))[0]
        self.log_error("code %d, message %s", code, message or short)
        self._send_json(code, {"detail": message or short})

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)

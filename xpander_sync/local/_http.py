"""HTTP plumbing of the local backend: routing, JSON bodies and errors, the socket server and request handler.

Nothing here knows what the routes mean; :mod:`xpander_sync.local.server` fills a :class:`Router` with the
route functions of the platform logic (:mod:`._platform`), the worker-stream hub (:mod:`._hub`) and the MCP-auth
emulation (:mod:`._mcp`).

* :class:`Router` maps ``(method, path)`` to a route function; ``{name}`` in a template matches one path segment.
* :class:`Dispatcher` answers one request: it logs it (secret headers redacted), checks the API key, calls the
  route function and turns every outcome into ``(status, JSON payload, extra headers)``. A route raises
  :class:`HTTPError` (or :class:`~._payloads.BodyError`) for a client error; anything else becomes a 500 whose
  body names no internals. A route that streams returns an :class:`EventStream` instead of a JSON payload.
* :class:`Server` (``ThreadingHTTPServer``, one thread per connection) and :class:`Handler` move bytes: HTTP/1.1
  keep-alive with a ``Content-Length`` on every JSON response, chunked ``text/event-stream`` for an
  :class:`EventStream`, and protocol errors raised inside ``http.server`` answered in the same JSON shape.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import re
import select
import selectors
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from .._redact import redact_headers
from ..errors import StoreClosedError
from ._payloads import BodyError

logger = logging.getLogger(__name__)

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 16 * 1024 * 1024


class HTTPError(Exception):
    """A client-visible error: answered as ``{"detail": detail}`` with ``status``.

    Args:
        status: The HTTP status of the response.
        detail: The JSON ``detail`` of the error body.
        headers: Extra response headers (e.g. ``Allow``).
    """

    def __init__(self, status: int, detail: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Request(NamedTuple):
    """One parsed request, as seen by a route function."""

    method: str
    path: str
    params: dict[str, str]  # path parameters (URL-decoded)
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None for an empty body


#: ``write(data)`` sends one chunk of a stream; ``peer_closed()`` says whether the client hung up.
StreamWrite = Callable[[bytes], None]
PeerClosed = Callable[[], bool]


class EventStream(NamedTuple):
    """What a route returns instead of a JSON payload to answer with an endless ``text/event-stream``.

    The handler sends the headers, then calls ``run(write, peer_closed, sock)`` on the connection's thread until
    it returns (the stream then ends cleanly) or raises ``OSError`` (the client went away); ``end()`` is always
    called afterwards, also when the headers never went out. ``sock`` lets the owner cut the connection.
    """

    label: str
    run: Callable[[StreamWrite, PeerClosed, socket.socket], None]
    end: Callable[[], None]


#: A route function: ``fn(request) -> (status, JSON payload or EventStream)``.
RouteFunction = Callable[[Request], "tuple[int, Any]"]


class Route(NamedTuple):
    """One entry of the routing table."""

    method: str
    pattern: re.Pattern[str]
    handler: RouteFunction
    auth: bool  # whether the API key is required


class Router:
    """An ordered routing table: the first route whose pattern fully matches the path wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: RouteFunction, *, auth: bool = True) -> None:
        """Append a route.

        Args:
            method: The HTTP method (upper case).
            template: The path, with ``{name}`` for a path parameter (one segment, URL-decoded).
            handler: The route function.
            auth: Whether the API key (when the backend has one) is required.
        """
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(regex), handler, auth))

    def match(self, method: str, path: str) -> tuple[Optional[Route], dict[str, str], list[str]]:
        """Find the route of a request.

        Args:
            method: The request method.
            path: The request path (no query string).

        Returns:
            ``(route, path params, [])``, or ``(None, {}, allowed methods)`` when nothing matches.
        """
        allowed: list[str] = []
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}, []
            allowed.append(route.method)
        return None, {}, sorted(set(allowed))


def parse_body(raw: bytes) -> tuple[Any, bool]:
    """Parse a request body.

    Args:
        raw: The body bytes.

    Returns:
        ``(value, ok)``: parsed JSON, ``None`` for an empty body, or the raw text with ``ok=False``.
    """
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw.decode("utf-8")), True
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", errors="replace"), False


class Dispatcher:
    """Answers requests from a :class:`Router`, checks the API key and keeps the request log.

    Args:
        router: The routing table.
        api_key: When set, routes with ``auth`` (and unknown paths) require ``x-api-key``: missing → 401,
            wrong → 403 (compared in constant time, never echoed).
        log_limit: Most entries kept in the request log (oldest dropped first).
    """

    def __init__(self, router: Router, *, api_key: Optional[str], log_limit: int) -> None:
        self._router = router
        self._api_key = api_key
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_limit)

    def requests_log(self) -> list[dict[str, Any]]:
        """Return a copy of the request log (newest last); see :attr:`LocalBackend.requests_log`.

        Returns:
            A list of entry dicts.
        """
        with self._lock:
            return copy.deepcopy(list(self._log))

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw_body: bytes, client_port: int
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request. Never raises.

        Args:
            method: The request method.
            target: The request target (path and query string).
            headers: The request headers, lower-case names.
            raw_body: The body bytes (``b""`` when none).
            client_port: The peer's port (recorded in the log).

        Returns:
            ``(status, JSON payload or EventStream, extra headers)``.
        """
        split = urlsplit(target)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        body, body_ok = parse_body(raw_body)
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
            route, params, allowed = self._router.match(method, path)
            if route is None or route.auth:
                self._check_auth(headers)
            if route is None:
                if allowed:
                    raise HTTPError(405, "Method not allowed", {"Allow": ", ".join(allowed)})
                raise HTTPError(404, "Not found")
            if not body_ok:
                raise HTTPError(400, "Request body is not valid JSON")
            status, payload = route.handler(Request(method, path, params, query, headers, body))
            extra: dict[str, str] = {}
        except HTTPError as exc:
            status, payload, extra = exc.status, {"detail": exc.detail}, exc.headers
        except BodyError as exc:
            status, payload, extra = 400, {"detail": str(exc)}, {}
        except Exception:
            logger.exception("local backend: %s %s failed", method, path)
            status, payload, extra = 500, {"detail": "Internal server error"}, {}
        with self._lock:
            entry["status"] = status
        return status, payload, extra

    def _check_auth(self, headers: dict[str, str]) -> None:
        if self._api_key is None:
            return
        given = headers.get("x-api-key")
        if not given:
            raise HTTPError(401, "Missing x-api-key header")
        if not hmac.compare_digest(given.encode("utf-8"), self._api_key.encode("utf-8")):
            raise HTTPError(403, "Invalid API key")


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client closed its side of ``sock``.

    A streaming client sends nothing after its request, so a readable socket means EOF (or garbage, which is
    ignored).

    Args:
        sock: The connection.

    Returns:
        ``True`` when the peer hung up (or the socket is unusable).
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with an accept loop that stops at once and tracked connections.

    ``BaseServer.serve_forever`` notices ``shutdown()`` only at its next poll (0.5 s by default);
    :meth:`serve` also watches a socket pair, so :meth:`stop_serving` wakes it immediately and an idle
    server never polls. :meth:`close_connections` ends the keep-alive loops of open connections.

    Args:
        app: Answers each request.
        host: The interface to bind.
        port: The port to bind (``0`` for a free one).
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, app: Dispatcher, host: str, port: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.app = app
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._stop_requested = False
        self._loop_done = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__((host, port), Handler)
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
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle one accepted connection on its own (tracked) daemon thread.

        Args:
            request: The connection socket.
            client_address: The peer's address.
        """
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
        """Forget and close a finished connection.

        Args:
            request: The connection socket.
        """
        with self._conn_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection (ending keep-alive loops) and wait up to ``timeout`` for its thread.

        Args:
            timeout: Seconds to wait for the connection threads, in total.
        """
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
        """Log a connection error at debug level (the default prints a traceback; a vanished client is routine).

        Args:
            request: The connection socket.
            client_address: The peer's address.
        """
        logger.debug("local backend: connection error from %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    """Moves bytes between the socket and :meth:`Dispatcher.handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "xpander-sync-local"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: Server

    def version_string(self) -> str:
        """Return the ``Server`` header value (no Python version).

        Returns:
            The server name.
        """
        return self.server_version

    def do_GET(self) -> None:
        """Answer a request (every method goes through the same dispatch)."""
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except HTTPError as exc:
            self.close_connection = True  # the rest of the body (if any) is still in the socket
            self._send_json(exc.status, {"detail": exc.detail})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.app.handle(self.command, self.path, headers, raw, self.client_address[1])
        if isinstance(payload, EventStream):
            self._send_event_stream(payload)
            return
        self._send_json(status, payload, extra)

    def _send_event_stream(self, stream: EventStream) -> None:
        """Send an endless ``text/event-stream`` (chunked) until its owner says stop."""
        self.close_connection = True  # the stream is the last thing on this connection
        sock = self.connection

        def write(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            stream.run(write, lambda: peer_closed(sock), sock)
            self.wfile.write(b"0\r\n\r\n")  # a clean end: the client reconnects
        except (OSError, ValueError):
            logger.debug("event stream %s: connection lost", stream.label)
        except StoreClosedError:
            logger.debug("event stream %s: the backend stopped", stream.label)
        finally:
            stream.end()  # also when the headers never went out

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise HTTPError(400, "Invalid Content-Length header") from None
        if length < 0:
            raise HTTPError(400, "Invalid Content-Length header")
        if length > MAX_BODY_BYTES:
            raise HTTPError(413, "Request body too large")
        data = self.rfile.read(length)
        if len(data) != length:
            raise HTTPError(400, "Incomplete request body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HTTPError(400, "Invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise HTTPError(413, "Request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise HTTPError(400, "Incomplete request body")
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
        """Parse the request line and headers, refusing HTTP/0.9.

        Returns:
            Whether the request can be dispatched (an error was already sent otherwise).
        """
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not supported")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Answer protocol errors raised by ``http.server`` as JSON (and close the connection).

        Args:
            code: The HTTP status.
            message: The ``detail``; the status's reason phrase when omitted.
            explain: Unused (``http.server`` passes a long explanation for its HTML page).
        """
        if self.request_version == "HTTP/0.9":  # unparsable request line: still answer with HTTP/1.1
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        short = self.responses.get(code, ("Error",))[0]
        self.log_error("code %d, message %s", code, message or short)
        self._send_json(code, {"detail": message or short})

    def log_message(self, format: str, *args: Any) -> None:
        """Send ``http.server``'s access and error lines to the library logger (debug), never to stderr.

        Args:
            format: The %-format string.
            *args: Its arguments.
        """
        logger.debug("%s - " + format, self.address_string(), *args)

"""HTTP plumbing of the local backend: the socket server and the request handler, which only move bytes.

:class:`Server` (``ThreadingHTTPServer``, one thread per connection) hands every request to a
:class:`~xpander_sync.local._routing.Dispatcher` and writes its answer: HTTP/1.1 keep-alive with a
``Content-Length`` on every JSON response, a chunked ``text/event-stream`` for an
:class:`~xpander_sync.local._routing.EventStream`, and protocol errors raised inside ``http.server`` (garbage
request lines, bad lengths, HTTP/0.9) answered in the same ``{"detail": ...}`` JSON shape. The LLM proxy's
answers (a ``ScriptedResponse``: a provider's JSON or SSE stream) are written as they are.
"""

from __future__ import annotations

import json
import logging
import select
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from .._scripted_model import ScriptedResponse
from ..errors import StoreClosedError
from ._routing import Dispatcher, EventStream, HTTPError

logger = logging.getLogger(__name__)

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 16 * 1024 * 1024


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
    #: Connections handled at once (each on a thread); one more is closed at once, unanswered.
    max_connections = 256

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
            full = len(self._conns) >= self.max_connections
            if not full:
                self._conns[request] = thread
        if full:  # a bound on threads: 1,000 idle sockets must not cost 1,000 threads
            logger.warning("local backend: %d connections open; refusing one more", self.max_connections)
            super().shutdown_request(request)
            return
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
        if isinstance(payload, ScriptedResponse):
            payload.send(self)  # an answer in another API's own format (the LLM proxy), JSON or a stream
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

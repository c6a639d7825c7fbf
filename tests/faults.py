"""A small fault-injecting HTTP proxy for tests: standard library only, loopback only.

:class:`FaultProxy` listens on ``127.0.0.1`` (an ephemeral port), reads each HTTP/1.1
request, records it, and then either forwards it to an upstream loopback server (a
:class:`~xpander_sync.local.LocalBackend`) or misbehaves, per request (:meth:`FaultProxy.plan`)
or for every request (:attr:`FaultProxy.default`).

======================  ===================================================================
fault                   what the client gets
======================  ===================================================================
``pass``                the upstream answer, unchanged (keep-alive)
``500``                 ``500`` with a JSON body
``503``                 ``503`` with ``Retry-After: 1``
``close``               the request is read, then the connection is closed (FIN), no answer
``rst``                 the request is read, then the connection is reset (``SO_LINGER`` 0)
``hang``                the request is read and never answered (until the client gives up)
``lost_answer``         forwarded upstream (so it took effect), then the connection is reset
``truncated``           the upstream answer cut in half, with a matching ``Content-Length``
                        (well-formed HTTP, broken JSON)
``short``               the full ``Content-Length`` header but half the body, then FIN
``html``                ``200`` with ``Content-Type: text/html`` and an HTML page
``huge``                ``200`` with a :attr:`huge_size` byte body that is not JSON
``huge_json``           ``200`` with a valid JSON object padded to :attr:`huge_size` bytes
``drip_head``           the upstream answer, one byte every :attr:`drip_gap` seconds
``drip_body``           the upstream head at once, then the body one byte every :attr:`drip_gap`
``drip_fast``           the upstream answer in :attr:`fast_pieces` pieces, :attr:`fast_gap` apart
``redirect``            ``302`` to :attr:`redirect_to`
``echo``                ``401`` whose JSON ``detail`` echoes the request head (headers included)
``deep_json``           ``200`` (JSON) whose body is :attr:`deep_depth` nested ``[`` then as many ``]``
``deep_error``          ``500`` (JSON) whose body is :attr:`deep_depth` nested ``[`` (never closed)
``gzip_bomb``           ``200`` with ``Content-Encoding: gzip``: a small body that expands to
                        :attr:`bomb_size` bytes of zeros
======================  ===================================================================

Everything is bounded: the accept loop polls a stop flag, every socket has a timeout, a
``hang`` or a drip ends when the client leaves or :meth:`FaultProxy.stop` is called (at
most :attr:`hang_limit` seconds), and :meth:`stop` closes every connection and joins its
thread. Helpers for faults that happen before any byte is exchanged: :func:`closed_port`
(connection refused) and :class:`FullBacklog` (connect timeout).
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import select
import socket
import struct
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
FAULTS = frozenset(
    {
        "pass", "500", "503", "close", "rst", "hang", "lost_answer", "truncated", "short", "html", "huge",
        "huge_json", "drip_head", "drip_body", "drip_fast", "redirect", "echo", "deep_json", "deep_error",
        "gzip_bomb",
    }
)
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"})
_HEAD_LIMIT = 64 * 1024
_IDLE_TIMEOUT = 10.0


class Seen(NamedTuple):
    """One request the proxy read: method, request target, lower-cased headers, body and the fault applied."""

    method: str
    target: str
    headers: Dict[str, str]
    body: bytes
    fault: str

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


def _check_loopback(host: str) -> None:
    if host not in ("127.0.0.1", "localhost") and not host.startswith("127."):
        raise ValueError(f"faults.py talks to loopback addresses only, not {host!r}")


class FaultProxy:
    """An HTTP/1.1 proxy in front of a loopback server that injects faults.

    Args:
        upstream: base URL of the server behind the proxy (``http://127.0.0.1:PORT``), or
            ``None`` for a proxy that only answers with faults (then ``pass`` is a 502).
        default: the fault for requests with no planned fault.
        drip_gap: seconds between bytes for ``drip_head``/``drip_body``.
        fast_pieces, fast_gap: ``drip_fast`` sends the answer in this many pieces, this far apart.
        huge_size: body size of ``huge``/``huge_json`` in bytes.
        hang_limit: the longest a ``hang`` or a drip lasts, whatever the client does.
        redirect_to: the ``Location`` of ``redirect``.
        deep_depth: how many ``[`` ``deep_json``/``deep_error`` nest (deeper than Python's stack).
        bomb_size: the decompressed size of ``gzip_bomb`` in bytes.
    """

    def __init__(
        self,
        upstream: Optional[str] = None,
        *,
        default: str = "pass",
        drip_gap: float = 1.0,
        fast_pieces: int = 8,
        fast_gap: float = 0.1,
        huge_size: int = 20 * 1024 * 1024,
        hang_limit: float = 30.0,
        redirect_to: str = "",
        deep_depth: int = 200_000,
        bomb_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.upstream: Optional[Tuple[str, int]] = None
        if upstream is not None:
            parts = urlsplit(upstream)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise ValueError("upstream must be http://127.0.0.1:PORT")
            _check_loopback(parts.hostname)
            self.upstream = (parts.hostname, parts.port)
        if redirect_to:
            _check_loopback(urlsplit(redirect_to).hostname or "")
        self.default = default
        self.drip_gap = drip_gap
        self.fast_pieces = fast_pieces
        self.fast_gap = fast_gap
        self.huge_size = huge_size
        self.hang_limit = hang_limit
        self.redirect_to = redirect_to
        self.deep_depth = deep_depth
        self.bomb_size = bomb_size
        self._bomb: Optional[bytes] = None
        self._check(default)
        self._lock = threading.Lock()
        self._plan: List[str] = []
        self._seen: List[Seen] = []
        self._connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._clients: Dict[socket.socket, threading.Thread] = {}
        self._accept_thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> FaultProxy:
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, and join the threads (bounded)."""
        self._stop.set()
        self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            clients = list(self._clients.items())
        for sock, _ in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in clients:
            thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- configuration and observations --------------------------------------------------

    @staticmethod
    def _check(fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")

    def plan(self, *faults: str) -> None:
        """Faults for the next requests, in order; later requests get :attr:`default`."""
        for fault in faults:
            self._check(fault)
        with self._lock:
            self._plan = list(faults)

    def set_default(self, fault: str) -> None:
        self._check(fault)
        self.default = fault

    @property
    def seen(self) -> List[Seen]:
        """Every request read so far, oldest first."""
        with self._lock:
            return list(self._seen)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    def attempts(self, method: Optional[str] = None, path_suffix: str = "") -> int:
        """How many requests (with this method, to a path ending so) the proxy read."""
        return sum(
            1 for s in self.seen if (method is None or s.method == method) and s.path.endswith(path_suffix)
        )

    def reset(self) -> None:
        """Forget the plan and what was seen."""
        with self._lock:
            self._plan = []
            self._seen = []
            self._connections = 0

    def _next_fault(self) -> str:
        with self._lock:
            return self._plan.pop(0) if self._plan else self.default

    # -- the server ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._listener, self._wake_r], [], [], 1.0)
            if self._listener not in readable:
                continue
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                continue
            except OSError:
                return
            sock.setblocking(True)
            sock.settimeout(_IDLE_TIMEOUT)
            thread = threading.Thread(target=self._serve, args=(sock,), name="fault-proxy-conn", daemon=True)
            with self._lock:
                self._connections += 1
                self._clients[sock] = thread
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(sock, buffer)
                if request is None:
                    return
                method, target, headers, body = request
                fault = self._next_fault()
                with self._lock:
                    self._seen.append(Seen(method, target, headers, body, fault))
                if not self._answer(sock, fault, method, target, headers, body):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._clients.pop(sock, None)
            try:
                sock.close()
            except OSError:
                pass

    def _answer(
        self, sock: socket.socket, fault: str, method: str, target: str, headers: Dict[str, str], body: bytes
    ) -> bool:
        """Misbehave; ``True`` when the connection stays open for the next request."""
        if fault == "500":
            sock.sendall(_response(500, {"detail": "injected 500"}))
            return True
        if fault == "503":
            sock.sendall(_response(503, {"detail": "injected 503"}, {"Retry-After": "1"}))
            return True
        if fault == "close":
            sock.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "rst":
            _reset(sock)
            return False
        if fault == "hang":
            self._wait_for_client_to_leave(sock, self.hang_limit)
            return False
        if fault == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
            sock.sendall(_raw_response(200, page, "text/html"))
            return True
        if fault == "huge":
            sock.sendall(_raw_response(200, b"x" * self.huge_size, "application/json"))
            return True
        if fault == "huge_json":
            sock.sendall(_raw_response(200, _padded_json(self.huge_size), "application/json"))
            return True
        if fault == "deep_json":
            sock.sendall(_raw_response(200, b"[" * self.deep_depth + b"]" * self.deep_depth, "application/json"))
            return True
        if fault == "deep_error":
            sock.sendall(_raw_response(500, b"[" * self.deep_depth, "application/json"))
            return True
        if fault == "gzip_bomb":
            sock.sendall(_raw_response(200, self._gzip_bomb(), "application/json", {"Content-Encoding": "gzip"}))
            return True
        if fault == "redirect":
            head = f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n\r\n"
            sock.sendall(head.encode("latin-1"))
            return True
        if fault == "echo":
            echoed = f"{method} {target} " + " ".join(f"{k}: {v}" for k, v in headers.items())
            sock.sendall(_response(401, {"detail": echoed, "headers": headers}))
            return True

        status, reason, up_headers, up_body = self._forward(method, target, headers, body)
        if fault == "lost_answer":
            _reset(sock)
            return False
        if fault == "truncated":
            cut = up_body[: max(1, len(up_body) // 2)]
            sock.sendall(_head(status, reason, up_headers, len(cut)) + cut)
            return True
        if fault == "short":
            sock.sendall(_head(status, reason, up_headers, len(up_body)) + up_body[: len(up_body) // 2])
            sock.shutdown(socket.SHUT_RDWR)
            return False
        head = _head(status, reason, up_headers, len(up_body))
        if fault == "drip_head":
            self._drip(sock, head + up_body, self.drip_gap)
            return False
        if fault == "drip_body":
            sock.sendall(head)
            self._drip(sock, up_body, self.drip_gap)
            return False
        if fault == "drip_fast":
            data = head + up_body
            size = -(-len(data) // self.fast_pieces)
            for i in range(0, len(data), size):
                if i:
                    time.sleep(self.fast_gap)
                sock.sendall(data[i: i + size])
            return True
        sock.sendall(head + up_body)  # pass
        return True

    def _gzip_bomb(self) -> bytes:
        with self._lock:
            if self._bomb is None:
                self._bomb = _gzip_zeros(self.bomb_size)
            return self._bomb

    def _forward(
        self, method: str, target: str, headers: Dict[str, str], body: bytes
    ) -> Tuple[int, str, List[Tuple[str, str]], bytes]:
        if self.upstream is None:
            data = json.dumps({"detail": "no upstream"}).encode()
            return 502, "Bad Gateway", [("Content-Type", "application/json")], data
        conn = http.client.HTTPConnection(*self.upstream, timeout=_IDLE_TIMEOUT)
        try:
            send = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP and k != "host"}
            conn.request(method, target, body=body or None, headers=send)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, response.reason, kept, data
        finally:
            conn.close()

    def _drip(self, sock: socket.socket, data: bytes, gap: float) -> None:
        deadline = time.monotonic() + self.hang_limit
        for i in range(len(data)):
            if i and self._wait_for_client_to_leave(sock, gap):
                return
            if time.monotonic() > deadline:
                return
            try:
                sock.sendall(data[i: i + 1])
            except OSError:
                return

    def _wait_for_client_to_leave(self, sock: socket.socket, seconds: float) -> bool:
        """Wait up to ``seconds``; ``True`` as soon as the client closed its side or the proxy stops."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([sock], [], [], min(left, 0.05))
            if readable:
                try:
                    if not sock.recv(65536, socket.MSG_PEEK):
                        return True
                except OSError:
                    return True
                return False  # the client sent more (pipelining): not expected here
        return True


# -- wire helpers ------------------------------------------------------------------------------


def _read_request(sock: socket.socket, buffer: bytes) -> Tuple[Optional[Tuple[str, str, Dict[str, str], bytes]], bytes]:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _HEAD_LIMIT:
            return None, b""
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None, b""
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return (method, target, headers, rest[:length]), rest[length:]


def _head(status: int, reason: str, headers: List[Tuple[str, str]], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _raw_response(status: int, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None) -> bytes:
    headers = [("Content-Type", content_type), *(extra or {}).items()]
    reason = http.client.responses.get(status, "Unknown")
    return _head(status, reason, headers, len(body)) + body


def _response(status: int, payload: Any, extra: Optional[Dict[str, str]] = None) -> bytes:
    return _raw_response(status, json.dumps(payload).encode(), "application/json", extra)


def _padded_json(size: int) -> bytes:
    shell = json.dumps({"detail": "padded", "padding": ""}).encode()
    pad = max(0, size - len(shell))
    return json.dumps({"detail": "padded", "padding": "p" * pad}).encode()


def _gzip_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed in 1 MiB steps (the compressed form is ~1/1000 the size)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as zipped:
        chunk = b"\0" * (1024 * 1024)
        for start in range(0, size, len(chunk)):
            zipped.write(chunk[: size - start])
    return out.getvalue()


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- faults before the first byte --------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class FullBacklog:
    """A loopback listener that never accepts, with its accept queue full: connects time out.

    Linux drops a SYN to a listener whose accept queue is full (``tcp_abort_on_overflow``
    is 0 by default), so the client's connect waits for its connect timeout. This stays on
    127.0.0.1; no non-routable address is used. :meth:`__enter__` checks that a probe
    connect does time out, and raises ``RuntimeError`` if this kernel behaves otherwise.
    """

    def __init__(self, fillers: int = 8) -> None:
        self._fillers_wanted = fillers
        self._listener = socket.socket()
        self._fillers: List[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FullBacklog:
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(0)
        address = self._listener.getsockname()
        for _ in range(self._fillers_wanted):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(address)
            except BlockingIOError:
                pass
            self._fillers.append(filler)
        time.sleep(0.05)
        with socket.socket() as probe:
            probe.settimeout(0.2)
            try:
                probe.connect(address)
            except (socket.timeout, TimeoutError):
                return self
        self.__exit__()
        raise RuntimeError("the accept queue did not fill up: connects to it do not time out here")

    def __exit__(self, *exc_info: Any) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()

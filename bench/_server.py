"""A minimal loopback HTTP server for benchmarks: fixed JSON answers, HTTP/1.1 keep-alive.

It answers as fast as the standard library allows (no routing table, no SQLite, no copies), so the
figures show the client's cost rather than the server's. Unknown routes answer 404 with a JSON
``detail`` (what the official SDK's fail-open paths see for routes we do not serve). Every request
is logged as ``(method, path, status)``; paths under ``mark_prefix`` answer 200 ``{}`` and serve as
phase markers in that log.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

LogEntry = Tuple[str, str, Optional[int]]


class BenchServer:
    """Serve ``routes[(method, path)] -> JSON value`` on 127.0.0.1, an OS-chosen port."""

    def __init__(self, routes: Dict[Tuple[str, str], object], *, mark_prefix: str = "/__bench__/mark/"):
        encoded = {key: json.dumps(value).encode() for key, value in routes.items()}
        self.hits: Dict[Tuple[str, str], int] = {}
        self._log: List[LogEntry] = []
        hits, log = self.hits, self._log
        lock = threading.Lock()
        self._lock = lock
        not_found = b'{"detail":"Not found"}'

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: avoid delayed-ACK stalls

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                key = (self.command, path)
                body = encoded.get(key)
                if body is None and path.startswith(mark_prefix):
                    body = b"{}"
                status = 200 if body is not None else 404
                with lock:
                    hits[key] = hits.get(key, 0) + 1
                    log.append((self.command, path, status))
                body = body if body is not None else not_found
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # The official SDK opens a new connection per request: 100 concurrent calls need a
            # listen backlog above socketserver's default of 5, or connections are reset.
            request_queue_size = 1024

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def entries(self) -> List[LogEntry]:
        """Every request served so far, oldest first."""
        with self._lock:
            return list(self._log)

    def __enter__(self) -> BenchServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

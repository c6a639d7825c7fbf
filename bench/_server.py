"""A minimal loopback HTTP server for benchmarks: fixed JSON answers, HTTP/1.1 keep-alive.

It answers as fast as the standard library allows, so the figures show the client's cost.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Optional, Tuple

Route = Callable[[str, str, bytes], Tuple[int, bytes]]


class BenchServer:
    """Serve ``routes[(method, path)] -> JSON object`` on 127.0.0.1, an OS-chosen port."""

    def __init__(self, routes: Dict[Tuple[str, str], object]):
        encoded = {key: json.dumps(value).encode() for key, value in routes.items()}
        self.hits: Dict[Tuple[str, str], int] = {}
        hits = self.hits
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: avoid delayed-ACK stalls

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                key = (self.command, self.path.split("?", 1)[0])
                with lock:
                    hits[key] = hits.get(key, 0) + 1
                body = encoded.get(key)
                status = 200 if body is not None else 404
                body = body if body is not None else b'{"detail":"not found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BenchServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

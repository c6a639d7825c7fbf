"""Routing of the local backend: the routing table, JSON request bodies, client errors and the dispatcher.

Nothing here knows what the routes mean or touches a socket; :mod:`xpander_sync.local.server` fills a
:class:`Router` with the route functions of the platform logic (``_platform``), the worker-stream hub (``_hub``)
and the MCP-auth emulation (``_mcp``), and :mod:`xpander_sync.local._http` moves the bytes.

* :class:`Router` maps ``(method, path)`` to a route function; ``{name}`` in a template matches one path segment,
  ``{name:path}`` (last in a template) the rest of the path, slashes included.
* :class:`Dispatcher` answers one request: it logs it (secret headers redacted), checks the API key, calls the
  route function and turns every outcome into ``(status, JSON payload, extra headers)``. A route raises
  :class:`HTTPError` (or a ``BodyError`` of ``_payloads``) for a client error; anything else becomes a 500 whose
  body names no internals. A route that streams returns an :class:`EventStream` instead of a JSON payload; a
  route that answers in another API's own format (the LLM proxy) returns a ``ScriptedResponse``.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import re
import socket
import threading
from collections import deque
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from .._redact import redact_headers
from ._payloads import BodyError

logger = logging.getLogger(__name__)

#: Suffix of the regex group of a ``{name:path}`` parameter.
_TAIL = "__tail"


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
    raw: bytes = b""  # the body as received (for a route that forwards it)


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
    raw: bool = False  # the route reads Request.raw: a body that is not JSON is its business


class Router:
    """An ordered routing table: the first route whose pattern fully matches the path wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: RouteFunction, *, auth: bool = True, raw: bool = False) -> None:
        """Append a route.

        Args:
            method: The HTTP method (upper case).
            template: The path, with ``{name}`` for a path parameter (one segment, URL-decoded), and
                ``{name:path}`` for the rest of the path (any number of segments, kept as sent).
            handler: The route function.
            auth: Whether the API key (when the backend has one) is required.
            raw: Whether the route reads the raw body itself (a body that is not JSON is passed on).
        """
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1" + _TAIL + ">.*)", template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append(Route(method, re.compile(regex), handler, auth, raw))

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
                params: dict[str, str] = {}
                for key, value in found.groupdict().items():
                    if key.endswith(_TAIL):
                        params[key[: -len(_TAIL)]] = value  # a path tail is kept as sent
                    else:
                        params[key] = unquote(value)
                return route, params, []
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
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested past the stack
        return raw.decode("utf-8", errors="replace"), False


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _loopback_host(value: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback (any port; no header counts, as HTTP/1.0)."""
    if not value:
        return True
    host = value.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host.endswith(".localhost")


class Dispatcher:
    """Answers requests from a :class:`Router`, checks the API key and keeps the request log.

    Args:
        router: The routing table.
        api_key: When set, routes with ``auth`` (and unknown paths) require ``x-api-key``: missing → 401,
            wrong → 403 (compared in constant time, never echoed).
        log_limit: Most entries kept in the request log (oldest dropped first).
        check_host: Answer 421 to a ``Host`` header that is not a loopback name (a page on another site that
            resolves its own name to 127.0.0.1, DNS rebinding, cannot reach the backend). On when the backend
            is bound to loopback; beyond it, the API key guards the backend.
    """

    def __init__(self, router: Router, *, api_key: Optional[str], log_limit: int, check_host: bool = True) -> None:
        self._router = router
        self._api_key = api_key
        self._check_host = check_host
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
            if self._check_host and not _loopback_host(headers.get("host", "")):
                raise HTTPError(421, "Misdirected request: this backend answers loopback host names only")
            route, params, allowed = self._router.match(method, path)
            if route is None or route.auth:
                self._check_auth(headers)
            if route is None:
                if allowed:
                    raise HTTPError(405, "Method not allowed", {"Allow": ", ".join(allowed)})
                raise HTTPError(404, "Not found")
            if not body_ok and not route.raw:
                raise HTTPError(400, "Request body is not valid JSON")
            if raw_body and method in _WRITES and not route.raw \
                    and not headers.get("content-type", "").lower().startswith("application/json"):
                # A cross-origin page can POST text/plain without asking; application/json needs a preflight.
                raise HTTPError(415, "Content-Type must be application/json")
            status, payload = route.handler(Request(method, path, params, query, headers, body, raw_body))
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

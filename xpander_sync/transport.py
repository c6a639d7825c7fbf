"""The one HTTP transport: a pooled ``requests.Session``, retries, and error mapping.

* One :class:`Transport` per :class:`~xpander_sync.Configuration` value: client objects
  built without a configuration (``Backend()``, ``Agents()``, ``Tasks()``) share one,
  so a web app that builds them per request still reuses connections.
* The session is configured once and never mutated afterwards (requests' Session is
  not documented as thread-safe for mutation); per-call headers are arguments, and
  cookies are refused so that no response changes shared state.
* After ``fork()`` (gunicorn ``--preload``, Celery) the child opens fresh connections.
* Redirects are not followed: a redirect to another host must not carry ``x-api-key``.
* Every attempt logs one DEBUG line: method, route, status, milliseconds, attempt.
"""

from __future__ import annotations

import json as _json
import logging
import os
import random
import threading
import time
import weakref
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from ._cache import PlatformCaches
from ._deadline import DeadlineAdapter, set_deadline
from ._redact import scrub
from ._retry import RetryPolicy, parse_retry_after, retry_delay
from ._version import __version__
from .config import Configuration
from .errors import (
    APIError,
    InvalidInputError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    TransportError,
    error_class_for_status,
)

logger = logging.getLogger(__name__)

USER_AGENT = f"xpander-sync/{__version__}"
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
_MESSAGE_LIMIT = 500
#: Bytes asked for per receive while reading a body (read1 returns what arrived, up to this).
_READ_CHUNK = 65536
_UNSET: Any = object()

_live_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_live_transports):
        transport._forget_session()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Response:
    """What :meth:`Transport.request` returns: status, headers and the decoded body.

    Args:
        status_code: the HTTP status (always 2xx: other answers raise).
        headers: the response headers.
        data: the decoded JSON body, or ``None`` for an empty body.
    """

    __slots__ = ("data", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], data: Any):
        self.status_code = status_code
        self.headers = headers
        self.data = data


#: Most secrets a transport remembers for scrubbing (LLM keys of the agents it built).
_MAX_SECRETS = 256

class Transport:
    """Sends requests to the platform for one configuration.

    Args:
        configuration: where and how to connect.
        sleep: injected for tests (retry backoff).
        rand: injected for tests (backoff jitter), returns a float in [0, 1).
    """

    def __init__(
        self,
        configuration: Configuration,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.configuration = configuration
        self._sleep = sleep
        self._rand = rand
        self._lock = threading.Lock()
        self._session: Optional[requests.Session] = None
        self._pid = os.getpid()
        api_key = configuration.api_key.reveal() if configuration.api_key else None
        self._secrets: Tuple[str, ...] = (api_key,) if api_key else ()
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["x-api-key"] = api_key
        self._base_headers = headers
        self._proxies: Dict[str, str] = configuration.proxies_dict or {}
        #: caches of platform data used by get_args (shared by everyone using this transport)
        self.caches = PlatformCaches(
            configuration.agent_cache_ttl, configuration.metadata_cache_ttl, configuration.agent_max_staleness
        )
        _live_transports.add(self)

    # -- session lifecycle -------------------------------------------------------------

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers.clear()
        session.trust_env = True
        adapter = DeadlineAdapter(
            pool_connections=4,
            pool_maxsize=self.configuration.pool_maxsize,
            max_retries=0,
            pool_block=False,
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        session.verify = self.configuration.verify
        proxies = self.configuration.proxies_dict
        if proxies:
            session.proxies.update(proxies)
        return session

    @property
    def session(self) -> requests.Session:
        """The pooled session, (re)created lazily, and anew in a forked child."""
        session = self._session
        if session is not None and self._pid == os.getpid():
            return session
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                self._session = self._new_session()
                self._pid = os.getpid()
            return self._session

    def _forget_session(self) -> None:
        # In a forked child: drop (do not close) the parent's sockets.
        self._session = None

    def close(self) -> None:
        """Close pooled connections (a new session is opened on the next request)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    @property
    def secrets(self) -> Tuple[str, ...]:
        """Values that must never appear in errors or logs: the API key, and the LLM keys and
        tokens the builds of this client resolved (:meth:`remember_secret`)."""
        return self._secrets

    def remember_secret(self, value: Optional[str]) -> None:
        """Add a value to :attr:`secrets` (an LLM key or gateway token a build resolved), so a
        framework error that repeats it is scrubbed before it is reported or printed.

        Args:
            value: the secret; blank values and the placeholder ``"EMPTY"`` are ignored.
        """
        if not value or value == "EMPTY" or len(value) < 8:
            return
        with self._lock:
            if value not in self._secrets and len(self._secrets) < _MAX_SECRETS:
                self._secrets = (*self._secrets, value)

    # -- requests ----------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """The absolute URL of an API path.

        Args:
            path: a path under the configured API URL (a leading ``/`` is optional).

        Returns:
            ``configuration.full_url`` joined with ``path`` by exactly one ``/``.

        Raises:
            ConfigurationError: the base URL needs an organization id and none is set.
        """
        return self.configuration.full_url.rstrip("/") + "/" + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _UNSET,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        repeatable: Optional[bool] = None,
        timeout: Optional[Tuple[float, float]] = None,
        url: Optional[str] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> Response:
        """Send one request (with retries) and decode its JSON answer.

        Args:
            method: HTTP method.
            path: path under the configured API URL (ignored when ``url`` is given).
            json: the JSON body; omitted for GET/DELETE as the platform expects.
            params: query parameters (booleans are sent as ``true``/``false``).
            headers: extra headers for this call.
            repeatable: safe to send twice; default: every method but POST.
            timeout: ``(connect, read)`` override.
            url: an absolute URL outside the REST root (the events endpoints).
            retry: this call's retry policy instead of the configuration's (a caller that owns
                its retries, like the tool-call layer, passes ``RetryPolicy(max_retries=0)``).

        Returns:
            The :class:`Response`; ``data`` is the decoded JSON, or ``None`` for an empty body.

        Raises:
            ConfigurationError: ``url`` is not given, and the base URL needs an organization
                id that is not set.
            TransportError: no response (RequestTimeoutError for timeouts).
            APIError: a non-2xx answer (a subclass per status).
            ResponseDecodeError: a 2xx answer that is not JSON.
        """
        method = method.upper()
        if repeatable is None:
            repeatable = method in _IDEMPOTENT_METHODS
        target = url or self.url_for(path)
        route = urlsplit(target).path or "/"
        send_headers = dict(self._base_headers)
        if headers:
            send_headers.update(headers)
        body: Optional[bytes] = None
        if json is not _UNSET and method not in ("GET", "DELETE", "HEAD"):
            body = _encode_body(json, method, route)
            send_headers["Content-Type"] = "application/json"
        query = _encode_params(params) if params else None
        timeout = timeout or self.configuration.timeout
        deadline = time.monotonic() + self.configuration.call_deadline
        set_deadline(deadline)  # the answer's head is read under it too (_deadline)
        try:
            return self._send(method, target, route, query, body, send_headers, timeout, repeatable, deadline,
                              retry or self.configuration.retry)
        finally:
            set_deadline(None)

    def _send(self, method: str, target: str, route: str, query: Any, body: Optional[bytes],
              send_headers: Dict[str, str], timeout: Tuple[float, float], repeatable: bool,
              deadline: float, policy: RetryPolicy) -> Response:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = self.session.request(
                    method,
                    target,
                    params=query,
                    data=body,
                    headers=send_headers,
                    timeout=timeout,
                    allow_redirects=False,
                    # Per request, so that the configuration wins over HTTP(S)_PROXY and
                    # REQUESTS_CA_BUNDLE (requests merges the environment over session settings).
                    proxies=self._proxies,
                    verify=self.configuration.verify,
                    stream=True,  # the body is read by _read_body: under the size cap and the deadline
                )
                self._read_body(response, method, route, deadline)
            except requests.exceptions.RequestException as exc:
                elapsed = (time.perf_counter() - started) * 1000
                connect_failure = _is_connect_failure(exc)
                self._log(method, route, type(exc).__name__, elapsed, attempt)
                if time.monotonic() >= deadline:  # the watchdog cut a head that trickled past it
                    raise self._deadline_error(method, route) from None
                delay = retry_delay(
                    policy,
                    attempt=attempt,
                    repeatable=repeatable,
                    connect_failure=connect_failure,
                    other_transport_failure=not connect_failure,
                    rand=self._rand,
                )
                if delay is None or time.monotonic() + delay >= deadline:
                    raise self._transport_error(exc, method, route, attempt) from None
                logger.info(
                    "retrying %s %s in %.2fs after %s (attempt %d)",
                    method, route, delay, type(exc).__name__, attempt,
                )
                self._sleep(delay)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            status = response.status_code
            self._log(method, route, status, elapsed, attempt)
            if 200 <= status < 300:
                return Response(status, response.headers, self._decode(response, method, route))
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            delay = retry_delay(
                policy, attempt=attempt, repeatable=repeatable, status=status,
                retry_after=retry_after, rand=self._rand,
            )
            if delay is None or time.monotonic() + delay >= deadline:
                raise self._api_error(response, method, route, retry_after, attempt)
            logger.info(
                "retrying %s %s in %.2fs after HTTP %d (attempt %d)", method, route, delay, status, attempt
            )
            response.close()
            self._sleep(delay)

    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[Tuple[float, float]] = None,
        url: Optional[str] = None,
    ) -> requests.Response:
        """Open a streaming response (an event stream): one attempt, body unread, any status.

        No retries here: the caller owns the reconnect loop. It checks the status, reads
        ``response.raw`` as bytes arrive and closes the response.

        Args:
            method: HTTP method.
            path: path under the configured API URL (ignored when ``url`` is given).
            params: query parameters (booleans are sent as ``true``/``false``).
            headers: extra headers for this call.
            timeout: ``(connect, read)``; the read timeout bounds the silence between two bytes.
            url: an absolute URL outside the REST root (the events endpoints).

        Returns:
            The open :class:`requests.Response` (``stream=True``).

        Raises:
            ConfigurationError: ``url`` is not given, and the base URL needs an organization id.
            TransportError: no response (RequestTimeoutError for timeouts).
        """
        method = method.upper()
        target = url or self.url_for(path)
        route = urlsplit(target).path or "/"
        send_headers = dict(self._base_headers)
        if headers:
            send_headers.update(headers)
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, target, params=_encode_params(params) if params else None, headers=send_headers,
                timeout=timeout or self.configuration.timeout, stream=True, allow_redirects=False,
                proxies=self._proxies, verify=self.configuration.verify,
            )
        except requests.exceptions.RequestException as exc:
            self._log(method, route, type(exc).__name__, (time.perf_counter() - started) * 1000, 1)
            raise self._transport_error(exc, method, route, 1) from None
        self._log(method, route, response.status_code, (time.perf_counter() - started) * 1000, 1)
        return response

    def _read_body(self, response: requests.Response, method: str, route: str, deadline: float) -> None:
        """Read the whole body (decompressed), at most ``max_response_bytes``, before ``deadline``.

        ``read1`` returns what one receive brings, so a server that trickles a byte at a time
        (each within the read timeout) still meets the deadline between two receives. The body
        is stored on the response as requests would have (``response.content`` works after).

        Raises:
            requests.exceptions.ConnectionError: the connection failed while reading (retried
                like any failure after sending).
            RequestTimeoutError: the call's deadline passed.
            ResponseDecodeError: the body is larger than ``max_response_bytes``.
        """
        cap = self.configuration.max_response_bytes
        chunks: List[bytes] = []
        size = 0
        # urllib3 2.x: read1 returns what one receive brought; 1.26 has only read(amt), which
        # waits for amt bytes (a trickle is then bounded between chunks, not between receives).
        read = getattr(response.raw, "read1", None) or response.raw.read
        try:
            while True:
                try:
                    chunk = read(_READ_CHUNK, decode_content=True)
                except Urllib3SSLError as exc:  # a TLS failure mid-body, as requests would name it
                    raise requests.exceptions.SSLError(exc) from None
                except Urllib3Error as exc:  # read timeout, reset, bad chunking, bad gzip...
                    raise requests.exceptions.ConnectionError(exc) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise ResponseDecodeError(
                        f"response of {method} {route}",
                        [f"the body is larger than max_response_bytes ({cap} bytes): not read further"],
                        status_code=response.status_code,
                    )
                if time.monotonic() > deadline:
                    raise self._deadline_error(method, route)
                chunks.append(chunk)
        except BaseException:
            response.close()  # drop the connection: the rest of the body is not wanted
            raise
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]
        response.close()  # the body was read to its end: the connection goes back to the pool

    def _deadline_error(self, method: str, route: str) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"{method} {route} took longer than call_deadline ({self.configuration.call_deadline:g} s); "
            "the server is answering too slowly", method=method, route=route,
        )

    def _log(self, method: str, route: str, outcome: object, elapsed_ms: float, attempt: int) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s in %.0f ms (attempt %d/%d)",
                method, route, outcome, elapsed_ms, attempt, self.configuration.retry.max_retries + 1,
            )

    def _decode(self, response: requests.Response, method: str, route: str) -> Any:
        content = response.content
        if not content or not content.strip():
            return None
        try:
            return _json.loads(content)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            ctype = response.headers.get("Content-Type", "unknown")
            raise ResponseDecodeError(
                f"response of {method} {route}",
                [f"expected a JSON body, got {ctype!s:.60} ({len(content)} bytes)"],
                status_code=response.status_code,
            ) from None

    def _server_message(self, response: requests.Response) -> str:
        try:
            text = response.text
        except Exception:  # pragma: no cover - undecodable body
            text = ""
        message = text
        try:
            data = _json.loads(text) if text else None
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            for key in ("detail", "message", "error", "description"):
                if isinstance(data.get(key), str) and data[key]:
                    message = data[key]
                    break
        message = scrub(message.strip(), self._secrets) or scrub(response.reason or "", self._secrets) or "no message"
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "..."
        return message

    def _api_error(
        self, response: requests.Response, method: str, route: str, retry_after: Optional[float], attempt: int
    ) -> APIError:
        status = response.status_code
        message = self._server_message(response)
        if status in (401, 403):
            message += " (check the API key: XPANDER_API_KEY or Configuration(api_key=...))"
        if attempt > 1:
            message += f" after {attempt} attempts"
        request_id = response.headers.get("x-request-id") or response.headers.get("x-amzn-requestid")
        cls = error_class_for_status(status)
        if cls is RateLimitError:
            return RateLimitError(
                status, message, method=method, route=route, request_id=request_id, retry_after=retry_after
            )
        return cls(status, message, method=method, route=route, request_id=request_id)

    def _transport_error(
        self, exc: requests.exceptions.RequestException, method: str, route: str, attempts: int
    ) -> TransportError:
        if isinstance(exc, requests.exceptions.Timeout) or _is_body_read_timeout(exc):
            kind = "connect timeout" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read timeout"
            cls: type = RequestTimeoutError
        elif isinstance(exc, requests.exceptions.SSLError):
            kind, cls = "TLS error", TransportError
        elif _is_connect_failure(exc):
            kind, cls = "could not connect", TransportError
        else:
            kind, cls = "connection failed", TransportError
        detail = scrub(_short_reason(exc), self._secrets)
        return cls(
            f"{kind} for {method} {route} after {attempts} attempt(s): {detail}", method=method, route=route
        )


def _short_reason(exc: BaseException) -> str:
    """The innermost cause's class and message (urllib3 nests them), at most 300 characters."""
    reason: Any = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", None) or reason
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"[:300]
    return str(reason)[:300]


def _is_body_read_timeout(exc: BaseException) -> bool:
    """A read timeout while reading the body: requests wraps it in a ConnectionError."""
    reason = exc.args[0] if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(reason, ReadTimeoutError)


def _is_connect_failure(exc: BaseException) -> bool:
    """True when no connection was established, so nothing reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", None)
        return isinstance(inner, NewConnectionError) or isinstance(reason, NewConnectionError)
    return False


def _encode_params(params: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


# -- the shared, process-wide transports ---------------------------------------------------

_shared: Dict[Configuration, Transport] = {}
_shared_lock = threading.Lock()
_SHARED_LIMIT = 64


def shared_transport(configuration: Configuration) -> Transport:
    """The process-wide :class:`Transport` for a configuration value (created on first use).

    At most 64 are kept: past that, the oldest is closed and forgotten.

    Args:
        configuration: the settings; equal configurations share one transport.

    Returns:
        The shared :class:`Transport`.
    """
    transport = _shared.get(configuration)
    if transport is not None:
        return transport
    with _shared_lock:
        transport = _shared.get(configuration)
        if transport is None:
            if len(_shared) >= _SHARED_LIMIT:  # many distinct configurations: drop the oldest
                oldest = next(iter(_shared))
                _shared.pop(oldest).close()
            transport = Transport(configuration)
            _shared[configuration] = transport
        return transport


def reset_shared_transports() -> None:
    """Close and forget every shared transport (for tests and after changing the environment)."""
    with _shared_lock:
        transports = list(_shared.values())
        _shared.clear()
    for transport in transports:
        transport.close()


def _encode_body(value: Any, method: str, route: str) -> bytes:
    """The JSON body, or :class:`InvalidInputError` (never a raw ``TypeError``/``RecursionError``)."""
    try:
        return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        kind = "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
        raise InvalidInputError(
            f"the body of {method} {route} cannot be sent as JSON ({kind}): pass JSON values "
            "(dict, list, str, number, bool, None), without NaN/Infinity or lone surrogates"
        ) from None

"""The stream reader: opens the agent's event stream, reads it as bytes arrive, and dispatches frames.

* ``worker-registration`` gives the worker its id (told to the :class:`~._heartbeat.Heartbeat`);
  ``agent-execution`` carries a task (given to the runner, which blocks while all slots are
  busy: that is the backpressure); ``worker-environment-conflict`` ends the connection.
* **Reconnects forever** with the settings' capped, jittered backoff (the official SDK exits
  the process after 5 failures); a stream that registered resets the failure count; after
  ``worker-environment-conflict`` it waits the longest backoff (the other worker may be on
  its way out). A refused stream (401/403...) is logged with the server's reason, never with
  the key.
* **Stopping** shuts the socket down from the stopping thread (:meth:`StreamReader.close`),
  which ends a blocked read at once; closing the file descriptor from another thread would not.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any, Callable, Optional, Tuple

import requests

from .._redact import scrub
from ..resources import Workers
from ._heartbeat import Heartbeat
from ._state import Counters, StopState
from .settings import WorkerSettings
from .sse import ServerSentEvent, SSEParser

logger = logging.getLogger(__name__)


class _StreamRefused(Exception):
    """The stream request got a non-200 answer (or not an event stream)."""


class _EnvironmentConflict(Exception):
    """The platform sent ``worker-environment-conflict``."""


def _stream_socket(response: requests.Response) -> Optional[socket.socket]:
    """The socket under a streaming response (to shut it down from another thread)."""
    raw = response.raw
    for path in (("_connection", "sock"), ("connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        obj: Any = raw
        for name in path:
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, socket.socket):
            return obj
    return None


def _shutdown_stream(response: requests.Response) -> None:
    """Wake a reader blocked on the stream: shutting the socket down ends its recv at once."""
    sock = _stream_socket(response)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _read_some(raw: Any) -> bytes:
    """Whatever bytes have arrived (at least one, or b"" at the end of the stream).

    ``read1`` returns as soon as some data is there, for chunked and for close-delimited
    streams alike (``iter_content`` would wait for a full chunk size, or for the end).
    """
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return read1(65536) or b""
    return raw._fp.read1(65536) or b""  # urllib3 1.26: http.client's response


class StreamReader:
    """The reader thread: keeps one event stream open for the worker, and dispatches its frames.

    Args:
        workers: the worker's :class:`~xpander_sync.resources.Workers`.
        agent_id: the agent whose tasks to receive.
        settings: the worker's settings (environment, idle timeout, backoff).
        stop: the worker's stop state.
        heartbeat: told of registrations and lost streams.
        counters: counts the registrations (``connections``).
        on_task: takes an ``agent-execution`` frame (blocks while all slots are busy).
        secrets: values scrubbed from every logged message.
    """

    def __init__(
        self,
        workers: Workers,
        agent_id: str,
        *,
        settings: WorkerSettings,
        stop: StopState,
        heartbeat: Heartbeat,
        counters: Counters,
        on_task: Callable[[ServerSentEvent], None],
        secrets: Tuple[Any, ...],
    ) -> None:
        self._workers = workers
        self._agent_id = agent_id
        self._settings = settings
        self._stop = stop
        self._heartbeat = heartbeat
        self._counters = counters
        self._on_task = on_task
        self._secrets = secrets
        self._lock = threading.Lock()
        self._response: Optional[requests.Response] = None

    def close(self) -> None:
        """Cut the open stream (called by ``stop()`` from another thread)."""
        with self._lock:
            response = self._response
        if response is not None:
            _shutdown_stream(response)

    def run(self) -> None:
        """The reader thread's loop: connect, read, reconnect, until a stop is requested."""
        failures = 0
        while not self._stop.is_requested():
            try:
                registered = self._consume()
            except _EnvironmentConflict as exc:
                delay = self._settings.backoff_max
                logger.error("worker-environment-conflict: %s; retrying in %.1fs", exc, delay)
            except _StreamRefused as exc:
                failures += 1
                delay = self._settings.delay(failures)
                logger.error("event stream refused: %s; retrying in %.1fs", exc, delay)
            except Exception as exc:  # network errors, garbage: reconnect, never exit
                if self._stop.is_requested():
                    break
                failures += 1
                delay = self._settings.delay(failures)
                reason = scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:300]
                logger.warning("event stream lost (%s); reconnecting in %.2fs", reason, delay)
            else:
                if self._stop.is_requested():
                    break
                # A stream that registered was healthy: start counting failures afresh.
                failures = 0 if registered else failures + 1
                delay = self._settings.delay(failures)
                logger.info("event stream closed by the platform; reconnecting in %.2fs", delay)
            finally:
                self._heartbeat.disconnected()
            self._stop.requested.wait(delay)

    def _consume(self) -> bool:
        """Open the stream and process it until it ends; ``True`` if it registered."""
        response = self._workers.open_stream(
            self._agent_id, environment=self._settings.environment, idle_timeout=self._settings.stream_idle_timeout
        )
        with self._lock:
            self._response = response
        registered = False
        try:
            if self._stop.is_requested():
                return False
            if response.status_code != 200:
                raise _StreamRefused(self._refusal(response))
            ctype = response.headers.get("Content-Type", "")
            if "text/event-stream" not in ctype:
                raise _StreamRefused(f"expected text/event-stream, got {ctype or 'no content type'}")
            parser = SSEParser()
            while not self._stop.is_requested():
                chunk = _read_some(response.raw)
                if not chunk:
                    return registered
                for event in parser.feed(chunk):
                    if self._stop.is_requested():
                        return registered
                    registered = self.on_event(event) or registered
            return registered
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _refusal(self, response: requests.Response) -> str:
        status = response.status_code
        try:
            text = response.raw.read(2000, decode_content=True).decode("utf-8", "replace")
        except Exception:
            text = ""
        detail = text.strip()
        try:
            data = json.loads(text)
            if isinstance(data, dict) and isinstance(data.get("detail"), str):
                detail = data["detail"]
        except (ValueError, RecursionError):
            pass
        detail = scrub(detail, self._secrets)[:300] or scrub(response.reason or "", self._secrets) or "no message"
        hint = " (check the API key: XPANDER_API_KEY)" if status in (401, 403) else ""
        return f"HTTP {status}: {detail}{hint}"

    def on_event(self, event: ServerSentEvent) -> bool:
        """Handle one frame of the stream.

        Args:
            event: the frame.

        Returns:
            ``True`` for a registration.
        """
        if event.event == "worker-registration":
            try:
                asset = event.json()
                worker_id = str(asset["id"])
            except (ValueError, KeyError, TypeError):
                raise _StreamRefused("worker-registration without a worker id") from None
            self._counters.add("connections")
            # The platform registers us not busy; the heartbeat corrects it if we are.
            self._heartbeat.registered_as(worker_id, bool(asset.get("is_busy", False)))
            logger.info("registered as worker %s for agent %s", worker_id, self._agent_id)
            return True
        if event.event == "agent-execution":
            self._on_task(event)
        elif event.event == "worker-environment-conflict":
            try:
                detail = str(event.json().get("error") or "another worker is connected")
            except (ValueError, AttributeError):
                detail = "another worker is connected"
            raise _EnvironmentConflict(scrub(detail, self._secrets)[:300])
        else:
            logger.debug("ignoring event %r", event.event[:64])
        return False

"""The task worker: receive an agent's tasks over the platform's event stream and run a handler.

Design (plain threads, no event loop of our own)::

    run() ── boot hooks ── signal handlers ── waits for stop()
      ├── reader thread     GET {events_root}/events/{agent_id}/  (SSE over a streaming requests response)
      │                     worker-registration → worker id; agent-execution → one task thread each
      ├── reporter thread   POST {events_root}/events/{worker_id}?type=worker&agent_id=…
      │                     worker-heartbeat every heartbeat_interval; worker-capacity-update on change
      └── task threads      ≤ concurrency at once: executing → handler(task=…) → save → metrics

* **Backpressure.** The reader takes a free slot *before* it reads past a task; while all
  ``concurrency`` slots are busy it stops reading the stream, so no more tasks are taken
  than can run (the platform keeps the rest, or gives them to another worker).
* **One Task per handler call.** Each task is built from its own JSON with the worker's
  configuration; nothing (no "current task" state) is shared between concurrent tasks.
* **Results are not lost.** Setting ``executing`` and saving the result are retried with
  capped, jittered backoff through a backend outage, until they succeed or the worker is
  stopped and its drain deadline has passed. A handler exception saves the task with
  status ``error`` and the (secret-scrubbed) message; the worker goes on.
* **Duplicates are dropped.** A task id already being handled is ignored if delivered
  again (e.g. after a reconnect); a task this worker finished is re-checked with one GET
  and only handled again when it is pending again (a continuation).
* **Capacity.** ``is_busy: true`` is sent when the last slot is taken and ``false`` when
  one frees up again, i.e. on changes only (upstream also re-sends ``false`` after every
  task); an update that was not accepted is re-sent with the next heartbeat.
* **Async handlers** are run by :func:`xpander_sync._async.call_maybe_async` on one private
  event-loop thread shared by all async handlers: they must not block (use the ``a*``
  twins, as the guide's ``await backend.aget_args(...)`` does). Sync handlers each run on
  their own thread.
* **Faults.** A lost stream is reconnected forever with capped, jittered backoff (the
  official SDK exits the process after 5 failures). ``worker-environment-conflict`` is
  logged and retried at the longest backoff (the other worker may be on its way out).
  SIGTERM/SIGINT (when ``run`` is on the main thread) stop taking tasks, let in-flight
  handlers finish within ``drain_timeout``, run the shutdown hooks, and ``run`` returns;
  a second signal stops waiting.

Differences from the official SDK, on purpose: decorating with ``@on_task`` starts and
blocks nothing; no ``sys.exit``/``os._exit`` anywhere; the HTTP status of heartbeats and
capacity updates is checked (and logged); handler-set ``used_tools`` and ``tokens`` are
saved and kept (upstream's post-handler reload drops ``used_tools``); metrics use the
task's configuration; no git credentials or any other file are written; redirects are
not followed (they would carry ``x-api-key``); logs go to ``logging.getLogger(__name__)``
and never contain the API key. Not implemented: the ``test_task``/``--invoke`` mode
(it sniffed ``sys.argv`` at import and ended with ``os._exit``; here a handler is a plain
function to call with a Task in a test, and ``Backend.invoke_agent`` against the local
backend runs a real task through a worker), streaming (async generator) handlers,
deep-planning retries (and the reload after the handler that they need), and the
``/invoke`` HTTP server.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import functools
import importlib
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

import attrs
import requests

from . import handlers as _handlers
from ._async import call_maybe_async
from ._converter import structure, unstructure
from ._redact import scrub
from ._retry import RetryPolicy, backoff_delay
from .backend import resolve_agent_id
from .config import Configuration, is_cloud
from .errors import (
    APIError,
    ConfigurationError,
    InvalidInputError,
    ModuleException,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TransportError,
    XpanderError,
)
from .handlers import check_task_handler, task_handler_configuration, task_handlers
from .models.common import AgentExecutionStatus
from .models.task import Task
from .resources.tasks import Tasks
from .transport import USER_AGENT, shared_transport

logger = logging.getLogger(__name__)

__all__ = [
    "BootHookError",
    "SSEParser",
    "ServerSentEvent",
    "Worker",
    "build_metrics_body",
    "load_handler",
    "run_from_cli",
]

#: Timeout (seconds) of a heartbeat/capacity POST, as the official SDK.
EVENT_POST_TIMEOUT = 10.0
#: Timeout (seconds) of marking a task abandoned at the drain deadline.
_ABANDON_TIMEOUT = 5.0
#: Longest result text saved for a handler exception.
_ERROR_RESULT_LIMIT = 2000
#: Task ids remembered as finished, to recognise a stale re-delivery.
_FINISHED_MEMORY = 10_000
_TERMINAL = frozenset(
    {AgentExecutionStatus.COMPLETED, AgentExecutionStatus.FAILED, AgentExecutionStatus.ERROR,
     AgentExecutionStatus.STOPPED}
)


class BootHookError(XpanderError, RuntimeError):
    """An ``@on_boot`` hook raised, so the worker did not start.

    Args:
        message: what failed (scrubbed of secrets).
        hook: the name of the hook that failed.

    Attributes:
        hook: the name of the hook that failed.
    """

    def __init__(self, message: str, *, hook: str = "") -> None:
        super().__init__(message)
        self.hook = hook


class _StreamRefused(Exception):
    """The stream request got a non-200 answer (or not an event stream)."""


class _EnvironmentConflict(Exception):
    """The platform sent ``worker-environment-conflict``."""


# -- server-sent events --------------------------------------------------------------------------


@attrs.frozen
class ServerSentEvent:
    """One dispatched server-sent event.

    Attributes:
        event: the ``event:`` name (``"message"`` when the frame had none).
        data: the ``data:`` lines joined with ``\\n``.
        id: the last ``id:`` seen on the stream, if any.
    """

    event: str
    data: str
    id: Optional[str] = None

    def json(self) -> Any:
        """``data`` decoded as JSON.

        Returns:
            The decoded value.

        Raises:
            ValueError: ``data`` is not JSON.
        """
        return json.loads(self.data)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """An incremental ``text/event-stream`` parser (the WHATWG rules, minus ``retry`` handling).

    Feed it bytes as they arrive, in chunks of any size; it returns the events completed by
    each chunk. Lines end with CRLF, LF or CR (a CRLF split between two chunks counts
    once); ``:`` lines are comments (keep-alives); a blank line dispatches the event.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._after_cr = False
        self._first = True
        self._event = ""
        self._data: List[str] = []
        self._last_id: Optional[str] = None
        #: comment lines seen so far (the platform's keep-alives)
        self.comments = 0

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        """Parse ``chunk`` and return the events it completed (possibly none).

        Args:
            chunk: the next bytes of the stream, split anywhere (even inside a UTF-8 character).

        Returns:
            The events dispatched by this chunk, in order.
        """
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the previous chunk
        if text:
            self._after_cr = text.endswith("\r")
        data = self._pending + text
        lines = _LINE_BREAK.split(data)
        self._pending = lines.pop()
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Optional[ServerSentEvent]:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        return None


# -- pure helpers ----------------------------------------------------------------------------------


def build_metrics_body(task: Task) -> Dict[str, Any]:
    """The ``ExecutionMetricsReport`` of a finished task (``POST /agents-metrics/{agent_id}/execution``).

    The keys and constants are the reference's; ``duration`` is the task's measured
    duration (upstream always sends 0.0) and ``api_calls_made`` its ``used_tools`` (empty
    for an orchestration task that returns metrics, as upstream).

    Args:
        task: the finished task; ``task.tokens`` must be set.

    Returns:
        The JSON body of the metrics report.

    Raises:
        InvalidInputError: the task has no ``tokens``.
    """
    if task.tokens is None:
        raise InvalidInputError("task.tokens must be set to report metrics")
    calls = [] if (task.is_orchestration and task.return_metrics) else list(task.used_tools or [])
    return {
        "execution_id": task.id,
        "source": task.source,
        "sub_executions": list(task.sub_executions or []),
        "memory_thread_id": task.id,
        "task": task.input.text or "",
        "triggered_by": "N/A",
        "skills": [],
        "status": str(task.status),
        "internal_status": task.internal_status,
        "duration": float(task.duration or 0.0),
        "ai_model": "xpander",
        "worker": None,
        "ai_employee_id": None,
        "api_calls_made": calls,
        "result": task.result,
        "llm_tokens": {
            "inner": {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0},
            "worker": unstructure(task.tokens),
        },
    }


def _result_text(value: Any) -> Optional[str]:
    """A handler's ``task.result`` as the string the platform stores."""
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json") and callable(value.model_dump_json):  # pydantic
        return str(value.model_dump_json())
    if attrs.has(type(value)):
        value = unstructure(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _retryable(exc: BaseException) -> bool:
    """Whether a failed platform call may succeed later (outage, overload), not a refusal."""
    if isinstance(exc, (TransportError, ServerError, RateLimitError)):
        return True
    if isinstance(exc, APIError):
        return exc.status_code in (408, 425)
    return False


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


def _read_some(raw: Any) -> bytes:
    """Whatever bytes have arrived (at least one, or b"" at the end of the stream).

    ``read1`` returns as soon as some data is there, for chunked and for close-delimited
    streams alike (``iter_content`` would wait for a full chunk size, or for the end).
    """
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return read1(65536) or b""
    return raw._fp.read1(65536) or b""  # urllib3 1.26: http.client's response


# -- the worker ---------------------------------------------------------------------------------------


class _Slots:
    """A counting semaphore that can be waited on with a stop flag, and tells when it is full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0
        self._cond = threading.Condition()

    def acquire(self, should_stop: Callable[[], bool]) -> bool:
        with self._cond:
            while self.in_use >= self.size:
                if should_stop():
                    return False
                self._cond.wait(0.5)
            if should_stop():
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        return self.in_use >= self.size

    def wait_idle(self, deadline: float, give_up: Callable[[], bool]) -> bool:
        """Wait until no slot is used (``True``), or the deadline / ``give_up()`` (``False``)."""
        with self._cond:
            while self.in_use > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or give_up():
                    return False
                self._cond.wait(min(remaining, 0.2))
            return True


class _Job:
    """One task being handled: lets the drain abandon it without racing its own save."""

    __slots__ = ("lock", "state", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.state = "running"  # running -> finishing | abandoned
        self.lock = threading.Lock()

    def claim(self, new_state: str) -> bool:
        with self.lock:
            if self.state != "running":
                return False
            self.state = new_state
            return True


class Worker:
    """Runs a task handler for one agent's tasks, as they arrive on the platform's event stream.

    Example::

        worker = Worker(handle, configuration=Configuration(), agent_id="agt-1", concurrency=4)
        worker.run()          # blocks until stop(), SIGTERM or Ctrl-C

    Args:
        handler: ``handler(task=<Task>) -> Task``, sync or ``async def``. Default: the one
            function registered with ``@on_task``.
        configuration: settings (API key, organization, URLs). Default: the handler's
            ``@on_task(configuration=...)``, else the environment.
        agent_id: the agent whose tasks to take (default: ``configuration.agent_id`` /
            ``XPANDER_AGENT_ID``).
        concurrency: tasks handled at once (default 6, as the official SDK).
        environment: ``"local"`` or ``"xpander"`` (default: ``xpander`` iff ``IS_XPANDER_CLOUD=true``).
        heartbeat_interval: seconds between heartbeats while connected.
        backoff_base: first reconnect/retry delay in seconds (doubles per failure, 50-100% jitter).
        backoff_max: cap of that delay in seconds.
        stream_idle_timeout: seconds without a byte on the stream after which it is
            considered dead and reopened.
        drain_timeout: seconds in-flight tasks get to finish (and be saved) after a stop.
        boot_hooks: hooks run before connecting (default: the ``@on_boot`` ones).
        shutdown_hooks: hooks run after stopping (default: the ``@on_shutdown`` ones).
        handle_signals: install SIGTERM/SIGINT handlers while ``run`` runs on the main thread.

    Raises:
        ConfigurationError: no API key or organization id; ``MissingAgentError`` when no agent id.
        InvalidInputError: ``configuration`` is not a :class:`Configuration`, or the agent id
            is unusable in a URL.
        TypeError: the handler cannot be called as ``handler(task=...)``, or none is registered.
        ValueError: a numeric argument out of range, or an unknown ``environment``.
    """

    def __init__(
        self,
        handler: Optional[Callable[..., Any]] = None,
        *,
        configuration: Optional[Configuration] = None,
        agent_id: Optional[str] = None,
        concurrency: int = 6,
        environment: Optional[str] = None,
        heartbeat_interval: float = 2.0,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        stream_idle_timeout: float = 120.0,
        drain_timeout: float = 25.0,
        boot_hooks: Optional[Sequence[Callable[[], Any]]] = None,
        shutdown_hooks: Optional[Sequence[Callable[[], Any]]] = None,
        handle_signals: bool = True,
    ) -> None:
        if handler is None:
            handler = _the_registered_handler(None)
        check_task_handler(handler)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be an integer >= 1")
        for name, value in (("heartbeat_interval", heartbeat_interval), ("backoff_base", backoff_base),
                            ("backoff_max", backoff_max), ("stream_idle_timeout", stream_idle_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, (int, float)) or drain_timeout < 0:
            raise ValueError("drain_timeout must be a number of seconds >= 0")
        if environment is not None and environment not in ("local", "xpander"):
            raise ValueError("environment must be 'local' or 'xpander'")
        if configuration is not None and not isinstance(configuration, Configuration):
            raise InvalidInputError("configuration must be an xpander_sync.Configuration")

        self.handler = handler
        self.configuration: Configuration = (
            configuration or task_handler_configuration(handler) or Configuration()
        )
        self.configuration.require_api_key()
        self.events_root = self.configuration.events_root  # raises without an organization id
        self.agent_id = resolve_agent_id(None, agent_id, self.configuration.agent_id)
        self.concurrency = concurrency
        self.environment = environment or ("xpander" if is_cloud() else "local")
        self.heartbeat_interval = float(heartbeat_interval)
        self.stream_idle_timeout = float(stream_idle_timeout)
        self.drain_timeout = float(drain_timeout)
        self._backoff = RetryPolicy(backoff_base=float(backoff_base), backoff_max=float(backoff_max))
        self._boot_hooks = list(boot_hooks) if boot_hooks is not None else _handlers.boot_hooks.handlers()
        self._shutdown_hooks = (
            list(shutdown_hooks) if shutdown_hooks is not None else _handlers.shutdown_hooks.handlers()
        )
        self.handle_signals = handle_signals

        self._transport = shared_transport(self.configuration)
        self._tasks = Tasks(self.configuration, transport=self._transport)
        self._secrets = (self.configuration.api_key,)
        self._slots = _Slots(concurrency)
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # stop() was called: take no more tasks
        self._finished = threading.Event()  # run() is done (reporter exits)
        self._registered = threading.Event()  # a stream is open and registered
        self._report_wake = threading.Event()
        self._stop_deadline: Optional[float] = None
        self._signals = 0
        self._started = False
        self._response: Optional[requests.Response] = None
        self._worker_id: Optional[str] = None
        self._registration_serial = 0
        self._jobs: Dict[str, _Job] = {}
        self._recently_finished: OrderedDict[str, None] = OrderedDict()
        self._admitting: set = set()  # ids accepted by the reader, before their job exists
        self._server_busy = False  # the capacity the platform last acknowledged
        self._thread: Optional[threading.Thread] = None
        self._stats = {"received": 0, "duplicates": 0, "completed": 0, "failed": 0, "abandoned": 0,
                       "connections": 0}

    def __repr__(self) -> str:
        return f"<Worker agent_id={self.agent_id!r} concurrency={self.concurrency} environment={self.environment!r}>"

    # -- public state ----------------------------------------------------------------------------

    @property
    def worker_id(self) -> Optional[str]:
        """The id the platform gave this worker on its current (or last) registration."""
        return self._worker_id

    @property
    def stream_url(self) -> str:
        """The event-stream URL (without its query)."""
        return f"{self.events_root}/events/{self.agent_id}/"

    def wait_registered(self, timeout: Optional[float] = None) -> bool:
        """Wait until the worker is connected and registered; ``True`` if it is.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` once registered, ``False`` if ``timeout`` passed first.
        """
        return self._registered.wait(timeout)

    def stats(self) -> Dict[str, int]:
        """Counters of what this worker did so far.

        Returns:
            A new dict: ``received``, ``duplicates``, ``completed``, ``failed``, ``abandoned``,
            ``connections`` (successful registrations) and ``in_flight``.
        """
        with self._lock:
            stats = dict(self._stats)
            stats["in_flight"] = len(self._jobs)
        return stats

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Worker:
        """Run the worker in a background (daemon) thread; returns ``self``.

        Signals are not handled there (only the main thread can). Use :meth:`stop` and
        :meth:`join`.

        Returns:
            ``self``.

        Raises:
            RuntimeError: the worker was already started (or run).
        """
        thread = threading.Thread(target=self.run, name="xpander-worker", daemon=True)
        with self._lock:
            if self._thread is not None or self._started:
                raise RuntimeError("this worker was already started")
            self._thread = thread
        thread.start()
        return self

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for a :meth:`start`-ed worker to finish; ``True`` when it has.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` when the worker has finished, ``False`` if ``timeout`` passed first.
        """
        thread = self._thread
        if thread is None:
            return self._finished.is_set()
        thread.join(timeout)
        return not thread.is_alive()

    def stop(self) -> None:
        """Stop taking tasks; in-flight tasks get ``drain_timeout`` seconds to finish.

        Thread-safe and idempotent; :meth:`run` returns once the tasks finished (or the
        deadline passed) and the shutdown hooks ran.
        """
        with self._lock:
            if not self._stopping.is_set():
                self._stop_deadline = time.monotonic() + self.drain_timeout
                self._stopping.set()
            response = self._response
        self._slots.wake()
        self._report_wake.set()
        if response is not None:
            _shutdown_stream(response)

    def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT on the main thread); blocking.

        Runs the boot hooks, connects, handles tasks, and on stop drains in-flight tasks,
        then runs the shutdown hooks and returns.

        Raises:
            BootHookError: a boot hook raised (nothing was connected).
            RuntimeError: the worker already ran.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("a Worker runs once; create a new one")
            self._started = True
        if self._stopping.is_set():
            self._finished.set()
            return
        try:
            self._run_boot_hooks()
        except BootHookError:
            self._finished.set()
            raise
        restore = self._install_signal_handlers()
        reader = threading.Thread(target=self._stream_loop, name="xpander-worker-stream", daemon=True)
        reporter = threading.Thread(target=self._report_loop, name="xpander-worker-reporter", daemon=True)
        try:
            logger.info(
                "worker for agent %s starting (concurrency %d, environment %s)",
                self.agent_id, self.concurrency, self.environment,
            )
            reporter.start()
            reader.start()
            self._wait_for_stop()
            self._drain()
            reader.join(5.0)
        finally:
            self._finished.set()
            self._report_wake.set()
            reporter.join(EVENT_POST_TIMEOUT + 1)
            restore()
            self._run_shutdown_hooks()
            logger.info("worker for agent %s stopped", self.agent_id)

    # -- run() helpers ---------------------------------------------------------------------------------

    def _run_boot_hooks(self) -> None:
        for hook in self._boot_hooks:
            name = getattr(hook, "__qualname__", repr(hook))
            try:
                call_maybe_async(hook)
            except Exception as exc:
                message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
                logger.error("boot hook %s failed: %s; the worker does not start", name, message)
                raise BootHookError(f"boot hook {name} failed: {message}", hook=name) from None

    def _run_shutdown_hooks(self) -> None:
        for hook in self._shutdown_hooks:
            name = getattr(hook, "__qualname__", repr(hook))
            try:
                call_maybe_async(hook)
            except Exception as exc:
                logger.error("shutdown hook %s failed: %s", name, scrub(f"{type(exc).__name__}: {exc}",
                                                                         self._secrets))

    def _install_signal_handlers(self) -> Callable[[], None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: Dict[int, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            # Runs between bytecodes on the main thread, possibly while it holds a lock that
            # stop() needs: only set plain attributes here; _wait_for_stop/_drain act on them.
            self._signals += 1

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, on_signal)
            except (ValueError, OSError):  # pragma: no cover - e.g. not allowed on this platform
                pass

        def restore() -> None:
            for signum, handler in previous.items():
                try:
                    signal.signal(signum, handler)
                except (ValueError, OSError):  # pragma: no cover
                    pass

        return restore

    def _wait_for_stop(self) -> None:
        try:
            while not self._stopping.wait(0.2):
                if self._signals:
                    logger.info("signal received: no new tasks; letting %d running task(s) finish",
                                self._slots.in_use)
                    self.stop()
        except KeyboardInterrupt:  # Ctrl-C with handle_signals=False
            self.stop()

    def _drain(self) -> None:
        deadline = self._stop_deadline or time.monotonic()
        try:
            idle = self._slots.wait_idle(deadline, lambda: self._signals > 1)  # a 2nd signal: stop waiting
        except KeyboardInterrupt:
            idle = False
        if idle:
            return
        with self._lock:
            jobs = list(self._jobs.values())
        abandoned = [job for job in jobs if job.claim("abandoned")]
        # Tell the platform, all at once and briefly: the process is on its way out.
        markers = []
        for job in abandoned:
            logger.warning("task %s did not finish before the worker stopped; marking it as error", job.task_id)
            with self._lock:
                self._stats["abandoned"] += 1
            marker = threading.Thread(target=self._mark_abandoned, args=(job.task_id,), daemon=True)
            marker.start()
            markers.append(marker)
        give_up = time.monotonic() + 2 * _ABANDON_TIMEOUT
        for marker in markers:
            marker.join(max(0.0, give_up - time.monotonic()))

    def _mark_abandoned(self, task_id: str) -> None:
        try:
            self._transport.request(
                "PATCH", f"/agent-execution/{task_id}/update",
                json={"status": str(AgentExecutionStatus.ERROR),
                      "result": "the worker stopped before the handler finished"},
                timeout=(min(self.configuration.connect_timeout, _ABANDON_TIMEOUT), _ABANDON_TIMEOUT),
            )
        except ModuleException as exc:
            logger.error("could not mark task %s as error: %s", task_id, exc)

    def _should_give_up(self) -> bool:
        """For retry loops: stopped and past the drain deadline (or forced)."""
        if not self._stopping.is_set():
            return False
        if self._signals > 1:
            return True
        deadline = self._stop_deadline
        return deadline is not None and time.monotonic() >= deadline

    def _delay(self, failures: int) -> float:
        # Capped exponent: after a long outage 2**failures would overflow a float (and kill the reader).
        return backoff_delay(self._backoff, min(max(1, failures), 32), random.random)

    # -- the stream ------------------------------------------------------------------------------------

    def _stream_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                registered = self._consume_stream()
            except _EnvironmentConflict as exc:
                delay = self._backoff.backoff_max
                logger.error("worker-environment-conflict: %s; retrying in %.1fs", exc, delay)
            except _StreamRefused as exc:
                failures += 1
                delay = self._delay(failures)
                logger.error("event stream refused: %s; retrying in %.1fs", exc, delay)
            except Exception as exc:  # network errors, garbage: reconnect, never exit
                if self._stopping.is_set():
                    break
                failures += 1
                delay = self._delay(failures)
                reason = scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:300]
                logger.warning("event stream lost (%s); reconnecting in %.2fs", reason, delay)
            else:
                if self._stopping.is_set():
                    break
                # A stream that registered was healthy: start counting failures afresh.
                failures = 0 if registered else failures + 1
                delay = self._delay(max(1, failures))
                logger.info("event stream closed by the platform; reconnecting in %.2fs", delay)
            finally:
                self._registered.clear()
            self._stopping.wait(delay)

    def _consume_stream(self) -> bool:
        """Open the stream and process it until it ends; ``True`` if it registered."""
        headers = {
            "x-api-key": self.configuration.require_api_key(),
            "Accept": "text/event-stream",
            "Cache-Control": "no-store",
            "User-Agent": USER_AGENT,
        }
        params = {"environment": self.environment, "supports_llm_gateway": "true"}
        response = self._transport.session.get(
            self.stream_url,
            params=params,
            headers=headers,
            stream=True,
            timeout=(self.configuration.connect_timeout, self.stream_idle_timeout),
            allow_redirects=False,  # a redirect must not carry x-api-key elsewhere
        )
        with self._lock:
            self._response = response
        registered = False
        try:
            if self._stopping.is_set():
                return False
            if response.status_code != 200:
                raise _StreamRefused(self._refusal(response))
            ctype = response.headers.get("Content-Type", "")
            if "text/event-stream" not in ctype:
                raise _StreamRefused(f"expected text/event-stream, got {ctype or 'no content type'}")
            parser = SSEParser()
            while not self._stopping.is_set():
                chunk = _read_some(response.raw)
                if not chunk:
                    return registered
                for event in parser.feed(chunk):
                    if self._stopping.is_set():
                        return registered
                    registered = self._on_event(event) or registered
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
        except ValueError:
            pass
        detail = scrub(detail, self._secrets)[:300] or (response.reason or "no message")
        hint = " (check the API key: XPANDER_API_KEY)" if status in (401, 403) else ""
        return f"HTTP {status}: {detail}{hint}"

    def _on_event(self, event: ServerSentEvent) -> bool:
        """Handle one frame; returns ``True`` for a registration."""
        if event.event == "worker-registration":
            try:
                asset = event.json()
                worker_id = str(asset["id"])
            except (ValueError, KeyError, TypeError):
                raise _StreamRefused("worker-registration without a worker id") from None
            with self._lock:
                self._worker_id = worker_id
                self._registration_serial += 1
                self._stats["connections"] += 1
                # The platform registers us not busy; the reporter corrects it if we are.
                self._server_busy = bool(asset.get("is_busy", False))
            self._registered.set()
            self._report_wake.set()
            logger.info("registered as worker %s for agent %s", worker_id, self.agent_id)
            return True
        if event.event == "agent-execution":
            self._on_task_frame(event)
        elif event.event == "worker-environment-conflict":
            try:
                detail = str(event.json().get("error") or "another worker is connected")
            except (ValueError, AttributeError):
                detail = "another worker is connected"
            raise _EnvironmentConflict(scrub(detail, self._secrets)[:300])
        else:
            logger.debug("ignoring event %r", event.event[:64])
        return False

    def _on_task_frame(self, event: ServerSentEvent) -> None:
        try:
            data = event.json()
        except ValueError:
            logger.error("agent-execution event without JSON data; skipped")
            return
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            logger.error("agent-execution event without a task id; skipped")
            return
        try:
            task = structure(data, Task)
        except ResponseDecodeError as exc:
            logger.error("task %s could not be decoded (%s); marking it as error", task_id, exc)
            self._mark_undecodable(task_id, exc)
            return
        self._tasks.bind(task)
        if not self._admit(task_id):
            return
        if not self._slots.acquire(self._stopping.is_set):
            # Stopped while waiting: the task was not started and stays pending for later.
            self._forget(task_id)
            return
        job = _Job(task_id)
        with self._lock:
            self._jobs[task_id] = job
            self._stats["received"] += 1
        if self._slots.busy:
            self._report_wake.set()
        thread = threading.Thread(
            target=self._handle, args=(task, job), name=f"xpander-task-{task_id[:8]}", daemon=True
        )
        thread.start()

    def _admit(self, task_id: str) -> bool:
        """Reserve ``task_id`` unless it is already being handled (or is a stale re-delivery)."""
        with self._lock:
            if task_id in self._jobs or task_id in self._admitting:
                self._stats["duplicates"] += 1
                logger.debug("task %s delivered again while in flight; ignored", task_id)
                return False
            recently = task_id in self._recently_finished
            self._admitting.add(task_id)
        if recently:
            # Finished here before: handle it again only if it is pending again (a continuation).
            try:
                current = self._tasks.get(task_id).status
            except ModuleException as exc:
                logger.warning("could not check re-delivered task %s (%s); skipping it", task_id, exc)
                current = None
            if current is not AgentExecutionStatus.PENDING:
                with self._lock:
                    self._stats["duplicates"] += 1
                    self._admitting.discard(task_id)
                logger.debug("task %s delivered again after it finished; ignored", task_id)
                return False
        return True

    def _forget(self, task_id: str) -> None:
        with self._lock:
            self._admitting.discard(task_id)

    def _mark_undecodable(self, task_id: str, exc: ResponseDecodeError) -> None:
        try:
            self._tasks.update(task_id, status=AgentExecutionStatus.ERROR,
                               result=f"the worker could not decode the task: {exc.description}"[:500])
        except (ModuleException, InvalidInputError) as err:
            logger.error("could not mark task %s as error: %s", task_id, err)

    # -- handling one task -----------------------------------------------------------------------------

    def _handle(self, task: Task, job: _Job) -> None:
        try:
            self._handle_task(task, job)
        except Exception:  # a bug of ours: never kill the process, never lose the slot
            logger.exception("internal error while handling task %s", task.id)
        finally:
            with self._lock:
                self._jobs.pop(task.id, None)
                self._admitting.discard(task.id)
                self._recently_finished[task.id] = None
                self._recently_finished.move_to_end(task.id)
                while len(self._recently_finished) > _FINISHED_MEMORY:
                    self._recently_finished.popitem(last=False)
            self._slots.release()
            self._report_wake.set()

    def _handle_task(self, task: Task, job: _Job) -> None:
        task_id = task.id
        ok = self._retry(
            lambda: task.set_status(AgentExecutionStatus.EXECUTING),
            f"set task {task_id} executing",
            until=lambda: self._stopping.is_set(),  # not started yet: leave it pending for later
        )
        if not ok:
            job.claim("abandoned")
            return
        logger.info("task %s: running handler", task_id)
        started = time.monotonic()
        failed = False
        try:
            returned = call_maybe_async(functools.partial(self.handler, task=task))
            if returned is None:
                returned = task  # the handler changed the task in place and forgot to return it
            elif not isinstance(returned, Task):
                raise TypeError(f"the task handler returned {type(returned).__name__}, expected the Task")
            elif returned is not task:
                if returned._handle is None:
                    self._tasks.bind(returned)
                task = returned
            if task.status == AgentExecutionStatus.EXECUTING:
                task.status = AgentExecutionStatus.COMPLETED
            task.result = _result_text(task.result)
        except BaseException as exc:  # even SystemExit from a handler: the task must not stay "executing"
            failed = True
            task.status = AgentExecutionStatus.ERROR
            task.result = self._error_text(exc, task)
            logger.warning(
                "task %s: handler raised %s\n%s", task_id, task.result,
                scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                      (*self._secrets, task.user_oidc_token)),
            )
        if not task.duration:
            task.duration = round(time.monotonic() - started, 3)
        if not job.claim("finishing"):
            logger.warning("task %s finished after the worker gave up on it; result not saved", task_id)
            return
        tokens, used_tools = task.tokens, list(task.used_tools or [])
        saved = self._retry(task.save, f"save task {task_id}", until=self._should_give_up)
        # The server's copy replaced ours; keep what the handler set (upstream loses used_tools).
        task.tokens, task.used_tools = tokens, used_tools
        if not saved:
            logger.error("task %s: the result could not be saved before the worker stopped", task_id)
            return
        with self._lock:
            self._stats["failed" if failed else "completed"] += 1
        logger.info("task %s: saved with status %s", task_id, task.status)
        if task.tokens is not None:
            self._report_metrics(task)

    def _error_text(self, exc: BaseException, task: Task) -> str:
        message = str(exc) or type(exc).__name__
        return scrub(message, (*self._secrets, task.user_oidc_token))[:_ERROR_RESULT_LIMIT]

    def _retry(self, call: Callable[[], Any], what: str, *, until: Callable[[], bool]) -> bool:
        """Call until it succeeds (``True``), it fails for good, or ``until()`` (``False``)."""
        failures = 0
        while True:
            try:
                call()
                if failures:
                    logger.info("%s: succeeded after %d retries", what, failures)
                return True
            except ModuleException as exc:
                if not _retryable(exc):
                    logger.error("%s failed: %s", what, exc)
                    return False
                failures += 1
                delay = self._delay(failures)
                if until():
                    logger.error("%s failed (%s) and the worker is stopping; giving up", what, exc)
                    return False
                logger.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
            if not self._stopping.is_set():
                self._stopping.wait(delay)  # a stop() wakes us early, to apply the give-up rule at once
            else:
                remaining = (self._stop_deadline or 0.0) - time.monotonic()
                time.sleep(max(0.0, min(delay, remaining)))

    def _report_metrics(self, task: Task) -> None:
        configuration = getattr(task._handle, "configuration", None) or self.configuration
        try:
            shared_transport(configuration).request(
                "POST", f"/agents-metrics/{task.agent_id}/execution", json=build_metrics_body(task)
            )
        except (ModuleException, InvalidInputError, ConfigurationError) as exc:
            logger.warning("task %s: metrics not reported: %s", task.id, exc)

    # -- heartbeats and capacity ----------------------------------------------------------------------

    def _report_loop(self) -> None:
        serial = 0
        next_beat = 0.0
        while not self._finished.is_set():
            timeout = max(0.0, next_beat - time.monotonic()) if next_beat else self.heartbeat_interval
            self._report_wake.wait(timeout)
            self._report_wake.clear()
            if self._finished.is_set():
                return
            if not self._registered.is_set() or self._stopping.is_set():
                next_beat = 0.0
                continue
            with self._lock:
                worker_id, current = self._worker_id, self._registration_serial
            if worker_id is None:
                continue
            now = time.monotonic()
            if current != serial or now >= next_beat:
                serial = current
                self._post_event(worker_id, "worker-heartbeat", _dt.datetime.now().isoformat())
                next_beat = time.monotonic() + self.heartbeat_interval
            busy = self._slots.busy
            if busy != self._server_busy:
                # Not acknowledged: tried again at the next beat, or the platform could think we
                # are busy forever and send nothing more.
                if self._post_event(worker_id, "worker-capacity-update", {"is_busy": busy}):
                    self._server_busy = busy

    def _post_event(self, worker_id: str, event: str, data: Any) -> bool:
        url = f"{self.events_root}/events/{worker_id}"
        body = {"id": str(uuid.uuid4()), "event": event, "data": data}
        try:
            self._transport.request(
                "POST", "", url=url, params={"type": "worker", "agent_id": self.agent_id}, json=body,
                repeatable=True, timeout=(self.configuration.connect_timeout, EVENT_POST_TIMEOUT),
            )
        except ModuleException as exc:
            logger.warning("%s for worker %s not accepted: %s", event, worker_id, exc)
            return False
        return True


def _shutdown_stream(response: requests.Response) -> None:
    """Wake a reader blocked on the stream: shutting the socket down ends its recv at once
    (closing the file descriptor from another thread would not)."""
    sock = _stream_socket(response)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# -- the command line -------------------------------------------------------------------------------


def _the_registered_handler(module: Optional[str]) -> Callable[..., Any]:
    """The one ``@on_task`` handler (of ``module``, when given)."""
    handlers = task_handlers.handlers()
    if module is not None:
        handlers = [h for h in handlers if getattr(h, "__module__", None) == module]
    where = f" in module {module}" if module else ""
    if not handlers:
        raise TypeError(f"no @on_task handler is registered{where}: decorate one, or pass the handler")
    if len(handlers) > 1:
        names = ", ".join(getattr(h, "__qualname__", repr(h)) for h in handlers)
        raise TypeError(f"several @on_task handlers are registered{where} ({names}): name one as MODULE:FUNCTION")
    return handlers[0]


def load_handler(target: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNCTION`` (or ``MODULE`` with one ``@on_task`` handler) and return the handler.

    The current directory is put on ``sys.path`` (as ``python -m`` does) so that
    ``xpander-sync worker app:handle`` finds ``app.py`` there.

    Args:
        target: ``MODULE:FUNCTION`` (``FUNCTION`` may be dotted, e.g. ``Class.method``) or ``MODULE``.

    Returns:
        The handler.

    Raises:
        ImportError: the module cannot be imported.
        TypeError: the function is missing, not a valid handler, or ambiguous.
    """
    module_name, _, function = target.partition(":")
    if not module_name or (":" in target and not function):
        raise TypeError(f"expected MODULE:FUNCTION or MODULE, got {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    module = importlib.import_module(module_name)
    if not function:
        return _the_registered_handler(module.__name__)
    handler: Any = module
    for part in function.split("."):
        if not hasattr(handler, part):
            raise TypeError(f"module {module_name} has no attribute {function!r}")
        handler = getattr(handler, part)
    check_task_handler(handler, "worker")
    return handler


def run_from_cli(
    target: str,
    configuration: Configuration,
    *,
    concurrency: int,
    agent_id: Optional[str],
    out: TextIO,
    err: TextIO,
    **worker_options: Any,
) -> int:
    """Run ``xpander-sync worker MODULE:FUNCTION``; returns the exit status.

    Imports the handler (``FUNCTION`` may be undecorated; without it, the module's one
    ``@on_task`` handler is used), runs the ``@on_boot`` hooks, serves tasks until SIGTERM
    or Ctrl-C, drains, runs the ``@on_shutdown`` hooks.

    Args:
        target: ``MODULE:FUNCTION`` or ``MODULE``.
        configuration: the CLI's configuration (environment and flags).
        concurrency: tasks handled at once.
        agent_id: the agent (default: ``XPANDER_AGENT_ID``).
        out: where the start/stop lines go.
        err: where errors go (and the worker's INFO logs, when logging is not configured).
        **worker_options: more :class:`Worker` keyword arguments.

    Returns:
        0 after a clean stop; 1 when a boot hook failed; 2 for a bad target or configuration.
    """
    try:
        handler = load_handler(target)
        worker = Worker(handler, configuration=configuration, agent_id=agent_id, concurrency=concurrency,
                        **worker_options)
    except (ImportError, TypeError, ValueError) as exc:
        message = scrub(f"{exc}", (configuration.api_key,))
        err.write(f"xpander-sync worker: error: {message}\n")
        return 2
    # Without -v nothing would show; an operator wants to see connects, losses and failures.
    attached: Optional[logging.Handler] = None
    previous_level = logger.level
    if not logging.getLogger().handlers:
        attached = logging.StreamHandler(err)
        attached.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(attached)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    name = getattr(handler, "__qualname__", target)
    out.write(f"xpander-sync worker: {name} for agent {worker.agent_id} (concurrency {concurrency}); "
              "Ctrl-C or SIGTERM to stop\n")
    out.flush()
    try:
        worker.run()
    except BootHookError as exc:
        err.write(f"xpander-sync worker: error: {exc}\n")
        return 1
    finally:
        if attached is not None:
            logger.removeHandler(attached)
            logger.setLevel(previous_level)
    stats = worker.stats()
    out.write(f"xpander-sync worker: stopped ({stats['completed']} completed, {stats['failed']} failed)\n")
    out.flush()
    return 0

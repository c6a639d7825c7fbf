"""The public :class:`Worker`: its construction, its lifecycle (run, start, stop, join), hooks and signals.

Plain threads, no event loop of our own::

    run() ── boot hooks ── signal handlers ── waits for stop()
      ├── reader thread      the agent's event stream (Workers.open_stream) → runner.submit   (_stream.py)
      ├── heartbeat thread   Workers.heartbeat / Workers.update_capacity                     (_heartbeat.py)
      └── task threads       ≤ concurrency at once: executing → handler → save → metrics     (_runner.py)

On stop (``stop()``, SIGTERM or SIGINT on the main thread): no more tasks are taken, in-flight
handlers get ``drain_timeout`` seconds, the shutdown hooks run, and ``run`` returns; a second
signal stops waiting. Async handlers and hooks run through
:func:`xpander_sync._async.call_maybe_async` on one private event-loop thread shared by all
async handlers (they must not block: use the ``a*`` twins); sync handlers each run on their
own thread.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable, Dict, Optional, Sequence

from .. import handlers as _handlers
from .._async import call_maybe_async
from .._redact import scrub
from ..backend import resolve_agent_id
from ..config import Configuration, state_dir
from ..errors import BootHookError, InvalidInputError, ModuleException
from ..handlers import check_task_handler, task_handler_configuration
from ..models.common import AgentExecutionStatus
from ..resources import Tasks, Workers
from ..resources.workers import EVENT_POST_TIMEOUT
from ..transport import shared_transport
from ._dispatch import Dispatcher
from ._heartbeat import Heartbeat
from ._journal import Journal
from ._runner import Runner
from ._state import Counters, StopState
from ._stream import StreamReader
from .loading import registered_handler
from .settings import WorkerSettings

logger = logging.getLogger(__name__)

#: Seconds ``run`` waits for the heartbeat thread at the end (one event POST's read timeout, and one more).
_HEARTBEAT_JOIN = EVENT_POST_TIMEOUT + 1
_DEFAULT: Any = object()
#: The result of a task that a killed worker left executing (set by the next worker start).
ORPHAN_RESULT = "the worker running this task was killed before the handler finished; marked by the next worker start"


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
        journal_dir: where this process lists the tasks it is running, so that the tasks of a
            worker killed with SIGKILL are marked ``error`` by the next worker start on this
            machine (default ``$XDG_STATE_HOME/xpander-sync/worker``; ``None`` disables it).
        dispatch: hand each received task's id to ``dispatch(task_id)`` instead of running the
            handler here (``xpander_sync.contrib.celery`` enqueues it for Celery workers, which
            run the handler); retried with the backoff while it raises. ``concurrency`` then
            does not apply.

    Raises:
        ConfigurationError: no API key or organization id; a numeric argument out of range or
            an unknown ``environment`` (see :class:`WorkerSettings`); ``MissingAgentError``
            when no agent id.
        InvalidInputError: ``configuration`` is not a :class:`Configuration`, or the agent id
            is unusable in a URL.
        TypeError: the handler cannot be called as ``handler(task=...)``, or none is registered.
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
        journal_dir: Optional[str] = _DEFAULT,
        dispatch: Optional[Callable[[str], Any]] = None,
    ) -> None:
        if handler is None:
            handler = registered_handler()
        check_task_handler(handler)
        #: the validated knobs (frozen)
        self.settings = WorkerSettings(
            concurrency=concurrency, environment=environment, heartbeat_interval=heartbeat_interval,
            backoff_base=backoff_base, backoff_max=backoff_max, stream_idle_timeout=stream_idle_timeout,
            drain_timeout=drain_timeout, handle_signals=handle_signals,
        )
        if configuration is not None and not isinstance(configuration, Configuration):
            raise InvalidInputError("configuration must be an xpander_sync.Configuration")
        self.handler = handler
        self.configuration: Configuration = (
            configuration or task_handler_configuration(handler) or Configuration()
        )
        self.configuration.require_api_key()
        self.events_root = self.configuration.events_root  # raises without an organization id
        self.agent_id = resolve_agent_id(None, agent_id, self.configuration.agent_id)
        self._boot_hooks = list(boot_hooks) if boot_hooks is not None else _handlers.boot_hooks.handlers()
        self._shutdown_hooks = (
            list(shutdown_hooks) if shutdown_hooks is not None else _handlers.shutdown_hooks.handlers()
        )

        transport = shared_transport(self.configuration)
        self._workers = Workers(self.configuration, transport=transport)
        self._tasks = Tasks(self.configuration, transport=transport)
        folder = os.path.join(state_dir(), "worker") if journal_dir is _DEFAULT else journal_dir
        self._journal = Journal(folder, self.agent_id)
        self._secrets = (self.configuration.api_key,)
        self._stop = StopState(self.settings.drain_timeout)
        self._counters = Counters()
        self._lock = threading.Lock()
        self._started = False
        self._thread: Optional[threading.Thread] = None
        self._runner = Runner(
            handler, tasks=self._tasks, workers=self._workers,
            settings=self.settings, stop=self._stop, counters=self._counters,
            on_capacity_change=lambda: self._heartbeat.wake(), journal=self._journal,
        )
        self._heartbeat = Heartbeat(
            self._workers, self.agent_id, interval=self.settings.heartbeat_interval, stop=self._stop,
            is_busy=lambda: self._runner.busy,
        )
        on_task = self._runner.submit
        if dispatch is not None:
            dispatcher = Dispatcher(dispatch, settings=self.settings, stop=self._stop, counters=self._counters,
                                    secrets=self._secrets)
            on_task = dispatcher.submit
            self._heartbeat = Heartbeat(
                self._workers, self.agent_id, interval=self.settings.heartbeat_interval, stop=self._stop,
                is_busy=lambda: dispatcher.busy,
            )
        self._reader = StreamReader(
            self._workers, self.agent_id, settings=self.settings, stop=self._stop, heartbeat=self._heartbeat,
            counters=self._counters, on_task=on_task, secrets=self._secrets,
        )

    def __repr__(self) -> str:
        return f"<Worker agent_id={self.agent_id!r} concurrency={self.concurrency} environment={self.environment!r}>"

    # -- public state ----------------------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        """Tasks handled at once."""
        return self.settings.concurrency

    @property
    def environment(self) -> str:
        """``"local"`` or ``"xpander"``, as sent to the platform."""
        return self.settings.environment

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats while connected."""
        return self.settings.heartbeat_interval

    @property
    def stream_idle_timeout(self) -> float:
        """Seconds without a byte after which the stream is reopened."""
        return self.settings.stream_idle_timeout

    @property
    def drain_timeout(self) -> float:
        """Seconds in-flight tasks get after a stop."""
        return self.settings.drain_timeout

    @property
    def handle_signals(self) -> bool:
        """Whether ``run`` on the main thread handles SIGTERM/SIGINT."""
        return self.settings.handle_signals

    @property
    def worker_id(self) -> Optional[str]:
        """The id the platform gave this worker on its current (or last) registration."""
        return self._heartbeat.worker_id

    @property
    def stream_url(self) -> str:
        """The event-stream URL (without its query)."""
        return self._workers.stream_url(self.agent_id)

    def wait_registered(self, timeout: Optional[float] = None) -> bool:
        """Wait until the worker is connected and registered; ``True`` if it is.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` once registered, ``False`` if ``timeout`` passed first.
        """
        return self._heartbeat.registered.wait(timeout)

    def stats(self) -> Dict[str, int]:
        """Counters of what this worker did so far.

        Returns:
            A new dict: ``received``, ``duplicates``, ``completed``, ``failed``, ``abandoned``,
            ``connections`` (successful registrations) and ``in_flight``.
        """
        stats = self._counters.snapshot()
        stats["in_flight"] = self._runner.in_flight()
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
            return self._stop.finished.is_set()
        thread.join(timeout)
        return not thread.is_alive()

    def _reclaim_orphans(self) -> None:
        """Mark ``error`` the tasks that a killed worker of this machine left ``executing``."""
        for path, task_ids in self._journal.orphans():
            keep = False
            for task_id in task_ids:
                try:
                    if self._tasks.get(task_id).status is AgentExecutionStatus.EXECUTING:
                        self._tasks.update(task_id, status=AgentExecutionStatus.ERROR, result=ORPHAN_RESULT)
                        logger.warning("task %s was left executing by a worker that was killed; marked error", task_id)
                except ModuleException as exc:
                    keep = keep or exc.retryable  # the platform is down: try again at the next start
                    if not exc.retryable:
                        logger.warning("could not reclaim task %s: %s", task_id, exc)
                except InvalidInputError:
                    continue
            if not keep:
                self._journal.forget(path)

    def stop(self) -> None:
        """Stop taking tasks; in-flight tasks get ``drain_timeout`` seconds to finish.

        Thread-safe and idempotent; :meth:`run` returns once the tasks finished (or the
        deadline passed) and the shutdown hooks ran.
        """
        self._stop.request()
        self._runner.wake()
        self._heartbeat.wake()
        self._reader.close()

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
        if self._stop.is_requested():
            self._stop.finished.set()
            return
        try:
            self._run_boot_hooks()
        except BootHookError:
            self._stop.finished.set()
            raise
        self._reclaim_orphans()
        restore = self._install_signal_handlers()
        reader = threading.Thread(target=self._reader.run, name="xpander-worker-stream", daemon=True)
        heartbeat = threading.Thread(target=self._heartbeat.run, name="xpander-worker-reporter", daemon=True)
        try:
            logger.info(
                "worker for agent %s starting (concurrency %d, environment %s)",
                self.agent_id, self.concurrency, self.environment,
            )
            heartbeat.start()
            reader.start()
            self._wait_for_stop()
            self._runner.drain()
            reader.join(5.0)
        finally:
            self._stop.finished.set()
            self._heartbeat.wake()
            heartbeat.join(_HEARTBEAT_JOIN)
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
            # stop() needs: only bump a plain counter here; _wait_for_stop and the drain act on it.
            self._stop.signals += 1

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
            while not self._stop.requested.wait(0.2):
                if self._stop.signals:
                    logger.info("signal received: no new tasks; letting %d running task(s) finish",
                                self._runner.in_use)
                    self.stop()
        except KeyboardInterrupt:  # Ctrl-C with handle_signals=False
            self.stop()

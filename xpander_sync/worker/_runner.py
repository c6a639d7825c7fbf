"""The runner: takes the tasks the stream delivers and runs the handler on each, in bounded slots.

* **Backpressure.** :meth:`Runner.submit` takes a free slot *before* it returns to the stream
  reader; while all ``concurrency`` slots are busy the reader stops reading the stream, so no
  more tasks are taken than can run (the platform keeps the rest, or gives them to another
  worker).
* **One Task per handler call**, built from its own JSON and bound to the worker's
  :class:`~xpander_sync.Tasks`; nothing (no "current task") is shared between tasks.
* **Running one task** (``executing``, the handler, the save, the metrics) is
  :class:`~._execute.Executor`'s, which a Celery worker uses too.
* **Results are not lost.** Setting ``executing`` and saving the result are retried, with the
  settings' backoff, through a backend outage, until they succeed or the worker is stopped and
  its drain deadline has passed. A handler exception saves the task with status ``error`` and
  the (secret-scrubbed) message.
* **Duplicates are dropped.** A task id already being handled is ignored if delivered again
  (e.g. after a reconnect); a task this worker finished is re-checked with
  :meth:`Tasks.get <xpander_sync.Tasks.get>` and handled again only when it is pending again.
* **The drain.** After a stop, in-flight handlers get the drain deadline; those still running
  then are marked ``error`` (briefly: the process is on its way out) and their late results
  are not saved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Set, Tuple

from .._converter import structure
from ..errors import ModuleException, ResponseDecodeError, XpanderError
from ..models.common import AgentExecutionStatus
from ..models.task import Task
from ..resources import Tasks, Workers
from ._execute import Executor
from ._journal import Journal
from ._state import Counters, StopState
from .settings import WorkerSettings
from .sse import ServerSentEvent

logger = logging.getLogger(__name__)

#: Timeout (seconds) of marking a task abandoned at the drain deadline.
ABANDON_TIMEOUT = 5.0
#: Task ids remembered as finished, to recognise a stale re-delivery.
_FINISHED_MEMORY = 10_000


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


class Runner:
    """Runs ``handler(task=...)`` for each delivered task, at most ``settings.concurrency`` at once.

    Args:
        handler: the task handler, sync or ``async def``.
        tasks: the worker's :class:`~xpander_sync.Tasks` (status updates, saves, reloads).
        workers: the worker's :class:`~xpander_sync.resources.Workers` (metrics).
        settings: the worker's settings.
        stop: the worker's stop state.
        counters: the worker's counters.
        on_capacity_change: called when a slot is taken or freed (wakes the heartbeat).
        journal: where the ids of running tasks are kept on disk (see ``_journal``).
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        *,
        tasks: Tasks,
        workers: Workers,
        settings: WorkerSettings,
        stop: StopState,
        counters: Counters,
        on_capacity_change: Callable[[], None],
        journal: Optional[Journal] = None,
    ) -> None:
        self.handler = handler
        self._journal = journal or Journal(None, "")
        self._executor = Executor(tasks=tasks, workers=workers, settings=settings, stop=stop, journal=self._journal)
        self._tasks = tasks
        self._workers = workers
        self._settings = settings
        self._stop = stop
        self._counters = counters
        self._on_capacity_change = on_capacity_change
        configuration = tasks.configuration
        self._secrets: Tuple[Any, ...] = (configuration.api_key,)
        self._slots = _Slots(settings.concurrency)
        self._lock = threading.Lock()
        self._jobs: Dict[str, _Job] = {}
        self._admitting: Set[str] = set()  # ids accepted from the stream, before their job exists
        self._recently_finished: OrderedDict[str, None] = OrderedDict()

    # -- state ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether every slot is taken."""
        return self._slots.busy

    @property
    def in_use(self) -> int:
        """Slots taken (tasks being handled)."""
        return self._slots.in_use

    def in_flight(self) -> int:
        """Tasks whose handling started and has not ended.

        Returns:
            The number of jobs.
        """
        with self._lock:
            return len(self._jobs)

    def wake(self) -> None:
        """Wake a :meth:`submit` waiting for a slot (after a stop request)."""
        self._slots.wake()

    # -- taking a task -------------------------------------------------------------------------

    def submit(self, event: ServerSentEvent) -> None:
        """Take the task of an ``agent-execution`` frame: blocks until a slot is free, then
        handles it on its own thread (a duplicate, a stale re-delivery or a bad frame is dropped).

        Args:
            event: the frame; its data is the task JSON.
        """
        frame = event.task()
        if frame is None:
            return
        data, task_id = frame
        try:
            task = structure(data, Task)
        except ResponseDecodeError as exc:
            logger.error("task %s could not be decoded (%s); marking it as error", task_id, exc)
            self._mark_undecodable(task_id, exc)
            return
        self._tasks.bind(task)
        if not self._admit(task_id):
            return
        if not self._slots.acquire(self._stop.is_requested):
            # Stopped while waiting: the task was not started and stays pending for later.
            with self._lock:
                self._admitting.discard(task_id)
            return
        job = _Job(task_id)
        with self._lock:
            self._jobs[task_id] = job
        self._counters.add("received")
        if self._slots.busy:
            self._on_capacity_change()
        thread = threading.Thread(
            target=self._handle, args=(task, job), name=f"xpander-task-{task_id[:8]}", daemon=True
        )
        thread.start()

    def _admit(self, task_id: str) -> bool:
        """Reserve ``task_id`` unless it is already being handled (or is a stale re-delivery)."""
        with self._lock:
            if task_id in self._jobs or task_id in self._admitting:
                self._counters.add("duplicates")
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
                    self._admitting.discard(task_id)
                self._counters.add("duplicates")
                logger.debug("task %s delivered again after it finished; ignored", task_id)
                return False
        return True

    def _mark_undecodable(self, task_id: str, exc: ResponseDecodeError) -> None:
        try:
            self._tasks.update(task_id, status=AgentExecutionStatus.ERROR,
                               result=f"the worker could not decode the task: {exc.description}"[:500])
        except XpanderError as err:
            logger.error("could not mark task %s as error: %s", task_id, err)

    # -- handling one task ---------------------------------------------------------------------

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
            self._on_capacity_change()

    def _handle_task(self, task: Task, job: _Job) -> None:
        failed = self._executor.run_and_save(
            task, self.handler,
            give_up_start=self._stop.is_requested,  # not started yet: leave it pending for later
            give_up_save=self._stop.give_up,
            may_save=lambda: job.claim("finishing"),
        )
        if failed is None:
            job.claim("abandoned")  # not started (stopping), or not saved: the drain must not mark it
            return
        self._counters.add("failed" if failed else "completed")

    def _until_done(self, call: Callable[[], Any], what: str, *, give_up: Callable[[], bool]) -> bool:
        """Call until it succeeds (``True``), fails for good (not ``retryable``), or ``give_up()`` (``False``)."""
        return self._executor.until_done(call, what, give_up=give_up)

    # -- the drain -----------------------------------------------------------------------------

    def drain(self) -> None:
        """Wait for in-flight tasks until the drain deadline (or a second signal); mark the rest ``error``."""
        deadline = self._stop.deadline or time.monotonic()
        try:
            idle = self._slots.wait_idle(deadline, self._stop.forced)
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
            self._counters.add("abandoned")
            marker = threading.Thread(target=self._mark_abandoned, args=(job.task_id,), daemon=True)
            marker.start()
            markers.append(marker)
        give_up = time.monotonic() + 2 * ABANDON_TIMEOUT
        for marker in markers:
            marker.join(max(0.0, give_up - time.monotonic()))

    def _mark_abandoned(self, task_id: str) -> None:
        connect = min(self._tasks.configuration.connect_timeout, ABANDON_TIMEOUT)
        try:
            self._tasks.update(task_id, status=AgentExecutionStatus.ERROR,
                               result="the worker stopped before the handler finished",
                               timeout=(connect, ABANDON_TIMEOUT))
            self._journal.remove(task_id)
        except XpanderError as exc:
            logger.error("could not mark task %s as error: %s", task_id, exc)

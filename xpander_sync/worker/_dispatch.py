"""Dispatch mode: the stream reader hands each task's id to a callable (e.g. a Celery enqueue) instead
of running the handler in this process.

The reader keeps no task state of its own: a frame's task id goes to ``dispatch(task_id)``, which is
retried with the settings' backoff while it raises (a broker that is down), blocking the reader
(the platform keeps the tasks meanwhile) until it succeeds or the worker stops. Whoever runs the task
later reloads it and skips it when it is already finished
(:func:`~xpander_sync.worker._execute.run_platform_task`), so a task delivered twice costs no
second result.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Tuple

from .._redact import scrub
from ._state import Counters, StopState
from .settings import WorkerSettings
from .sse import ServerSentEvent

logger = logging.getLogger("xpander_sync.worker._dispatch")


class Dispatcher:
    """Takes ``agent-execution`` frames from the reader and hands their task ids to ``dispatch``.

    Args:
        dispatch: ``dispatch(task_id)``; any exception means "not taken, try again".
        settings: the backoff between two attempts.
        stop: the worker's stop state (a stop ends the retries; the task stays pending).
        counters: ``received`` counts the tasks handed over.
        secrets: values scrubbed from the logged errors.
    """

    def __init__(self, dispatch: Callable[[str], Any], *, settings: WorkerSettings, stop: StopState,
                 counters: Counters, secrets: Tuple[Any, ...]) -> None:
        self._dispatch = dispatch
        self._settings = settings
        self._stop = stop
        self._counters = counters
        self._secrets = secrets
        self._failing = threading.Event()

    @property
    def busy(self) -> bool:
        """Whether the last hand-over failed (the heartbeat then says busy: send no more)."""
        return self._failing.is_set()

    def submit(self, event: ServerSentEvent) -> None:
        """Hand the frame's task id over, retrying until it is taken or the worker stops.

        Args:
            event: the ``agent-execution`` frame; its data is the task JSON.
        """
        frame = event.task()
        if frame is None:
            return
        task_id = frame[1]
        failures = 0
        while not self._stop.is_requested():
            try:
                self._dispatch(task_id)
            except Exception as exc:
                failures += 1
                self._failing.set()
                delay = self._settings.delay(failures)
                reason = scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:300]
                logger.warning("task %s not dispatched (%s); retrying in %.2fs", task_id, reason, delay)
                self._stop.pause(delay)
                continue
            if failures:
                logger.info("task %s dispatched after %d retries", task_id, failures)
            self._failing.clear()
            self._counters.add("received")
            logger.debug("task %s dispatched", task_id)
            return
        logger.info("task %s not dispatched: the worker is stopping (it stays pending)", task_id)

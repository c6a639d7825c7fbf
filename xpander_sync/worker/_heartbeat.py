"""The worker's registration and its heartbeat thread: ``worker-heartbeat`` and ``worker-capacity-update``.

The stream reader tells :class:`Heartbeat` when the platform registered the worker (its id)
and when the stream was lost. While registered, the heartbeat thread sends a heartbeat every
``heartbeat_interval`` (and at once after each new registration), and the capacity on
changes only: ``is_busy: true`` when the last slot is taken, ``false`` when one frees up
(upstream re-sends ``false`` after every task). The HTTP status of each is checked; a
capacity update that was not accepted is sent again at the next beat, or the platform
could think the worker busy forever and send it nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from ..errors import XpanderError
from ..resources import Workers
from ._state import StopState

logger = logging.getLogger(__name__)


class Heartbeat:
    """Registration state, and the loop that keeps the platform told the worker is alive and how busy.

    Args:
        workers: the worker's :class:`~xpander_sync.resources.Workers`.
        agent_id: the worker's agent.
        interval: seconds between heartbeats.
        stop: the worker's stop state (the loop ends when ``run()`` is finished).
        is_busy: whether every slot is taken right now.
    """

    def __init__(
        self, workers: Workers, agent_id: str, *, interval: float, stop: StopState, is_busy: Callable[[], bool]
    ) -> None:
        self._workers = workers
        self._agent_id = agent_id
        self._interval = interval
        self._stop = stop
        self._is_busy = is_busy
        #: set while a stream is open and registered
        self.registered = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._worker_id: Optional[str] = None
        self._serial = 0  # registrations so far: a new one gets a heartbeat at once
        self._server_busy = False  # the capacity the platform last acknowledged

    @property
    def worker_id(self) -> Optional[str]:
        """The id of the current (or last) registration."""
        return self._worker_id

    def registered_as(self, worker_id: str, is_busy: bool) -> None:
        """The platform registered the worker (``worker-registration``).

        Args:
            worker_id: the id it gave.
            is_busy: the capacity it registered (normally not busy; corrected here if we are).
        """
        with self._lock:
            self._worker_id = worker_id
            self._serial += 1
            self._server_busy = is_busy
        self.registered.set()
        self._wake.set()

    def disconnected(self) -> None:
        """The stream ended: no heartbeats until the next registration."""
        self.registered.clear()

    def wake(self) -> None:
        """Check the capacity now (a slot was taken or freed), or notice a stop."""
        self._wake.set()

    def run(self) -> None:
        """The heartbeat thread's loop, until the worker's ``run()`` is finished."""
        serial = 0
        next_beat = 0.0
        while not self._stop.finished.is_set():
            timeout = max(0.0, next_beat - time.monotonic()) if next_beat else self._interval
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.finished.is_set():
                return
            if not self.registered.is_set() or self._stop.is_requested():
                next_beat = 0.0
                continue
            with self._lock:
                worker_id, current = self._worker_id, self._serial
            if worker_id is None:
                continue
            if current != serial or time.monotonic() >= next_beat:
                serial = current
                self.beat(worker_id)
                next_beat = time.monotonic() + self._interval
            busy = self._is_busy()
            if busy != self._server_busy and self.send_capacity(worker_id, busy):
                self._server_busy = busy

    def beat(self, worker_id: str) -> bool:
        """Send one ``worker-heartbeat``; a refusal is logged.

        Args:
            worker_id: the registered worker id.

        Returns:
            Whether the platform accepted it.
        """
        return self._send("worker-heartbeat", worker_id, lambda: self._workers.heartbeat(worker_id, self._agent_id))

    def send_capacity(self, worker_id: str, busy: bool) -> bool:
        """Send one ``worker-capacity-update``; a refusal is logged.

        Args:
            worker_id: the registered worker id.
            busy: whether every slot is taken.

        Returns:
            Whether the platform accepted it.
        """
        return self._send(
            "worker-capacity-update", worker_id,
            lambda: self._workers.update_capacity(worker_id, self._agent_id, is_busy=busy),
        )

    def _send(self, event: str, worker_id: str, call: Callable[[], None]) -> bool:
        try:
            call()
        except XpanderError as exc:
            logger.warning("%s for worker %s not accepted: %s", event, worker_id, exc)
            return False
        return True

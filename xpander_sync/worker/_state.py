"""State the worker's threads share: whether and when to stop (:class:`StopState`) and the counters.

The reader, the runner and the heartbeat each hold the one :class:`StopState` of their
:class:`~xpander_sync.worker.Worker`; nothing else is shared between them but callables.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, Optional

#: The names :meth:`Worker.stats <xpander_sync.worker.Worker.stats>` reports (plus ``in_flight``).
COUNTERS = ("received", "duplicates", "completed", "failed", "abandoned", "connections")


class StopState:
    """Stop requested (take no more tasks), the drain deadline, signals seen, and ``run()`` done.

    Args:
        drain_timeout: seconds in-flight tasks get after the stop is requested.
    """

    def __init__(self, drain_timeout: float) -> None:
        self.drain_timeout = drain_timeout
        self.requested = threading.Event()  # stop(): take no more tasks
        self.finished = threading.Event()  # run() is done: the heartbeat thread exits
        self.deadline: Optional[float] = None
        #: SIGTERM/SIGINT received; set from a signal handler, so a plain attribute (no lock)
        self.signals = 0
        self._lock = threading.Lock()

    def request(self) -> None:
        """Ask to stop; the first call starts the drain deadline."""
        with self._lock:
            if not self.requested.is_set():
                self.deadline = time.monotonic() + self.drain_timeout
                self.requested.set()

    def is_requested(self) -> bool:
        """Whether a stop was asked for.

        Returns:
            ``True`` once :meth:`request` ran.
        """
        return self.requested.is_set()

    def forced(self) -> bool:
        """A second signal arrived: stop waiting for anything.

        Returns:
            ``True`` after two or more signals.
        """
        return self.signals > 1

    def give_up(self) -> bool:
        """For retry loops: stopped and past the drain deadline (or forced).

        Returns:
            ``True`` when a failing save should no longer be retried.
        """
        if not self.requested.is_set():
            return False
        if self.forced():
            return True
        deadline = self.deadline
        return deadline is not None and time.monotonic() >= deadline

    def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds between two attempts; a stop request wakes the sleeper early,
        and once stopping, no sleep runs past the drain deadline.

        Args:
            delay: the backoff delay in seconds.
        """
        if not self.requested.is_set():
            self.requested.wait(delay)
            return
        remaining = (self.deadline or 0.0) - time.monotonic()
        time.sleep(max(0.0, min(delay, remaining)))


class Counters:
    """Thread-safe counters of what a worker did (see :data:`COUNTERS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, int] = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``.

        Args:
            name: one of :data:`COUNTERS`.
            amount: how much to add.
        """
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> Dict[str, int]:
        """A copy of the counters.

        Returns:
            A new dict, one key per name of :data:`COUNTERS`.
        """
        with self._lock:
            return dict(self._values)

"""Background report delivery: a bounded queue and one daemon thread, in order.

With ``Configuration(background_reports=True, outbox=PATH)``, ``report_external_task``
returns at once and one thread per platform client delivers reports in the order they were
made (so each caller thread's reports keep their order). A report that cannot be
delivered goes to the outbox, and so does every later one while the outbox holds
reports for that URL, so nothing overtakes a queued report. ``flush()`` waits for the
queue to drain; it also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ModuleException
from .outbox import Outbox, Send

logger = logging.getLogger(__name__)

_EXIT_FLUSH_SECONDS = 10.0
_live: weakref.WeakSet[ReportDispatcher] = weakref.WeakSet()
# One dispatcher per owner for the life of the process (its thread holds it anyway).
_by_owner: Dict[Any, ReportDispatcher] = {}
_lock = threading.Lock()


class ReportDispatcher:
    """Delivers queued reports for one platform client on a daemon thread.

    Args:
        send: ``send(agent_id, body)`` (``resources.Reports.send``).
        base_url: the platform ``send`` talks to (recorded with reports put in the outbox).
        outbox: where reports go when they cannot be delivered.
        maxsize: the in-memory queue bound; past it, reports go straight to the outbox.
    """

    #: while reports wait in the outbox, try delivering them again at most this often (seconds)
    probe_interval = 1.0

    def __init__(self, send: Send, base_url: str, outbox: Outbox, maxsize: int = 10000) -> None:
        self.send = send
        self.base_url = base_url
        self.outbox = outbox
        self._next_probe = 0.0
        self._queue: queue.Queue[Optional[Tuple[str, Dict[str, Any]]]] = queue.Queue(maxsize=maxsize)
        self._spilling = False
        # Reports that could neither be delivered nor written to the outbox (its file stayed
        # locked or broken): kept here, in order, and written first on the next occasion.
        self._unstored: List[Tuple[str, Dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._run, name="xpander-sync-reports", daemon=True)
        self._thread.start()

    def submit(self, agent_id: str, body: Dict[str, Any]) -> str:
        """Queue a report; when the queue is full it goes straight to the outbox.

        Args:
            agent_id: the agent the run belongs to.
            body: the report body.

        Returns:
            ``"background"``, or why it went to the outbox at once.

        Raises:
            OutboxError: the queue is full and the outbox cannot be written.
        """
        try:
            self._queue.put_nowait((agent_id, body))
            return "background"
        except queue.Full:
            self.outbox.put(agent_id, self.base_url, body)
            self._spilling = True
            return "queue full: stored in the outbox"

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._unstored and not self._store_unstored():
                    self._unstored.append(item)  # behind the older ones: order is kept
                    continue
                try:
                    self._deliver(*item)
                except Exception:  # the delivery thread must survive anything; the report is kept
                    logger.exception("report %s: neither delivered nor stored; kept in memory", item[1]["id"])
                    self._unstored.append(item)
            finally:
                self._queue.task_done()

    def _store_unstored(self) -> bool:
        """Write the reports kept in memory to the outbox, oldest first; ``True`` when none is left."""
        base_url = self.base_url
        while self._unstored:
            agent_id, body = self._unstored[0]
            try:
                self.outbox.put(agent_id, base_url, body)
            except Exception:
                return False
            self._unstored.pop(0)
            self._spilling = True
        return True

    def _deliver(self, agent_id: str, body: Dict[str, Any]) -> None:
        base_url = self.base_url
        if self._spilling:
            # Keep order: while older reports wait in the outbox, newer ones wait behind them.
            # Probe the platform now and then (not for every report) by flushing the outbox.
            now = time.monotonic()
            if now < self._next_probe or self.outbox.flush(self.send, base_url).remaining:
                self._next_probe = max(self._next_probe, now + self.probe_interval)
                self.outbox.put(agent_id, base_url, body)
                return
            self._spilling = False
        try:
            self.send(agent_id, body)
        except ModuleException as exc:
            if exc.retryable:
                logger.warning("report %s not delivered (%s); stored in the outbox", body["id"], exc)
            else:
                logger.error("report %s rejected (%s); stored in the outbox for inspection", body["id"], exc)
            self.outbox.put(agent_id, base_url, body)
            self._spilling = True
            self._next_probe = time.monotonic() + self.probe_interval
        except Exception:  # never let the delivery thread die: keep the report
            logger.exception("unexpected error delivering report %s; stored in the outbox", body["id"])
            self.outbox.put(agent_id, base_url, body)
            self._spilling = True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued report was delivered or stored.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``False`` on timeout, or when some could not be written to the outbox and are
            still held in memory; else ``True``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return not self._unstored


def dispatcher_for(owner: Any, send: Send, base_url: str, outbox: Outbox) -> ReportDispatcher:
    """The dispatcher of a platform client (created on first use, one per ``owner``).

    Args:
        owner: the object whose reports share one thread and one order (the transport:
            every Backend built with the same configuration shares it).
        send: ``send(agent_id, body)``, used when the dispatcher is created.
        base_url: the platform ``send`` talks to.
        outbox: the outbox for reports that cannot be delivered.

    Returns:
        The owner's :class:`ReportDispatcher`.
    """
    with _lock:
        dispatcher = _by_owner.get(owner)
        if dispatcher is None:
            dispatcher = _by_owner[owner] = ReportDispatcher(send, base_url, outbox)
            _live.add(dispatcher)
        return dispatcher


def existing_dispatcher(owner: Any) -> Optional[ReportDispatcher]:
    """The owner's dispatcher if background reporting was used, else ``None``.

    Args:
        owner: as given to :func:`dispatcher_for`.

    Returns:
        The dispatcher, or ``None``.
    """
    return _by_owner.get(owner)


def flush_all(timeout: float = _EXIT_FLUSH_SECONDS) -> None:
    """Flush every dispatcher (registered at interpreter exit).

    Args:
        timeout: seconds to wait for each dispatcher.
    """
    for dispatcher in list(_live):
        if not dispatcher.flush(timeout):
            logger.warning("exit: reports still queued after %.0f s", timeout)


atexit.register(flush_all)

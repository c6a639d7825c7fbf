"""Background report delivery: a bounded queue and one daemon thread, in order.

With ``Configuration(background_reports=True, outbox=PATH)``, ``report_external_task``
returns at once and one thread per transport delivers reports in the order they were
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

from .errors import ModuleException
from .outbox import Outbox, is_retryable_later

logger = logging.getLogger(__name__)

_EXIT_FLUSH_SECONDS = 10.0
_live: weakref.WeakSet[ReportDispatcher] = weakref.WeakSet()
_lock = threading.Lock()


class ReportDispatcher:
    """Delivers queued reports for one transport on a daemon thread."""

    #: while reports wait in the outbox, try delivering them again at most this often (seconds)
    probe_interval = 1.0

    def __init__(self, transport: Any, outbox: Outbox, maxsize: int = 10000) -> None:
        self.transport = transport
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
        """Queue a report; when the queue is full it goes straight to the outbox. Returns the outcome."""
        try:
            self._queue.put_nowait((agent_id, body))
            return "background"
        except queue.Full:
            self.outbox.put(agent_id, self.transport.configuration.base_url, body)
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
        base_url = self.transport.configuration.base_url
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
        base_url = self.transport.configuration.base_url
        if self._spilling:
            # Keep order: while older reports wait in the outbox, newer ones wait behind them.
            # Probe the platform now and then (not for every report) by flushing the outbox.
            now = time.monotonic()
            if now < self._next_probe or self.outbox.flush(self.transport).remaining:
                self._next_probe = max(self._next_probe, now + self.probe_interval)
                self.outbox.put(agent_id, base_url, body)
                return
            self._spilling = False
        try:
            self.transport.request("POST", f"/agent-execution/{agent_id}/report_task", json=body, repeatable=True)
        except ModuleException as exc:
            if is_retryable_later(exc):
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
        """Wait until every queued report was delivered or stored; ``False`` on timeout, or when
        some could not be written to the outbox and are still held in memory."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return not self._unstored


def dispatcher_for(transport: Any, outbox: Outbox) -> ReportDispatcher:
    """The dispatcher of a transport (created on first use, one per transport)."""
    with _lock:
        dispatcher: Optional[ReportDispatcher] = getattr(transport, "_report_dispatcher", None)
        if dispatcher is None:
            dispatcher = ReportDispatcher(transport, outbox)
            transport._report_dispatcher = dispatcher
            _live.add(dispatcher)
        return dispatcher


def flush_all(timeout: float = _EXIT_FLUSH_SECONDS) -> None:
    """Flush every dispatcher (registered at interpreter exit)."""
    for dispatcher in list(_live):
        if not dispatcher.flush(timeout):
            logger.warning("exit: reports still queued after %.0f s", timeout)


atexit.register(flush_all)

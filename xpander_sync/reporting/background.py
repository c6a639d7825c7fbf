"""Background report delivery: write-ahead to the outbox, then one thread delivers, in order.

With ``Configuration(background_reports=True, outbox=PATH)``, ``report_external_task``
writes the report to the outbox (durably: it is on disk before the call returns) and
returns a :class:`~xpander_sync.reporting.outbox.QueuedReport`; one daemon thread per
platform client then flushes the outbox through ``send``, in the order reports were made,
and deletes each one after its 2xx. So nothing is lost when the process exits, is
stopped by SIGTERM or is killed: what the thread did not deliver stays in the outbox,
and the next flush (``xpander-sync outbox flush``, or the next background report)
delivers it with its original id. ``flush()`` waits for the thread; it also runs at
interpreter exit (bounded).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any, Dict, Optional

from .outbox import Outbox, Send

logger = logging.getLogger(__name__)

_EXIT_FLUSH_SECONDS = 10.0
_lock = threading.Lock()
# One dispatcher per owner for the life of the process (its thread holds it anyway).
_by_owner: Dict[Any, ReportDispatcher] = {}


class ReportDispatcher:
    """Delivers one platform client's background reports from the outbox, on a daemon thread.

    Args:
        send: ``send(agent_id, body)`` (``resources.Reports.send``).
        base_url: the platform ``send`` talks to (only its reports are flushed).
        outbox: where every report is written first.
    """

    #: after a failed delivery, try again at most this often (seconds) while reports wait
    probe_interval = 1.0

    def __init__(self, send: Send, base_url: str, outbox: Outbox) -> None:
        self.send = send
        self.base_url = base_url
        self.outbox = outbox
        self._mutex = threading.RLock()  # the condition's lock (``with self._mutex`` is the cheaper way in)
        self._cond = threading.Condition(self._mutex)
        self._submitted = 0  # reports written by this process
        self._settled = 0  # of those, how many the thread has tried since they were written
        self._thread = threading.Thread(target=self._run, name="xpander-sync-reports", daemon=True)
        self._thread.start()

    def submit(self, agent_id: str, body: Dict[str, Any]) -> str:
        """Write a report to the outbox, then wake the delivery thread.

        Args:
            agent_id: the agent the run belongs to.
            body: the report body.

        Returns:
            ``"background"``: the report is on disk, and will be delivered.

        Raises:
            OutboxError: the outbox cannot be written (nothing was stored).
        """
        self.outbox.put(agent_id, self.base_url, body)
        with self._cond:
            self._submitted += 1
            self._cond.notify_all()
        return "background"

    def _run(self) -> None:
        retry_later = False
        while True:
            with self._cond:
                if not retry_later or self._submitted > self._settled:
                    self._cond.wait_for(lambda: self._submitted > self._settled,
                                        timeout=self.probe_interval if retry_later else None)
                else:
                    self._cond.wait(self.probe_interval)
                target = self._submitted
            retry_later = not self._deliver_all()
            with self._cond:
                self._settled = max(self._settled, target)
                self._cond.notify_all()

    def _deliver_all(self) -> bool:
        """Flush while it makes progress; ``False`` when reports are left (the platform failed,
        or another process holds them), to try again after ``probe_interval``."""
        try:
            while True:
                result = self.outbox.flush(self.send, self.base_url)
                if not result.remaining:
                    return True
                if not result.delivered:
                    if result.failed:
                        logger.warning("background reports: %d waiting in the outbox %s (%s)",
                                       result.remaining, self.outbox.path, result.failed[-1][1])
                    return False
        except Exception:  # never let the delivery thread die: the reports are on disk
            logger.exception("background reports: the outbox %s could not be flushed", self.outbox.path)
            return False

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until the thread has tried every report written so far.

        A report the platform did not take stays in the outbox (it was written before the
        call returned), to be delivered later.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``False`` if ``timeout`` passed first; else ``True``.
        """
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._settled >= target, timeout)


def dispatcher_for(owner: Any, send: Send, base_url: str, outbox: Outbox,
                   kind: Optional[type] = None) -> ReportDispatcher:
    """The dispatcher of a platform client (created on first use, one per ``owner``).

    Args:
        owner: the object whose reports share one thread and one order (the transport:
            every Backend built with the same configuration shares it).
        send: ``send(agent_id, body)``, used when the dispatcher is created.
        base_url: the platform ``send`` talks to.
        outbox: the outbox every report is written to first.
        kind: the dispatcher class to create (a :class:`ReportDispatcher` subclass; default
            :class:`ReportDispatcher`).

    Returns:
        The owner's :class:`ReportDispatcher`.
    """
    with _lock:
        dispatcher = _by_owner.get(owner)
        if dispatcher is None:
            dispatcher = _by_owner[owner] = (kind or ReportDispatcher)(send, base_url, outbox)
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
    for dispatcher in list(_by_owner.values()):
        if not dispatcher.flush(timeout):
            logger.warning("exit: background reports still undelivered after %.0f s; they wait in the outbox %s",
                           timeout, dispatcher.outbox.path)


def _forget_in_child() -> None:
    # A forked child has no delivery thread: drop the parent's dispatchers (and their lock) so
    # the child's first background report starts its own. The reports are in the outbox.
    global _lock
    _lock = threading.Lock()
    _by_owner.clear()


atexit.register(flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)

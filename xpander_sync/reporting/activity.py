"""Tool-call activity events, delivered off the caller's path: written ahead, then sent in order by one thread.

The tool-call layer (``frameworks._toolcall``) hands each ``tool_call_request`` /
``tool_call_result`` event to :func:`submit`, which passes it, in memory, to the platform
client's delivery thread (an :class:`EventDispatcher`, a
:class:`~xpander_sync.reporting.background.ReportDispatcher`): no file or network I/O on the
tool call's path. The thread writes it to the ``events`` table of an
:class:`~xpander_sync.reporting.outbox.Outbox` (the same machinery as background reports, in
``synchronous=NORMAL`` mode: a row survives the process being killed), then pushes the rows in
the order they were written (the events of one task handed over within
:attr:`EventDispatcher.linger`, 50 ms, go out as one push: a short call's request and result
together, after it returned), deletes each after its 2xx, and on a failure that may pass
(``retryable``: the platform is briefly down) stops and tries again a second later, so no event
is lost and a call's result never overtakes its request. An event the platform refuses (4xx)
is dropped with a warning.

The outbox is the configured one (``Configuration(outbox=PATH)``: events left undelivered when
the process ends are sent by the next process that pushes events for the same platform and
key), else a file private to this process (events still undelivered when it exits, after up to
ten seconds of trying, are lost). Like the reporting package, this module never talks HTTP: it
is given ``send(task_id, body)``.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from ..errors import OutboxError
from .background import ReportDispatcher, dispatcher_for, existing_dispatcher
from .outbox import Outbox, Send

logger = logging.getLogger(__name__)

__all__ = ["discard_pending", "events_outbox", "flush", "scope_of", "submit"]

_lock = threading.Lock()
_outboxes: Dict[str, Outbox] = {}
_private: Dict[int, str] = {}  # pid -> this process's private events file


def scope_of(base_url: str, organization_id: Optional[str], api_key: Optional[str]) -> str:
    """Which platform and identity a row is for: ``"{base_url}#{12 hex}"`` (no key in it).

    Rows are flushed only by a client of the same scope, so an event is always pushed with
    the API key of the client that made it.

    Args:
        base_url: the platform's base URL.
        organization_id: the organization id, if any.
        api_key: the API key (hashed, never stored).

    Returns:
        The scope string stored with each row.
    """
    digest = hashlib.sha256(f"{base_url}|{organization_id or ''}|{api_key or ''}".encode()).hexdigest()[:12]
    return f"{base_url}#{digest}"


def _private_path() -> str:
    pid = os.getpid()
    path = _private.get(pid)
    if path is None:
        folder = tempfile.mkdtemp(prefix="xpander-sync-events-")
        path = _private[pid] = os.path.join(folder, "events.sqlite3")
        atexit.register(_remove_private, folder)  # runs before the reporting package's exit flush
    return path


def _remove_private(folder: str) -> None:
    """At exit: give the delivery threads their last chance (up to 10 s each), then delete the file."""
    for _, dispatcher in _dispatchers():
        dispatcher.flush(10.0)
    shutil.rmtree(folder, True)


def events_outbox(path: Optional[str]) -> Outbox:
    """The events outbox of a file (``None``: this process's private file), one per file.

    Args:
        path: the configured outbox file, or ``None``.

    Returns:
        The :class:`Outbox` on its ``events`` table.

    Raises:
        OutboxError: the file cannot be created or opened.
    """
    with _lock:
        target = path or _private_path()
        outbox = _outboxes.get(target)
        if outbox is None:
            outbox = _outboxes[target] = Outbox(target, table="events", synchronous="NORMAL", park_refused=False)
        return outbox


class EventDispatcher(ReportDispatcher):
    """The delivery thread of one client's events: the caller hands rows over in memory (no I/O on
    its path); the thread writes them to the outbox, then flushes the outbox in order.

    Args:
        send: ``send(task_id, body)``.
        base_url: the scope the rows are stored and flushed under.
        outbox: the events outbox.
    """

    #: seconds the thread waits after the first event of a burst, so that a call's request and
    #: result (and the other events of the burst) go out together, after a short call has returned
    linger = 0.05

    def __init__(self, send: Send, base_url: str, outbox: Outbox) -> None:
        self._handoff: List[Any] = []
        self._first_at: Optional[float] = None
        super().__init__(send, base_url, outbox)

    def submit(self, agent_id: str, body: Dict[str, Any]) -> str:
        """Hand a row to the thread (it is written to the outbox, then pushed).

        Args:
            agent_id: the task id the events are about (the row's routing id).
            body: ``{"id": ..., "events": [...]}``.

        Returns:
            ``"background"``.
        """
        with self._cond:
            if not self._handoff:
                self._first_at = time.monotonic()
            self._handoff.append((agent_id, body))
            self._submitted += 1
            self._cond.notify_all()
        return "background"

    def _deliver_all(self) -> bool:
        first_at = self._first_at
        if first_at is not None:
            time.sleep(max(0.0, first_at + self.linger - time.monotonic()))
        with self._cond:
            rows, self._handoff, self._first_at = self._handoff, [], None
        for task_id, body in _batches(rows):
            try:
                self.outbox.put(task_id, self.base_url, body)
            except OutboxError as exc:  # no disk: push it now, or drop it (activity never fails a run)
                try:
                    self.send(task_id, body)
                except Exception as failed:
                    logger.warning("activity events of task %s dropped (outbox: %s; push: %s)", task_id, exc, failed)
        return super()._deliver_all()


def _batches(rows: List[Any]) -> List[Any]:
    """Consecutive rows of one task merged into one row (one push of all their events, in order)."""
    merged: List[Any] = []
    for task_id, body in rows:
        if merged and merged[-1][0] == task_id:
            merged[-1][1]["events"].extend(body["events"])
        else:
            merged.append((task_id, {"id": body["id"], "events": list(body["events"])}))
    return merged


def submit(task_id: str, events: List[Dict[str, Any]], *, send: Send, scope: str, owner: Any,
           outbox_path: Optional[str] = None) -> bool:
    """Queue events of a task for delivery; never raises, never waits for the platform.

    Args:
        task_id: the task the events are about.
        events: the events, as JSON objects (``TaskUpdateEvent`` unstructured), in order.
        send: ``send(task_id, {"id": ..., "events": [...]})``, pushing one row's events.
        scope: :func:`scope_of` the client.
        owner: the object whose events share one thread and one order (the transport).
        outbox_path: the configured outbox file, or ``None`` for a private one.

    Returns:
        ``True`` when handed to the delivery thread; ``False`` when the events outbox cannot be
        opened (the events are dropped with a warning: activity is never worth failing a tool call).
    """
    body = {"id": f"evt-{uuid.uuid4().hex}", "events": events}
    try:
        dispatcher_for(("activity", owner), send, scope, events_outbox(outbox_path), EventDispatcher).submit(
            task_id, body)
    except OutboxError as exc:
        logger.warning("activity events of task %s dropped: %s", task_id, exc)
        return False
    return True


def flush(owner: Any, timeout: Optional[float] = None) -> bool:
    """Wait until the owner's events were tried (delivered, or left for a retry).

    Args:
        owner: as given to :func:`submit`.
        timeout: seconds to wait at most; ``None`` waits as long as it takes.

    Returns:
        ``False`` if ``timeout`` passed first; else ``True`` (also when no event was submitted).
    """
    dispatcher = existing_dispatcher(("activity", owner))
    return True if dispatcher is None else dispatcher.flush(timeout)


def discard_pending(timeout: float = 2.0) -> int:
    """Drop every queued event of this process's events outboxes, then let the threads settle.

    For tests (one test's events must not reach the next test's mocks) and for a program that
    must not push what it queued (after switching platforms).

    Args:
        timeout: seconds to wait for each delivery thread to finish what it was sending.

    Returns:
        How many queued events were dropped.
    """
    with _lock:
        outboxes = list(_outboxes.values())
    dropped = sum(outbox.clear() for outbox in outboxes)
    for owner, dispatcher in list(_dispatchers()):
        del owner
        dispatcher.flush(timeout)
    return dropped


def _dispatchers() -> List[Any]:
    from . import background

    return [(owner, d) for owner, d in list(background._by_owner.items())
            if isinstance(owner, tuple) and owner and owner[0] == "activity"]

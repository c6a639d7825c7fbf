"""Tool-call activity events, delivered off the caller's path: written ahead, then sent in order by one thread.

The tool-call layer (``frameworks._toolcall``) hands each ``tool_call_request`` /
``tool_call_result`` event to :func:`submit`, which writes it to the ``events`` table of an
:class:`~xpander_sync.reporting.outbox.Outbox` (the same machinery as background reports, in
``synchronous=NORMAL`` mode: about 30 microseconds a row, and a row survives the process being
killed) and wakes the platform client's delivery thread (a
:class:`~xpander_sync.reporting.background.ReportDispatcher`). That thread pushes the rows in
the order they were written, deletes each after its 2xx, and on a failure that may pass
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
import uuid
from typing import Any, Dict, List, Optional

from ..errors import OutboxError
from .background import dispatcher_for, existing_dispatcher
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
        atexit.register(shutil.rmtree, folder, True)
    return path


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
        ``True`` when queued; ``False`` when the outbox cannot be written (the events are
        dropped with a warning: activity is never worth failing a tool call).
    """
    body = {"id": f"evt-{uuid.uuid4().hex}", "events": events}
    try:
        dispatcher_for(("activity", owner), send, scope, events_outbox(outbox_path)).submit(task_id, body)
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

"""Delivering external-task reports: now, in the background, or later from the outbox.

This package decides *when* a report is sent; ``resources.Reports`` is the only place
that knows *how* (the route and the body). It is given a ``send(agent_id, body)``
callable and never talks HTTP itself:

* foreground: ``send`` now; on a failure that may pass (``exc.retryable``) the report is
  stored in the outbox (when one is configured) and a :class:`QueuedReport` returned;
* background (``Configuration(background_reports=True, outbox=PATH)``): written to the
  outbox first (on disk before the call returns), then delivered by the owner's
  :class:`~xpander_sync.reporting.background.ReportDispatcher` thread;
* later: :meth:`Outbox.flush` sends what the outbox holds, through the same ``send``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Union

from ..errors import ModuleException, OutboxError
from .background import dispatcher_for, existing_dispatcher
from .outbox import FlushResult, Outbox, QueuedReport, Send

logger = logging.getLogger(__name__)

__all__ = ["FlushResult", "Outbox", "QueuedReport", "Send", "deliver", "flush_background", "outbox_at"]

_outboxes: Dict[str, Outbox] = {}
_outboxes_lock = threading.Lock()


def outbox_at(path: Optional[str]) -> Optional[Outbox]:
    """The process's :class:`Outbox` for a file (one per file: one schema set-up), or ``None``.

    Args:
        path: the outbox file, or ``None``/``""`` for no outbox.

    Returns:
        The shared :class:`Outbox`, or ``None`` when no path is given.

    Raises:
        OutboxError: the file cannot be created or opened.
    """
    if not path:
        return None
    outbox = _outboxes.get(path)
    if outbox is None:
        with _outboxes_lock:
            outbox = _outboxes.get(path)
            if outbox is None:
                outbox = _outboxes[path] = Outbox(path)
    return outbox


def deliver(
    agent_id: str,
    body: Dict[str, Any],
    *,
    send: Send,
    base_url: str,
    outbox_path: Optional[str] = None,
    background: bool = False,
    owner: Any = None,
) -> Union[Any, QueuedReport]:
    """Deliver one report by the configured policy.

    The outbox is opened only when a report must be written to it, so a broken outbox (a
    corrupt file, an unwritable ``$HOME``) never stops a delivery that can succeed.

    Args:
        agent_id: the agent the run belongs to.
        body: the report body (``resources.Reports.body``); its ``id`` is the task id.
        send: ``send(agent_id, body)``; its return value is returned on delivery.
        base_url: the platform ``send`` talks to (recorded with a queued report).
        outbox_path: the outbox file for reports that cannot be delivered now, or ``None``.
        background: write the report to the outbox and let the owner's thread deliver it
            (needs ``outbox_path``; when the outbox cannot be written, it is sent now instead).
        owner: the object whose background reports share one thread and order.

    Returns:
        What ``send`` returned, or a :class:`QueuedReport` when the report is in the outbox.

    Raises:
        ModuleException: delivery failed and the report was not queued (no outbox, or
            the platform refused it: not ``retryable``).
        OutboxError: the report could not be delivered and the outbox cannot be written
            (the message says both).
    """
    if background and outbox_path:
        try:
            reason = dispatcher_for(owner, send, base_url, _opened(outbox_path)).submit(agent_id, body)
            return QueuedReport(task_id=body["id"], agent_id=agent_id, reason=reason, outbox=outbox_path)
        except OutboxError as exc:
            logger.warning("report %s: the outbox cannot be written (%s); sending it now instead", body["id"], exc)
    try:
        return send(agent_id, body)
    except ModuleException as exc:
        if not outbox_path or not exc.retryable:
            raise
        try:
            _opened(outbox_path).put(agent_id, base_url, body)
        except OutboxError as broken:
            raise OutboxError(f"report {body['id']} was not delivered ({exc}) and could not be queued: {broken}") \
                from None
        logger.warning("report %s not delivered (%s); queued in the outbox %s", body["id"], exc, outbox_path)
        return QueuedReport(task_id=body["id"], agent_id=agent_id, reason=str(exc), outbox=outbox_path)


def _opened(path: str) -> Outbox:
    outbox = outbox_at(path)
    assert outbox is not None  # a path was given
    return outbox


def flush_background(owner: Any, timeout: Optional[float] = None) -> bool:
    """Wait until the owner's background reports were delivered or stored in the outbox.

    Args:
        owner: as given to :func:`deliver`.
        timeout: seconds to wait at most; ``None`` waits as long as it takes.

    Returns:
        ``False`` if ``timeout`` passed first (or reports are held in memory because the
        outbox could not be written); ``True`` otherwise, also when nothing was sent in
        the background.
    """
    dispatcher = existing_dispatcher(owner)
    return True if dispatcher is None else dispatcher.flush(timeout)

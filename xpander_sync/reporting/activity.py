"""Tool-call activity events, delivered off the caller's path: written ahead, then sent in order by one thread.

The tool-call layer (``frameworks._toolcall``) hands each ``tool_call_request`` /
``tool_call_result`` event to its platform client's delivery thread (an
:class:`EventDispatcher`, a :class:`~xpander_sync.reporting.background.ReportDispatcher`) as a
small tuple appended to a list under a lock (:meth:`EventDispatcher.hand_over`): no file or
network I/O, not even building the event's JSON, on the tool call's path. The thread takes what
was handed over when the client is quiet (no event for :attr:`EventDispatcher.quiet`, 20 ms: the
agent is between calls) or when the oldest is :attr:`EventDispatcher.max_delay` old (1 s: the
bound on how long an event lives only in memory), so it does not compete with a run of calls.
It builds the events, writes them to the ``events`` table of an
:class:`~xpander_sync.reporting.outbox.Outbox` (the same machinery as background reports, in
``synchronous=NORMAL`` mode: a row survives the process being killed), then pushes the rows in
the order they were written (consecutive events of one task as one push), deletes each after
its 2xx, and on a failure that may pass (``retryable``: the platform is briefly down) stops and
tries again a second later, so no event is lost and a call's result never overtakes its request.
An event the platform refuses (4xx) is dropped with a warning. :func:`flush` (and the exit-time
flush) delivers at once, without waiting for the quiet period.

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
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import OutboxError
from .background import ReportDispatcher, dispatcher_for, existing_dispatcher
from .outbox import Outbox, Send

logger = logging.getLogger(__name__)

__all__ = ["EventDispatcher", "discard_pending", "dispatcher", "events_outbox", "flush", "scope_of", "submit"]

_lock = threading.Lock()
_outboxes: Dict[str, Outbox] = {}
_private: Dict[int, str] = {}  # pid -> this process's private events file
#: Bumped in a forked child, whose delivery threads are new: a caller that keeps a dispatcher
#: (:func:`dispatcher`) looks it up again when this changed (cheaper than ``os.getpid()``).
forks = 0


def _count_fork() -> None:
    global forks
    forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


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
        try:
            folder = tempfile.mkdtemp(prefix="xpander-sync-events-")
        except OSError as exc:  # no writable temporary folder (a read-only container): no events outbox
            raise OutboxError(f"no temporary folder for the events outbox ({exc}); set Configuration(outbox=...) "
                              "to a writable file") from None
        path = _private[pid] = os.path.join(folder, "events.sqlite3")
        atexit.register(_remove_private, folder)  # runs before the reporting package's exit flush
    return path


def _remove_private(folder: str) -> None:
    """At exit: give the delivery threads their last chance (up to 10 s each), then delete the file."""
    for _, found in _dispatchers():
        found.flush(10.0)
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


#: ``build(raw) -> event JSON``: run on the delivery thread for what the caller handed over.
Build = Callable[[Any], Dict[str, Any]]


class EventDispatcher(ReportDispatcher):
    """The delivery thread of one client's events: the caller hands items over in memory (no I/O and
    no serialization on its path); the thread builds the events, writes them to the outbox, then
    flushes the outbox in order.

    **When it delivers.** The thread does not compete with the client's next calls: it takes what
    was handed over once the client has been **quiet** for :attr:`quiet` seconds (20 ms: no item
    handed over since), or once the oldest item waiting is :attr:`max_delay` seconds old (1 s), or
    at once when :meth:`flush` (``activity.flush``, the exit-time flush) asks. So an event waits in
    memory at most ``max_delay`` (plus the thread's own scheduling) before it is on disk: the
    durability bound (a process killed within that window loses those events; a normal exit
    flushes them).

    **How it learns of new events.** Waking a sleeping thread costs the caller a system call (and
    a colder CPU), so callers rarely do: while events keep coming (one in the last
    :attr:`sleep_after` seconds, 30 s), the thread looks for new ones every :attr:`poll` seconds
    (0.1 s) on its own, and re-checks the rule with timed waits while items wait; so the events of
    a call go out ``quiet`` to ``quiet + poll`` after it. After ``sleep_after`` seconds without any,
    it sleeps, looking only every ``max_delay``; then a caller's event wakes it, but not in the
    middle of a tool call (the request event does not, the result event does; the request of a
    long call, one waiting for an approval, is still found within ``max_delay``).

    Args:
        send: ``send(task_id, body)``.
        base_url: the scope the rows are stored and flushed under.
        outbox: the events outbox.
        quiet: seconds without a new item after which the thread delivers.
        max_delay: the longest an item waits in memory (seconds).
        poll: how often the thread looks for new items while events keep coming (seconds).
        sleep_after: seconds without a new item after which the thread sleeps until woken.
        clock: a monotonic clock (injected by tests).
    """

    #: seconds without a new event after which the thread delivers (the client is between calls)
    quiet = 0.02
    #: the longest an event waits in memory before it is written and pushed (seconds)
    max_delay = 1.0
    #: while events keep coming, the thread looks for new ones this often, unwoken (seconds)
    poll = 0.1
    #: after this long without an event, the thread sleeps until an event wakes it (seconds)
    sleep_after = 30.0

    def __init__(self, send: Send, base_url: str, outbox: Outbox, *, quiet: Optional[float] = None,
                 max_delay: Optional[float] = None, poll: Optional[float] = None,
                 sleep_after: Optional[float] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._handoff: List[Tuple[str, Optional[Build], Any]] = []
        self._first_at = 0.0  # when the oldest item waiting was handed over
        self._last_at = 0.0  # when the newest was
        self._flush_to = 0  # a flush wants everything up to this count tried now
        self._asleep = False  # the thread sleeps until woken (no event for sleep_after seconds)
        self._bell = threading.Lock()  # the thread sleeps on it; released (rung) to wake it
        self._bell.acquire()
        self._rung = False
        self._clock = clock
        if quiet is not None:
            self.quiet = quiet
        if max_delay is not None:
            self.max_delay = max_delay
        if poll is not None:
            self.poll = poll
        if sleep_after is not None:
            self.sleep_after = sleep_after
        super().__init__(send, base_url, outbox)

    def hand_over(self, task_id: str, build: Optional[Build], raw: Any, wake: bool = True) -> None:
        """Hand one item to the thread: the whole cost of an event on the caller's path.

        Args:
            task_id: the task the event is about (consecutive items of one task go out in one push).
            build: ``build(raw)`` makes the event's JSON, on the thread; ``None``: ``raw`` is already
                a list of event JSON objects.
            raw: what ``build`` needs. It is read later, on the thread: it must not be changed after
                it was handed over.
            wake: wake the thread if it sleeps (no event for :attr:`sleep_after` seconds; it is
                never woken otherwise: it looks on its own). ``False`` for an item soon
                followed by one with ``wake=True`` (or by :meth:`wake`), so that the thread does
                not wake in the middle of a tool call: a tool call's request event (should the
                call last, the thread finds it within ``max_delay`` anyway).
        """
        now = self._clock()
        with self._mutex:  # the condition's lock, without the condition's Python-level __enter__
            if not self._handoff:
                self._first_at = now
            self._handoff.append((task_id, build, raw))
            self._last_at = now
            self._submitted += 1
            if wake and self._asleep and not self._rung:
                self._asleep, self._rung = False, True
                self._bell.release()

    def wake(self) -> None:
        """Wake the thread if it sleeps (after items handed over with ``wake=False``)."""
        with self._mutex:
            if self._asleep:
                self._asleep = False
                self._ring()

    def _ring(self) -> None:  # the caller holds the lock
        if not self._rung:
            self._rung = True
            self._bell.release()

    def submit(self, agent_id: str, body: Dict[str, Any]) -> str:
        """Hand a row of ready events to the thread (it is written to the outbox, then pushed).

        Args:
            agent_id: the task id the events are about (the row's routing id).
            body: ``{"id": ..., "events": [...]}``.

        Returns:
            ``"background"``.
        """
        self.hand_over(agent_id, None, list(body.get("events") or []))
        return "background"

    def wait_time(self, now: float) -> Optional[float]:
        """Seconds until the thread should take the handoff (``0``: now); ``None`` when nothing waits.

        The rule: at once when a flush asked for it; else when the last item is :attr:`quiet`
        seconds old or the first :attr:`max_delay` seconds old, whichever comes first. The caller
        holds the lock.

        Args:
            now: the clock's time.

        Returns:
            The wait, or ``None``.
        """
        if self._flush_to > self._settled:
            return 0.0
        if not self._handoff:
            return None
        return max(0.0, min(self._last_at + self.quiet, self._first_at + self.max_delay) - now)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what was handed over now (not after the quiet period) and wait until it was tried.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``False`` if ``timeout`` passed first; else ``True``.
        """
        with self._cond:
            target = self._submitted
            if self._settled < target:
                self._flush_to = max(self._flush_to, target)
                self._ring()
            return self._cond.wait_for(lambda: self._settled >= target, timeout)

    def discard(self) -> int:
        """Drop what was handed over and not yet taken by the thread.

        Returns:
            How many items were dropped.
        """
        with self._cond:
            dropped = len(self._handoff)
            self._handoff = []
            self._flush_to = self._submitted  # the thread settles the dropped items at once
            self._ring()
        return dropped

    def _run(self) -> None:
        retry_at: Optional[float] = None  # after a failed delivery: when to try the outbox again
        while True:
            with self._mutex:
                now = self._clock()
                wait = self.wait_time(now)
                if retry_at is not None:
                    wait = retry_at - now if wait is None else min(wait, retry_at - now)
                ready = wait is not None and wait <= 0
                if ready:
                    items, self._handoff = self._handoff, []
                    target = self._submitted
                self._asleep = wait is None and now - self._last_at >= self.sleep_after
                if wait is None:  # nothing waits: look again in a while (see the class docstring)
                    wait = self.max_delay if self._asleep else self.poll
            if not ready:
                if self._bell.acquire(timeout=wait):
                    with self._mutex:
                        self._rung = False
                continue
            retry_at = None if self._deliver(items) else self._clock() + self.probe_interval
            with self._cond:
                self._settled = max(self._settled, target)
                self._cond.notify_all()

    def _deliver(self, items: List[Tuple[str, Optional[Build], Any]]) -> bool:
        for task_id, events in _rows(items):
            body = {"id": f"evt-{uuid.uuid4().hex}", "events": events}
            try:
                self.outbox.put(task_id, self.base_url, body)
            except OutboxError as exc:  # no disk: push it now, or drop it (activity never fails a run)
                try:
                    self.send(task_id, body)
                except Exception as failed:
                    logger.warning("activity events of task %s dropped (outbox: %s; push: %s)", task_id, exc, failed)
            except Exception:  # never let the delivery thread die
                logger.exception("activity events of task %s dropped: the outbox %s failed", task_id,
                                 self.outbox.path)
        return self._deliver_all()


def _rows(items: List[Tuple[str, Optional[Build], Any]]) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """The events built, consecutive items of one task merged into one row (one push, in order)."""
    merged: List[Tuple[str, List[Dict[str, Any]]]] = []
    for task_id, build, raw in items:
        if build is None:
            events = raw
        else:
            try:
                events = [build(raw)]
            except Exception:  # a bad event is dropped, never the thread
                logger.exception("an activity event of task %s could not be built; dropped", task_id)
                continue
        if merged and merged[-1][0] == task_id:
            merged[-1][1].extend(events)
        else:
            merged.append((task_id, list(events)))
    return merged


def dispatcher(owner: Any, *, send: Send, scope: str, outbox_path: Optional[str] = None) -> Optional[EventDispatcher]:
    """The owner's delivery thread (created on first use), for a caller that hands items over itself.

    Keep it (its :meth:`EventDispatcher.hand_over` is the cheapest way to queue an event), but
    look it up again in a forked child: the child's dispatchers are new.

    Args:
        owner: the object whose events share one thread and one order (the transport).
        send: ``send(task_id, {"id": ..., "events": [...]})``, used when the dispatcher is created.
        scope: :func:`scope_of` the client.
        outbox_path: the configured outbox file, or ``None`` for a private one.

    Returns:
        The dispatcher; ``None`` when the events outbox cannot be opened (logged as a warning:
        activity is never worth failing a tool call).
    """
    try:
        found = dispatcher_for(("activity", owner), send, scope, events_outbox(outbox_path), EventDispatcher)
    except OutboxError as exc:
        logger.warning("activity events dropped: %s", exc)
        return None
    return found if isinstance(found, EventDispatcher) else None


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
    found = dispatcher(owner, send=send, scope=scope, outbox_path=outbox_path)
    if found is None:
        return False
    found.hand_over(task_id, None, list(events))
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
    dropped = sum(found.discard() for _, found in _dispatchers() if isinstance(found, EventDispatcher))
    dropped += sum(outbox.clear() for outbox in outboxes)
    for _, found in list(_dispatchers()):
        found.flush(timeout)
    return dropped


def _dispatchers() -> List[Any]:
    from . import background

    return [(owner, d) for owner, d in list(background._by_owner.items())
            if isinstance(owner, tuple) and owner and owner[0] == "activity"]

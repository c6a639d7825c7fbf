"""A call's deadline while the answer's head arrives: the one phase a read timeout cannot bound.

The read timeout bounds the silence between two bytes, so a server that sends its status line
and headers one byte at a time (each just inside the timeout) could hold a call for as long as
it likes. The transport reads the *body* with ``read1`` and checks its deadline between
receives; for the head, which ``http.client`` reads itself, this module gives the transport's
HTTP adapter connections that register their socket with one watchdog thread while the head
is read. When the call's deadline passes, the watchdog shuts the socket down, the read fails,
and the transport raises :class:`~xpander_sync.errors.RequestTimeoutError`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


def set_deadline(deadline: Optional[float]) -> None:
    """Set (or clear, with ``None``) the ``time.monotonic()`` deadline of this thread's call."""
    _current.at = deadline


class _Watchdog:
    """One daemon thread that shuts down the sockets whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int]] = []
        self._socks: Dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            while self._heap and self._heap[0][1] not in self._socks:
                heapq.heappop(self._heap)  # calls that ended in time: keep the heap small
            token = next(self._ids)
            self._socks[token] = sock
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="xpander-sync-deadline", daemon=True)
                self._thread.start()
            if self._heap[0][1] == token:  # the thread sleeps until a later deadline: wake it (rarely)
                self._cond.notify()
            return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; ``False`` when the deadline had already passed (the socket was shut)."""
        with self._cond:
            return self._socks.pop(token, None) is not None

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._socks:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._socks.pop(token, None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


_watchdog = _Watchdog()


def _reset_in_child() -> None:
    global _watchdog
    _watchdog = _Watchdog()  # the parent's thread was not forked


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


class _HeadDeadline:
    """Mixed into urllib3's connections: the head is read under the call's deadline."""

    sock: Optional[socket.socket]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_current, "at", None)
        if deadline is None or self.sock is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        watchdog = _watchdog
        token = watchdog.watch(self.sock, deadline)
        try:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            in_time = watchdog.unwatch(token)
        if not in_time:  # cut mid-head: what was parsed is not an answer
            response.close()
            raise socket.timeout("the call's deadline passed while the answer's head was read")
        return response


class _HTTPConnection(_HeadDeadline, HTTPConnection):
    pass


class _HTTPSConnection(_HeadDeadline, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections read the answer's head under the call's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # An HTTP(S) proxy uses urllib3's plain pools: give it ours. A SOCKS proxy has pools of its
        # own (they take SOCKS options): it keeps them, and its answers' heads are bounded by the
        # read timeout only.
        if getattr(manager, "pool_classes_by_scheme", None) == {"http": HTTPConnectionPool,
                                                                "https": HTTPSConnectionPool}:
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

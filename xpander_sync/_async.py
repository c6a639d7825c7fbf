"""Async twins: ``aX`` is ``await asyncio.to_thread(self.X, ...)``, and nothing more.

The logic lives only in the blocking method. The twin looks the method up on the
instance at call time, so a subclass override is used; ``functools.wraps`` keeps the
signature for ``inspect`` and IDEs. The caller's event loop is recorded in a context
variable (contextvars reach the worker thread), so that coroutine handlers called from
inside the blocking code can be delivered to that loop.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar

if TYPE_CHECKING:  # asyncio is imported where it is used: it costs ~20 ms at import time
    import asyncio

R = TypeVar("R")

#: The event loop of the ``aX`` call currently running this thread's blocking code.
caller_loop: contextvars.ContextVar[Optional[asyncio.AbstractEventLoop]] = contextvars.ContextVar(
    "xpander_sync_caller_loop", default=None
)


def async_twin(blocking: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """Make the async twin of a blocking method.

    Args:
        blocking: the blocking method (its ``__name__`` is looked up on the instance).

    Returns:
        An ``async def`` that runs the method in the default executor thread pool.
    """
    name = blocking.__name__

    @functools.wraps(blocking)
    async def twin(self: Any, /, *args: Any, **kwargs: Any) -> R:
        import asyncio

        token = caller_loop.set(asyncio.get_running_loop())
        try:
            return await asyncio.to_thread(getattr(self, name), *args, **kwargs)
        finally:
            caller_loop.reset(token)

    twin.__doc__ = f"Async twin of :meth:`{name}`: runs it in a worker thread (``asyncio.to_thread``)."
    twin.__xpander_twin_of__ = name  # type: ignore[attr-defined]
    return twin


_handler_loop: Optional[asyncio.AbstractEventLoop] = None
_handler_loop_lock = threading.Lock()


def _private_loop() -> asyncio.AbstractEventLoop:
    """A daemon thread running an event loop, started on first use, for coroutine handlers
    reached from plain blocking calls (no caller loop to deliver them to)."""
    import asyncio

    global _handler_loop
    with _handler_loop_lock:
        if _handler_loop is None or _handler_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="xpander-sync-handlers", daemon=True)
            thread.start()
            _handler_loop = loop
        return _handler_loop


def call_maybe_async(func: Callable[..., Any], *args: Any, timeout: Optional[float] = None) -> Any:
    """Call a sync or async callable from blocking code and return its result.

    A coroutine is delivered to the loop of the ``aX`` call that led here, when there is
    one (so the handler runs on the caller's loop); otherwise to a private daemon loop.
    The calling thread waits at most ``timeout`` seconds.
    """
    result = func(*args)
    if not inspect.iscoroutine(result):
        return result
    import asyncio

    loop = caller_loop.get()
    if loop is None or not loop.is_running() or _running_loop() is loop:
        loop = _private_loop()
    return asyncio.run_coroutine_threadsafe(result, loop).result(timeout)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

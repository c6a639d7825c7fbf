"""Process-wide handler registries: ``@on_auth_event``.

``@on_auth_event`` registers a function (sync or ``async def``) taking
``(agent, task, event)``; it is called for every auth event raised by an MCP OAuth flow
during ``get_args``, in addition to the per-call ``auth_events_callback``. A function
registered both ways runs once per event. The decorator returns the function itself.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable, List, Optional, TypeVar, overload

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def accepts_three_arguments(func: Callable[..., Any]) -> bool:
    """Whether ``func`` can be called as ``func(agent, task, event)``."""
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # a builtin without a signature: let it be
        return True
    return True


class HandlerRegistry:
    """An ordered, de-duplicated, thread-safe list of handlers."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._handlers: List[Callable[..., Any]] = []
        self._lock = threading.Lock()

    def register(self, func: F) -> F:
        """Add ``func`` (once) and return it unchanged.

        Raises:
            TypeError: ``func`` is not callable or cannot take ``(agent, task, event)``.
        """
        if not callable(func):
            raise TypeError(f"@{self.kind} needs a function, got {type(func).__name__}")
        if not accepts_three_arguments(func):
            raise TypeError(
                f"@{self.kind} handler {getattr(func, '__name__', func)!r} must accept (agent, task, event)"
            )
        with self._lock:
            if func not in self._handlers:
                self._handlers.append(func)
        return func

    def unregister(self, func: Callable[..., Any]) -> None:
        """Remove ``func`` if registered."""
        with self._lock:
            if func in self._handlers:
                self._handlers.remove(func)

    def handlers(self) -> List[Callable[..., Any]]:
        """A snapshot of the registered handlers, in registration order."""
        with self._lock:
            return list(self._handlers)

    def clear(self) -> None:
        """Remove every handler (for tests)."""
        with self._lock:
            self._handlers.clear()


auth_event_handlers = HandlerRegistry("on_auth_event")


@overload
def on_auth_event(func: F) -> F: ...


@overload
def on_auth_event(func: None = None) -> Callable[[F], F]: ...


def on_auth_event(func: Optional[F] = None) -> Any:
    """Register a handler for MCP auth events; usable as ``@on_auth_event`` or ``@on_auth_event()``.

    The handler is called as ``handler(agent, task, event)`` where ``event`` is a
    :class:`~xpander_sync.TaskUpdateEvent` of type ``auth_event`` whose ``data`` is
    ``{"type": "login_required", "data": {"url", "server_url", "server_name"}}`` (open
    ``data["data"]["url"]`` to log in) or, once the login completed,
    ``{"type": "token_ready", "data": {"access_token": "REDACTED", ...}}``.
    ``async def`` handlers are awaited (on the caller's loop when the call was ``aget_args``).
    An exception in a handler is logged and does not stop the others.

    Returns:
        The function itself (still callable as before).
    """
    if func is None:
        return auth_event_handlers.register
    return auth_event_handlers.register(func)


def get_registered_handlers() -> List[Callable[..., Any]]:
    """The registered auth-event handlers."""
    return auth_event_handlers.handlers()


def clear_handlers() -> None:
    """Unregister every auth-event handler."""
    auth_event_handlers.clear()

"""Process-wide handler registries: ``@on_auth_event``, ``@on_task``, ``@on_boot``, ``@on_shutdown``.

Every decorator here only *records* a function and returns it unchanged: decorating never
starts, connects or blocks anything (the official SDK's ``@on_task`` starts the worker
and blocks the importing module forever). The worker (:mod:`xpander_sync.worker`) reads
these registries when it runs.

* ``@on_auth_event`` registers a function (sync or ``async def``) taking
  ``(agent, task, event)``; it is called for every auth event raised by an MCP OAuth flow
  during ``get_args``, in addition to the per-call ``auth_events_callback``. A function
  registered both ways runs once per event.
* ``@on_task`` registers a task handler: ``handler(task)`` (sync or ``async def``) gets a
  :class:`~xpander_sync.Task` and returns it. ``xpander-sync worker MODULE`` (or
  ``Worker()`` without a handler) runs the one registered handler.
* ``@on_boot`` / ``@on_shutdown`` register hooks taking no arguments (sync or async) that
  the worker runs before it connects and after it stopped.

All four are usable bare (``@on_task``) or called (``@on_task()``).
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, TypeVar, overload

from .config import Configuration

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def accepts_three_arguments(func: Callable[..., Any]) -> bool:
    """Whether ``func`` can be called as ``func(agent, task, event)``.

    Args:
        func: the candidate auth-event handler.

    Returns:
        ``True`` when three positional arguments bind (also for a builtin without a
        signature, which cannot be checked), else ``False``.
    """
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # a builtin without a signature: let it be
        return True
    return True


def _check_auth_handler(kind: str, func: Callable[..., Any]) -> None:
    if not accepts_three_arguments(func):
        raise TypeError(f"@{kind} handler {_name(func)!r} must accept (agent, task, event)")


def check_task_handler(func: Any, kind: str = "on_task") -> None:
    """Check that ``func`` can be called as ``func(task=<Task>)``.

    The official SDK requires a parameter named ``task``; so do we, and we also refuse
    handlers with other required parameters (they could never be called by the worker).

    Args:
        func: the candidate handler.
        kind: the decorator name used in the message.

    Raises:
        TypeError: ``func`` is not callable, has no ``task`` parameter, or needs other arguments.
    """
    if not callable(func):
        raise TypeError(f"@{kind} needs a function, got {type(func).__name__}")
    try:
        signature = inspect.signature(func)
    except ValueError:  # no signature to inspect (some builtins): trust the caller
        return
    if "task" not in signature.parameters:
        raise TypeError(
            f"@{kind} handler {_name(func)!r} must take a 'task' argument, e.g. "
            f"def {getattr(func, '__name__', 'handler')}(task: Task) -> Task"
        )
    try:
        signature.bind(task=None)
    except TypeError as exc:
        raise TypeError(
            f"@{kind} handler {_name(func)!r} must be callable as handler(task=...): {exc}"
        ) from None


def _check_hook(kind: str, func: Callable[..., Any]) -> None:
    try:
        inspect.signature(func).bind()
    except TypeError:
        raise TypeError(f"@{kind} hook {_name(func)!r} must take no arguments") from None
    except ValueError:
        return


class HandlerRegistry:
    """An ordered, de-duplicated, thread-safe list of handlers.

    Args:
        kind: the decorator name, used in error messages.
        check: called as ``check(kind, func)`` before registering; raises ``TypeError``
            for a function of the wrong shape. Default: the auth-event check
            (``(agent, task, event)``).
    """

    def __init__(self, kind: str, check: Optional[Callable[[str, Callable[..., Any]], None]] = None) -> None:
        self.kind = kind
        self._check = check or _check_auth_handler
        self._handlers: List[Callable[..., Any]] = []
        self._lock = threading.Lock()

    def register(self, func: F) -> F:
        """Add ``func`` (once) and return it unchanged.

        Args:
            func: the handler or hook; registering it again changes nothing.

        Returns:
            ``func`` itself, so this works as a decorator.

        Raises:
            TypeError: ``func`` is not callable or has the wrong signature for this registry.
        """
        if not callable(func):
            raise TypeError(f"@{self.kind} needs a function, got {type(func).__name__}")
        self._check(self.kind, func)
        with self._lock:
            if func not in self._handlers:
                self._handlers.append(func)
        return func

    def unregister(self, func: Callable[..., Any]) -> None:
        """Remove ``func`` if registered.

        Args:
            func: the handler to remove; one that is not registered is ignored.
        """
        with self._lock:
            if func in self._handlers:
                self._handlers.remove(func)

    def handlers(self) -> List[Callable[..., Any]]:
        """A snapshot of the registered handlers, in registration order.

        Returns:
            A new list (changing it does not change the registry).
        """
        with self._lock:
            return list(self._handlers)

    def clear(self) -> None:
        """Remove every handler (for tests)."""
        with self._lock:
            self._handlers.clear()


auth_event_handlers = HandlerRegistry("on_auth_event")
task_handlers = HandlerRegistry("on_task", lambda kind, func: check_task_handler(func, kind))
boot_hooks = HandlerRegistry("on_boot", _check_hook)
shutdown_hooks = HandlerRegistry("on_shutdown", _check_hook)

# The ``configuration=`` given to ``@on_task(configuration=...)``, by handler.
_task_configurations: Dict[Callable[..., Any], Configuration] = {}
_task_configurations_lock = threading.Lock()


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

    Args:
        func: the handler (when used bare).

    Returns:
        The function itself (still callable as before), or a decorator when called
        without one.

    Raises:
        TypeError: the function cannot be called as ``handler(agent, task, event)``.
    """
    if func is None:
        return auth_event_handlers.register
    return auth_event_handlers.register(func)


@overload
def on_task(func: F) -> F: ...


@overload
def on_task(func: None = None, *, configuration: Optional[Configuration] = None) -> Callable[[F], F]: ...


def on_task(func: Optional[F] = None, *, configuration: Optional[Configuration] = None) -> Any:
    """Register the task handler a worker runs; usable as ``@on_task`` or ``@on_task(...)``.

    The handler (sync or ``async def``) is called as ``handler(task=<Task>)`` with a
    :class:`~xpander_sync.Task` of its own and returns that task with ``result`` (and,
    optionally, ``status``, ``used_tools``, ``tokens``) set. Nothing starts here: run it
    with ``xpander-sync worker MODULE:FUNCTION`` or :class:`xpander_sync.worker.Worker`,
    and call it directly in tests. (The official SDK's ``test_task=``/``--invoke`` mode is
    not offered: invoke the agent with ``Backend.invoke_agent`` against a running worker,
    or call the function with a Task.)

    Args:
        func: the handler (when used bare).
        configuration: the configuration a worker uses for this handler when it is given
            none itself (the CLI always passes its own: environment and flags).

    Returns:
        The function itself, unchanged (or a decorator when called with arguments).

    Raises:
        TypeError: the function has no ``task`` parameter, or needs other arguments; or
            ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """
    if configuration is not None and not isinstance(configuration, Configuration):
        raise TypeError("on_task(configuration=...) must be an xpander_sync.Configuration")

    def register(handler: F) -> F:
        task_handlers.register(handler)
        if configuration is not None:
            with _task_configurations_lock:
                _task_configurations[handler] = configuration
        return handler

    if func is None:
        return register
    return register(func)


@overload
def on_boot(func: F) -> F: ...


@overload
def on_boot(func: None = None) -> Callable[[F], F]: ...


def on_boot(func: Optional[F] = None) -> Any:
    """Register a hook the worker runs before it connects (``@on_boot`` or ``@on_boot()``).

    Hooks take no arguments, may be ``async def``, and run in registration order; the
    first one that raises aborts the worker's start (``Worker.run`` raises
    :class:`~xpander_sync.errors.BootHookError`).

    Args:
        func: the hook (when used bare).

    Returns:
        The function itself, unchanged (or a decorator when called without one).

    Raises:
        TypeError: the function requires arguments.
    """
    if func is None:
        return boot_hooks.register
    return boot_hooks.register(func)


@overload
def on_shutdown(func: F) -> F: ...


@overload
def on_shutdown(func: None = None) -> Callable[[F], F]: ...


def on_shutdown(func: Optional[F] = None) -> Any:
    """Register a hook the worker runs after it stopped (``@on_shutdown`` or ``@on_shutdown()``).

    Hooks take no arguments, may be ``async def``, and run in registration order once the
    in-flight tasks finished (or the drain deadline passed); an exception is logged and the
    other hooks still run.

    Args:
        func: the hook (when used bare).

    Returns:
        The function itself, unchanged (or a decorator when called without one).

    Raises:
        TypeError: the function requires arguments.
    """
    if func is None:
        return shutdown_hooks.register
    return shutdown_hooks.register(func)


def task_handler_configuration(handler: Callable[..., Any]) -> Optional[Configuration]:
    """The ``configuration=`` given to ``@on_task`` for ``handler``, if any.

    Args:
        handler: a function registered with ``@on_task``.

    Returns:
        Its :class:`~xpander_sync.Configuration`, or ``None`` when none was given.
    """
    with _task_configurations_lock:
        return _task_configurations.get(handler)


def get_registered_handlers() -> List[Callable[..., Any]]:
    """The registered auth-event handlers.

    Returns:
        A snapshot list, in registration order.
    """
    return auth_event_handlers.handlers()


def clear_handlers() -> None:
    """Unregister every auth-event handler."""
    auth_event_handlers.clear()


def clear_worker_handlers() -> None:
    """Unregister every ``@on_task`` handler and ``@on_boot``/``@on_shutdown`` hook (for tests)."""
    task_handlers.clear()
    boot_hooks.clear()
    shutdown_hooks.clear()
    with _task_configurations_lock:
        _task_configurations.clear()

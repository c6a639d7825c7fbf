"""Finding the task handler: the one registered with ``@on_task``, or ``MODULE:FUNCTION`` imported."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Optional

from ..handlers import check_task_handler, task_handlers


def registered_handler(module: Optional[str] = None) -> Callable[..., Any]:
    """The one ``@on_task`` handler (of ``module``, when given).

    Args:
        module: keep only the handlers defined in this module (its ``__name__``).

    Returns:
        The handler.

    Raises:
        TypeError: none is registered, or several are (the message names them).
    """
    handlers = task_handlers.handlers()
    if module is not None:
        handlers = [h for h in handlers if getattr(h, "__module__", None) == module]
    where = f" in module {module}" if module else ""
    if not handlers:
        raise TypeError(f"no @on_task handler is registered{where}: decorate one, or pass the handler")
    if len(handlers) > 1:
        names = ", ".join(getattr(h, "__qualname__", repr(h)) for h in handlers)
        raise TypeError(f"several @on_task handlers are registered{where} ({names}): name one as MODULE:FUNCTION")
    return handlers[0]


def load_handler(target: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNCTION`` (or ``MODULE`` with one ``@on_task`` handler) and return the handler.

    The current directory is put on ``sys.path`` (as ``python -m`` does) so that
    ``xpander-sync worker app:handle`` finds ``app.py`` there.

    Args:
        target: ``MODULE:FUNCTION`` (``FUNCTION`` may be dotted, e.g. ``Class.method``) or ``MODULE``.

    Returns:
        The handler.

    Raises:
        ImportError: the module cannot be imported.
        TypeError: the function is missing, not a valid handler, or ambiguous.
    """
    module_name, _, function = target.partition(":")
    if not module_name or (":" in target and not function):
        raise TypeError(f"expected MODULE:FUNCTION or MODULE, got {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    module = importlib.import_module(module_name)
    if not function:
        return registered_handler(module.__name__)
    handler: Any = module
    for part in function.split("."):
        if not hasattr(handler, part):
            raise TypeError(f"module {module_name} has no attribute {function!r}")
        handler = getattr(handler, part)
    check_task_handler(handler, "worker")
    return handler

"""``xpander-sync worker MODULE[:FUNCTION]``: what the command line runs (:func:`run_from_cli`)."""

from __future__ import annotations

import logging
from typing import Any, Optional, TextIO

from .._redact import scrub
from ..config import Configuration
from ..errors import BootHookError
from .loading import load_handler
from .worker import Worker

#: The package's logger: every worker module logs below it.
logger = logging.getLogger("xpander_sync.worker")


def run_from_cli(
    target: str,
    configuration: Configuration,
    *,
    concurrency: int,
    agent_id: Optional[str],
    out: TextIO,
    err: TextIO,
    **worker_options: Any,
) -> int:
    """Run ``xpander-sync worker MODULE:FUNCTION``; returns the exit status.

    Imports the handler (``FUNCTION`` may be undecorated; without it, the module's one
    ``@on_task`` handler is used), runs the ``@on_boot`` hooks, serves tasks until SIGTERM
    or Ctrl-C, drains, runs the ``@on_shutdown`` hooks.

    Args:
        target: ``MODULE:FUNCTION`` or ``MODULE``.
        configuration: the CLI's configuration (environment and flags).
        concurrency: tasks handled at once.
        agent_id: the agent (default: ``XPANDER_AGENT_ID``).
        out: where the start/stop lines go.
        err: where errors go (and the worker's INFO logs, when logging is not configured).
        **worker_options: more :class:`Worker` keyword arguments.

    Returns:
        0 after a clean stop; 1 when a boot hook failed; 2 for a bad target or configuration.
    """
    try:
        handler = load_handler(target)
        worker = Worker(handler, configuration=configuration, agent_id=agent_id, concurrency=concurrency,
                        **worker_options)
    except (ImportError, TypeError, ValueError) as exc:
        message = scrub(f"{exc}", (configuration.api_key,))
        err.write(f"xpander-sync worker: error: {message}\n")
        return 2
    # Without -v nothing would show; an operator wants to see connects, losses and failures.
    attached: Optional[logging.Handler] = None
    previous_level = logger.level
    if not logging.getLogger().handlers:
        attached = logging.StreamHandler(err)
        attached.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(attached)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    name = getattr(handler, "__qualname__", target)
    out.write(f"xpander-sync worker: {name} for agent {worker.agent_id} (concurrency {concurrency}); "
              "Ctrl-C or SIGTERM to stop\n")
    out.flush()
    try:
        worker.run()
    except BootHookError as exc:
        err.write(f"xpander-sync worker: error: {exc}\n")
        return 1
    finally:
        if attached is not None:
            logger.removeHandler(attached)
            logger.setLevel(previous_level)
    stats = worker.stats()
    if worker_options.get("dispatch") is not None:
        out.write(f"xpander-sync worker: stopped ({stats['received']} dispatched)\n")
    else:
        out.write(f"xpander-sync worker: stopped ({stats['completed']} completed, {stats['failed']} failed)\n")
    out.flush()
    return 0

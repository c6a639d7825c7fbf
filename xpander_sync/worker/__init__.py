"""The task worker: receive an agent's tasks over the platform's event stream and run a handler.

``from xpander_sync.worker import Worker`` (or run ``xpander-sync worker MODULE[:FUNCTION]``).
The package, one concern per module:

========================  ==================================================================
``worker.py``             :class:`Worker`: construction, ``run``/``start``/``stop``/``join``,
                          boot and shutdown hooks, SIGTERM/SIGINT
``settings.py``           :class:`WorkerSettings`: the frozen, validated knobs, and the
                          reconnect/re-save backoff
``_stream.py``            the stream reader: open, read as bytes arrive, dispatch, reconnect
``sse.py``                :class:`SSEParser`: ``text/event-stream`` bytes to events (pure)
``_runner.py``            the runner: bounded slots, one thread per task, save through
                          outages, duplicates, the drain
``_heartbeat.py``         registration state, heartbeats and capacity updates
``_state.py``             the stop state and counters the threads share
``loading.py``            the ``@on_task`` handler, or ``MODULE:FUNCTION`` imported
``command.py``            :func:`run_from_cli`, for ``xpander-sync worker``
``_execute.py``           one task run and saved (:func:`run_platform_task`, also Celery's)
``_dispatch.py``          dispatch mode: task ids handed to a callable (Celery) instead
========================  ==================================================================

Every platform call goes through a resource: :class:`~xpander_sync.resources.Workers` (the
event stream, heartbeats, capacity, metrics) and :class:`~xpander_sync.Tasks` (status
updates, saves, reloads). A single call is retried by the transport; only the two loops
that must outlast an outage (reopening the stream, saving a result) wait the settings'
backoff between attempts, and a failure counts as temporary exactly when its error is
``retryable``.

Differences from the official SDK, on purpose: decorating with ``@on_task`` starts and
blocks nothing; no ``sys.exit``/``os._exit`` anywhere; the stream is reconnected forever
(upstream exits after 5 failures); the HTTP status of heartbeats and capacity updates is
checked (and logged); handler-set ``used_tools`` and ``tokens`` are saved and kept
(upstream's post-handler reload drops ``used_tools``); metrics use the task's configuration;
no git credentials or any other file are written; redirects are not followed (they would
carry ``x-api-key``); logs go to the ``xpander_sync.worker`` loggers and never contain the
API key. Not implemented: the ``test_task``/``--invoke`` mode (it sniffed ``sys.argv`` at
import and ended with ``os._exit``; here a handler is a plain function to call with a Task
in a test, and ``Backend.invoke_agent`` against the local backend runs a real task through a
worker), streaming (async generator) handlers, deep-planning retries (and the reload after
the handler that they need), and the ``/invoke`` HTTP server.
"""

from ..errors import BootHookError
from ..resources.workers import build_metrics_body
from ._execute import run_platform_task
from .command import run_from_cli
from .loading import load_handler
from .settings import WorkerSettings
from .sse import ServerSentEvent, SSEParser
from .worker import Worker

__all__ = [
    "BootHookError",
    "SSEParser",
    "ServerSentEvent",
    "Worker",
    "WorkerSettings",
    "build_metrics_body",
    "load_handler",
    "run_from_cli",
    "run_platform_task",
]

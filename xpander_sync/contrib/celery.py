"""The scale-out path: one stream reader enqueues platform tasks, Celery workers anywhere run them.

::

    xpander-sync worker my_app:handle --dispatch celery --celery-app proj.celery:app   # one reader
    celery -A proj.celery:app worker --concurrency 8                                   # N hosts

The reader (:func:`celery_dispatch`) keeps no task state: each ``agent-execution`` frame's task id
is sent as a :data:`RUN_TASK` message (``[task_id, "my_app:handle"]``: no task data, no key in the
broker); while the broker is down the send is retried with the worker's backoff and the reader
stops reading (the platform keeps the tasks). A Celery worker runs :func:`run_platform_task`: it
reloads the task, skips it when it is already finished, runs the handler and saves the result
through the same code as the local worker
(:func:`xpander_sync.worker.run_platform_task`), reloading once more before the save so a result
is saved at most once per task id. With a Redis broker, each platform task is also *claimed* by the
first message that carries it (``SET NX`` in the broker): a second message for the same task (the
stream re-sends a still-pending task after the reader reconnects) is skipped, while the
re-delivery of the same message after its process died keeps the claim and runs.

Delivery is at-least-once: the task is declared ``acks_late`` and ``reject_on_worker_lost``, so a
worker process killed mid-task has its message re-delivered, and the task (``executing`` on the
platform, not finished) runs again once. A process killed after the save but before the ack is
re-delivered too and skipped: the task is finished.

Celery workers read their :class:`~xpander_sync.Configuration` from the app's
``xpander_configuration`` setting (a ``Configuration``, a dict of its fields, a callable returning
one, or ``"module:function"``), else from the environment (``XPANDER_API_KEY``...). Import this
module where the app is defined (``import xpander_sync.contrib.celery``) so its tasks are
registered in the workers.

:data:`report_external_task` is a Celery task for reports:
``report_external_task.delay(agent_id=..., input=..., result=...)`` returns the ``AsyncResult``,
or, when the broker cannot be reached, puts the report in the outbox (the configuration's, else
the CLI's default) and returns a :class:`~xpander_sync.QueuedReport`; ``xpander-sync outbox flush``
delivers it later, with the same id.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type

from ._config import configuration_from, require

require("celery", "celery", "xpander_sync.contrib.celery")

from celery import Celery, Task, shared_task  # noqa: E402
from kombu.exceptions import OperationalError  # noqa: E402

from .._redact import scrub  # noqa: E402
from ..backend import Backend, resolve_agent_id  # noqa: E402
from ..config import Configuration, state_dir  # noqa: E402
from ..errors import ConfigurationError, InvalidInputError, ModuleException  # noqa: E402
from ..reporting import QueuedReport, outbox_at  # noqa: E402
from ..resources import Reports  # noqa: E402
from ..worker import load_handler  # noqa: E402
from ..worker import run_platform_task as _run_and_save  # noqa: E402

__all__ = ["REPORT_TASK", "RUN_TASK", "celery_dispatch", "configuration_of", "load_app", "report_external_task",
           "run_platform_task"]

logger = logging.getLogger(__name__)

#: The Celery task name the reader sends for each platform task.
RUN_TASK = "xpander_sync.run_platform_task"
#: The Celery task name of :data:`report_external_task`.
REPORT_TASK = "xpander_sync.report_external_task"
#: The Celery app setting that holds the workers' configuration.
SETTING = "xpander_configuration"

_handlers: Dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def load_app(target: str) -> Celery:
    """Import ``MODULE:APP`` (``proj.celery:app``) and return the Celery app.

    Args:
        target: ``MODULE:ATTRIBUTE``; ``MODULE`` alone looks for ``app`` or ``celery`` in it.

    Returns:
        The :class:`celery.Celery` app.

    Raises:
        InvalidInputError: the module cannot be imported or holds no Celery app there.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(f"--celery-app {target!r}: cannot import {module_name!r} ({exc})") from None
    for name in [attribute] if attribute else ["app", "celery"]:
        value = getattr(module, name, None)
        if isinstance(value, Celery):
            return value
    raise InvalidInputError(f"--celery-app {target!r}: no Celery app there (expected MODULE:APP, e.g. proj.celery:app)")


def configuration_of(app: Any) -> Configuration:
    """The configuration Celery workers use: the app's ``xpander_configuration``, else the environment.

    Args:
        app: the Celery app.

    Returns:
        The :class:`~xpander_sync.Configuration`.

    Raises:
        ConfigurationError: the setting is not a Configuration, a dict of its fields, a callable or
            ``"module:function"`` returning one.
    """
    value = app.conf.get(SETTING)
    if isinstance(value, str):
        module_name, _, function = value.partition(":")
        value = getattr(importlib.import_module(module_name), function or "configuration")
    if callable(value) and not isinstance(value, Configuration):
        value = value()
    if value is None:
        return Configuration()
    if isinstance(value, Configuration):
        return value
    if isinstance(value, Mapping):
        return configuration_from(value, source=f"celery app.conf.{SETTING}")
    raise ConfigurationError(f"celery app.conf.{SETTING} must be a Configuration, a dict of its fields or a "
                             f"callable returning one, got {type(value).__name__}")


def celery_dispatch(app_target: str, handler_target: str) -> Callable[[str], None]:
    """What ``xpander-sync worker HANDLER --dispatch celery --celery-app APP`` hands the reader.

    Args:
        app_target: ``MODULE:APP`` of the Celery app the messages are sent with.
        handler_target: ``MODULE:FUNCTION`` of the handler the Celery workers run.

    Returns:
        ``dispatch(task_id)``: sends one :data:`RUN_TASK` message; raises while the broker cannot
        take it (the reader retries with its backoff).

    Raises:
        InvalidInputError: the Celery app cannot be loaded.
    """
    app = load_app(app_target)

    def dispatch(task_id: str) -> None:
        app.send_task(RUN_TASK, args=[task_id, handler_target], retry=False)

    return dispatch


def _handler(target: str) -> Callable[..., Any]:
    handler = _handlers.get(target)
    if handler is None:
        with _lock:
            handler = _handlers.get(target) or load_handler(target)
            _handlers[target] = handler
    return handler


#: Seconds a claim on a platform task is kept in the broker (longer than any re-delivery of its message).
CLAIM_SECONDS = 7 * 24 * 3600
#: Seconds the claim waits for the broker (connect, and each answer) before the task runs unclaimed.
CLAIM_TIMEOUT = 5.0


def _claim(app: Any, task_id: str, message_id: str) -> bool:
    """Claim the platform task for this message: ``True`` unless another message claimed it first.

    With a Redis broker, ``SET xpander-sync:claim:<task id> <message id> NX`` in the broker: two
    messages for one platform task (the stream re-sends a task still pending after the reader
    reconnects) cannot both run it, while a re-delivery of the *same* message (its process was
    killed) keeps its claim and runs. Other brokers: no claim (the status checks remain).

    The claim's connection has a socket timeout (:data:`CLAIM_TIMEOUT`, unless the app's
    ``broker_transport_options`` set one); when the broker cannot be reached (kombu's or
    redis-py's connection or timeout errors) the task runs unclaimed: its status checks remain.
    """
    options = dict(app.conf.broker_transport_options or {})
    options.setdefault("socket_timeout", CLAIM_TIMEOUT)
    options.setdefault("socket_connect_timeout", CLAIM_TIMEOUT)
    try:
        with app.connection_for_write(transport_options=options) as connection:
            if connection.transport.driver_type != "redis":
                return True
            client = connection.default_channel.client
            key = f"xpander-sync:claim:{task_id}"
            if client.set(key, message_id, nx=True, ex=CLAIM_SECONDS):
                return True
            holder = client.get(key)
            return (holder.decode() if isinstance(holder, bytes) else holder) == message_id
    except (OperationalError, OSError, *_redis_errors()) as exc:  # the message will be re-delivered anyway
        logger.warning("task %s: could not claim it (%s: %s); running it", task_id, type(exc).__name__, exc)
        return True


def _redis_errors() -> Tuple[Type[BaseException], ...]:
    """redis-py's connection and timeout errors (``()`` when redis-py is not installed)."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        return ()
    return (RedisConnectionError, RedisTimeoutError)


@shared_task(name=RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None,
             ignore_result=True)
def run_platform_task(self: Task, task_id: str, handler_target: str) -> str:
    """Run one platform task with the handler ``handler_target`` and save its result (in a Celery worker).

    Skips a task already finished; a platform outage longer than the save's retries is retried
    by Celery (the message is re-sent with a countdown). A refusal of the platform (not
    ``retryable``: e.g. a 404 when setting the status, a 422 on the save) is logged and raised:
    Celery marks the task failed and does not run the handler again.

    Args:
        self: the bound Celery task.
        task_id: the platform task's id.
        handler_target: ``MODULE:FUNCTION`` of the handler.

    Returns:
        ``"skipped"``, ``"completed"``, ``"failed"`` or ``"superseded"``
        (see :func:`xpander_sync.worker.run_platform_task`), or ``"duplicate"`` (another message for
        the same platform task claimed it: see :func:`_claim`).

    Raises:
        ModuleException: the platform refused the task for good (not ``retryable``).
    """
    if not _claim(self.app, task_id, str(self.request.id)):
        logger.info("task %s: another message for it was taken first; this copy is skipped", task_id)
        return "duplicate"
    try:
        return _run_and_save(task_id, _handler(handler_target), configuration=configuration_of(self.app))
    except ModuleException as exc:
        if not exc.retryable:
            logger.error("task %s: the platform refused it for good (%s: %s); not retried", task_id,
                         type(exc).__name__, exc)
            raise
        countdown = min(60, 2 ** min(self.request.retries, 6))
        logger.warning("task %s: platform unavailable (%s); retrying in %ss", task_id, exc, countdown)
        raise self.retry(countdown=countdown) from None


#: The report fields and their defaults (as :meth:`Backend.report_external_task`'s).
_REPORT_DEFAULTS: Dict[str, Any] = {"id": None, "input": None, "llm_response": None, "tokens": None,
                                    "is_success": True, "result": None, "duration": 0, "used_tools": None}


class _ReportTask(Task):
    """Gives each report its id before it is sent, and keeps it in the outbox when the broker is down."""

    def apply_async(self, args: Any = None, kwargs: Optional[Dict[str, Any]] = None, **options: Any) -> Any:
        if args:
            raise InvalidInputError("report_external_task takes keyword arguments only (agent_id=..., input=...)")
        fields = dict(kwargs or {})
        unknown = sorted(set(fields) - set(_REPORT_DEFAULTS) - {"agent_id"})
        if unknown:
            raise InvalidInputError(f"report_external_task: unknown field(s) {', '.join(unknown)}; known: agent_id, "
                                    + ", ".join(_REPORT_DEFAULTS))
        fields["id"] = fields.get("id") or str(uuid.uuid4())  # the same id through every retry and the outbox
        options.setdefault("retry", False)
        try:
            return super().apply_async(args, fields, **options)
        except OperationalError as exc:
            return _queue_in_outbox(self.app, fields, exc)


def _queue_in_outbox(app: Any, fields: Dict[str, Any], exc: Exception) -> QueuedReport:
    configuration = configuration_of(app)
    # The CLI's default (``xpander-sync outbox flush`` finds it there): $XPANDER_OUTBOX, else the state folder.
    path = configuration.outbox or os.environ.get("XPANDER_OUTBOX") or os.path.join(state_dir(), "outbox.sqlite3")
    agent_id = resolve_agent_id(None, fields.get("agent_id"), configuration.agent_id)
    values: Dict[str, Any] = dict(_REPORT_DEFAULTS)
    values.update((k, v) for k, v in fields.items() if k != "agent_id")
    body = Reports.body(**values)
    outbox = outbox_at(path)
    assert outbox is not None
    outbox.put(agent_id, configuration.base_url, body)
    reason = scrub(f"the Celery broker is unreachable: {exc}", (configuration.api_key,))[:300]
    logger.warning("report %s kept in the outbox %s (%s)", body["id"], path, reason)
    return QueuedReport(task_id=body["id"], agent_id=agent_id, reason=reason, outbox=path)


@shared_task(name=REPORT_TASK, bind=True, base=_ReportTask, acks_late=True, max_retries=None)
def report_external_task(self: Task, **fields: Any) -> Optional[str]:
    """Report a run from a Celery worker (:meth:`xpander_sync.Backend.report_external_task`).

    Call it as ``report_external_task.delay(agent_id=..., input=..., result=..., tokens={...})``
    (JSON-serialisable fields). The id is fixed when it is sent, so a re-run reports the same task.

    Args:
        self: the bound Celery task.
        **fields: :meth:`Backend.report_external_task` keyword arguments (``agent`` excepted).

    Returns:
        The reported task id (delivered, or kept in the worker's outbox when one is configured).

    Raises:
        ModuleException: the platform refused the report (a 4xx); an outage is retried by Celery.
    """
    try:
        outcome = Backend(configuration_of(self.app)).report_external_task(**fields)
    except ModuleException as exc:
        if not exc.retryable:
            raise
        raise self.retry(countdown=min(60, 2 ** min(self.request.retries, 6))) from None
    return getattr(outcome, "id", None) or getattr(outcome, "task_id", None)

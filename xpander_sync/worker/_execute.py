"""Running one platform task: ``executing`` → the handler → the result saved (and the metrics).

The one code path both hosts use: the local worker's :class:`~._runner.Runner` (one thread per
task, its slots around it) and a Celery worker (:func:`run_platform_task`, called by
``xpander_sync.contrib.celery``'s task). It keeps no state between tasks.

* Setting ``executing`` and saving the result are retried with the settings' backoff through a
  backend outage, until they succeed, fail for good (not ``retryable``) or ``give_up()`` says so.
* A handler exception (even ``SystemExit``) saves the task with status ``error`` and the
  secret-scrubbed message; the task never stays ``executing`` because of the handler.
* :func:`run_platform_task` reloads the task first and skips one already finished, and reloads it
  again right before saving: a result is saved at most once per task id.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import traceback
from typing import Any, Callable, List, Optional, Tuple

import attrs

from .._async import call_maybe_async
from .._converter import unstructure
from .._redact import scrub, secret_values
from ..config import Configuration
from ..errors import InvalidInputError, ModuleException, TransportError, XpanderError
from ..frameworks._llm import ENV_KEYS
from ..models.common import AgentExecutionStatus
from ..models.task import Task
from ..resources import LLMRoutes, Tasks, Workers
from ..transport import shared_transport
from ._journal import Journal
from ._state import StopState
from .settings import WorkerSettings

logger = logging.getLogger("xpander_sync.worker._runner")

#: Longest result text saved for a handler exception.
_ERROR_RESULT_LIMIT = 2000
#: The statuses of a task that is done: it is not run (or saved) again.
FINISHED = frozenset({AgentExecutionStatus.COMPLETED, AgentExecutionStatus.ERROR, AgentExecutionStatus.FAILED})


def result_text(value: Any) -> Optional[str]:
    """A handler's ``task.result`` as the string the platform stores.

    Args:
        value: what the handler put in ``task.result`` (text, a pydantic model, attrs, JSON data...).

    Returns:
        ``None``, the text itself, or a JSON (else ``str``) rendering.
    """
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json") and callable(value.model_dump_json):  # pydantic
        return str(value.model_dump_json())
    if attrs.has(type(value)):
        value = unstructure(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


class Executor:
    """Runs a handler on one task and saves the result; shared by the local worker and Celery.

    Args:
        tasks: the :class:`~xpander_sync.Tasks` the task is bound to (status updates, saves).
        workers: the :class:`~xpander_sync.resources.Workers` metrics go through.
        settings: the backoff between two attempts of a failing status update or save.
        stop: the stop state whose ``pause`` waits between attempts (a stop wakes it).
        journal: where the ids of running tasks are kept on disk (``None``: nowhere).
    """

    def __init__(self, *, tasks: Tasks, workers: Workers, settings: WorkerSettings, stop: StopState,
                 journal: Optional[Journal] = None) -> None:
        self.tasks = tasks
        self.workers = workers
        self.settings = settings
        self.stop = stop
        self.journal = journal or Journal(None, "")
        self._secrets: Tuple[Any, ...] = (tasks.configuration.api_key,)

    def run_and_save(
        self,
        task: Task,
        handler: Callable[..., Any],
        *,
        give_up_start: Callable[[], bool],
        give_up_save: Callable[[], bool],
        may_save: Callable[[], bool] = lambda: True,
        raise_refused: bool = False,
    ) -> Optional[bool]:
        """Set ``executing``, run ``handler(task=task)``, save the result, report the metrics.

        Args:
            task: the task, bound to :attr:`tasks`.
            handler: ``handler(task=...)``, sync or ``async def``.
            give_up_start: stop retrying ``executing`` (the task stays ``pending``).
            give_up_save: stop retrying the save (the task stays ``executing``).
            may_save: asked once the handler returned; ``False`` drops the result (the local
                worker's drain gave up on the task; Celery: another run saved it first).
            raise_refused: raise the error when the platform refuses the status update or the
                save for good (not ``retryable``) instead of returning ``None``.

        Returns:
            ``None`` when the task was not started, or its result not saved; else whether the
            handler failed (``True``: saved with status ``error``).

        Raises:
            ModuleException: only with ``raise_refused``: the platform refused the status update or
                the save (not ``retryable``, e.g. 404 or 422); a retryable failure past
                ``give_up_*`` still returns ``None``.
        """
        task_id = task.id
        refused = self.attempt(lambda: task.set_status(AgentExecutionStatus.EXECUTING),
                               f"set task {task_id} executing", give_up=give_up_start)
        if refused is not None:
            if raise_refused and not refused.retryable:
                raise refused
            return None
        self.journal.add(task_id)  # from now on a SIGKILL leaves it "executing": the next start reclaims it
        logger.info("task %s: running handler", task_id)
        started = time.monotonic()
        failed = False
        try:
            returned = call_maybe_async(functools.partial(handler, task=task))
            if returned is None:
                returned = task  # the handler changed the task in place and forgot to return it
            elif not isinstance(returned, Task):
                raise TypeError(f"the task handler returned {type(returned).__name__}, expected the Task")
            elif returned is not task:
                if returned.configuration is None:  # built by hand: give it the worker's client
                    self.tasks.bind(returned)
                task = returned
            if task.status == AgentExecutionStatus.EXECUTING:
                task.status = AgentExecutionStatus.COMPLETED
            task.result = result_text(task.result)
        except BaseException as exc:  # even SystemExit from a handler: the task must not stay "executing"
            failed = True
            task.status = AgentExecutionStatus.ERROR
            task.result = self.error_text(exc, task)
            logger.warning(
                "task %s: handler raised %s\n%s", task_id, task.result,
                scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                      self.known_secrets(task)),
            )
        if not task.duration:
            task.duration = round(time.monotonic() - started, 3)
        if not may_save():
            logger.warning("task %s finished after the worker gave up on it; result not saved", task_id)
            return None
        tokens, used_tools = task.tokens, list(task.used_tools or [])
        refused = self.attempt(task.save, f"save task {task_id}", give_up=give_up_save)
        # The server's copy replaced ours; keep what the handler set (upstream loses used_tools).
        task.tokens, task.used_tools = tokens, used_tools
        if refused is not None:  # still "executing" on the platform: the journal keeps it for the next start
            if raise_refused and not refused.retryable:
                raise refused
            logger.error("task %s: the result could not be saved before the worker stopped", task_id)
            return None
        self.journal.remove(task_id)
        logger.info("task %s: saved with status %s", task_id, task.status)
        if task.tokens is not None:
            self.report_metrics(task)
        return failed

    def known_secrets(self, task: Task) -> List[Any]:
        """Every secret the library knows of while this task ran.

        Args:
            task: the task (its tokens and MCP credentials count).

        Returns:
            The API key, the task's secrets, the LLM keys of the environment, and the keys stored
            on the agents a handler loaded through this client.
        """
        found: List[Any] = [*self._secrets, task.user_oidc_token]
        found += secret_values(unstructure(task))
        found += [os.environ.get(name) for names in ENV_KEYS.values() for name in names]
        found += secret_values(shared_transport(self.tasks.configuration).caches.agents.values())
        return [s for s in found if s]

    def error_text(self, exc: BaseException, task: Task) -> str:
        """The result saved for a handler exception: its message, scrubbed and cut.

        Args:
            exc: what the handler raised.
            task: the task (for its secrets).

        Returns:
            At most 2000 characters, without any known secret.
        """
        message = str(exc) or type(exc).__name__
        return scrub(message, self.known_secrets(task))[:_ERROR_RESULT_LIMIT]

    def until_done(self, call: Callable[[], Any], what: str, *, give_up: Callable[[], bool]) -> bool:
        """Call until it succeeds (``True``), fails for good (not ``retryable``), or ``give_up()`` (``False``).

        Args:
            call: the platform call.
            what: names the call in the logs.
            give_up: asked after each retryable failure.

        Returns:
            Whether the call succeeded.
        """
        return self.attempt(call, what, give_up=give_up) is None

    def attempt(self, call: Callable[[], Any], what: str, *,
                give_up: Callable[[], bool]) -> Optional[ModuleException]:
        """:meth:`until_done`, returning the error that ended the attempts.

        Args:
            call: the platform call.
            what: names the call in the logs.
            give_up: asked after each retryable failure.

        Returns:
            ``None`` when the call succeeded; else the last error: not ``retryable`` (refused for
            good, tried once) or ``retryable`` (``give_up()`` said to stop).
        """
        failures = 0
        while True:
            try:
                call()
                if failures:
                    logger.info("%s: succeeded after %d retries", what, failures)
                return None
            except ModuleException as exc:
                if not exc.retryable:
                    logger.error("%s failed: %s", what, exc)
                    return exc
                failures += 1
                delay = self.settings.delay(failures)
                if give_up():
                    logger.error("%s failed (%s); giving up (the worker is stopping, or the retry time is up)",
                                 what, exc)
                    return exc
                logger.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
            self.stop.pause(delay)  # a stop() wakes it early, to apply the give-up rule at once

    def report_metrics(self, task: Task) -> None:
        """Send the task's metrics (tokens, duration); a failure is logged, never raised.

        Args:
            task: the saved task.
        """
        configuration = task.configuration
        workers = self.workers
        if configuration is not None and configuration != workers.configuration:
            workers = Workers(configuration)  # the handler returned a task of another platform
        try:
            workers.report_metrics(task)
        except XpanderError as exc:
            logger.warning("task %s: metrics not reported: %s", task.id, exc)


def run_platform_task(
    task_id: str,
    handler: Callable[..., Any],
    *,
    configuration: Configuration,
    settings: Optional[WorkerSettings] = None,
    retry_for: float = 300.0,
) -> str:
    """Run one platform task with ``handler`` and save its result, unless it is already finished.

    What a Celery worker calls for each task the stream reader enqueued
    (``xpander_sync.contrib.celery``): the task is reloaded first and skipped when it is
    ``completed``, ``error`` or ``failed`` (a re-delivery of a task that was saved), and reloaded
    again before the save, which is skipped when another run finished it meanwhile (that reload
    is retried through an outage; when it still fails the result is saved: the save goes to the
    same task id). A task found ``executing`` is run (its previous run was killed before saving).

    The task's LLM gateway route (``payload_extension.llm_gateway``, which the stream delivers
    but a reload does not carry) is fetched with :meth:`~xpander_sync.resources.LLMRoutes.gateway_route`
    after the first reload (5 s, one attempt; none on a 404; any other failure is logged and the
    task runs without it). It stays in this process: it is never sent back or put in a message.

    Args:
        task_id: the platform task's id.
        handler: ``handler(task=<Task>) -> Task``, sync or ``async def``.
        configuration: the client settings (API key, URLs).
        settings: the retry backoff (default :class:`WorkerSettings`'s).
        retry_for: seconds the status update, and then the save, are retried through an outage
            (each has its own window: a long handler does not use up the save's).

    Returns:
        ``"skipped"`` (already finished), ``"completed"``, ``"failed"`` (the handler raised: saved
        as ``error``), ``"superseded"`` (finished by another run meanwhile: not saved).

    Raises:
        ModuleException: the task could not be loaded, or the platform refused its status update
            or its save for good (the platform's own error, not ``retryable``: running the task
            again cannot help), or the status update or the save still failed after ``retry_for``
            seconds of an outage (a ``TransportError``, ``retryable``).
        InvalidInputError: ``task_id`` is not a usable id.
    """
    if not isinstance(task_id, str) or not task_id:
        raise InvalidInputError("task_id must be a non-empty string")
    transport = shared_transport(configuration)
    tasks = Tasks(configuration, transport=transport)
    executor = Executor(tasks=tasks, workers=Workers(configuration, transport=transport),
                        settings=settings or WorkerSettings(), stop=StopState(0.0))
    task = tasks.get(task_id)
    if task.status in FINISHED:
        logger.info("task %s is already %s; not run again", task_id, task.status)
        return "skipped"
    _add_gateway_route(task, LLMRoutes(configuration, transport=transport))
    start_deadline = time.monotonic() + retry_for
    save_deadline: List[float] = []  # set once the handler returned

    def past_start_deadline() -> bool:
        return time.monotonic() >= start_deadline

    def past_save_deadline() -> bool:
        return time.monotonic() >= save_deadline[0]

    superseded = False

    def still_unfinished() -> bool:
        nonlocal superseded
        save_deadline.append(time.monotonic() + retry_for)
        current: List[Task] = []
        if executor.until_done(lambda: current.append(tasks.get(task_id)), f"reload task {task_id}",
                               give_up=past_save_deadline):
            superseded = current[-1].status in FINISHED
        else:  # the save goes to the same task id; a re-delivery skips the task once it is finished
            logger.warning("task %s: could not check it before saving; saving the result", task_id)
        return not superseded

    outcome = executor.run_and_save(task, handler, give_up_start=past_start_deadline,
                                    give_up_save=past_save_deadline, may_save=still_unfinished,
                                    raise_refused=True)
    if superseded:
        return "superseded"
    if outcome is None:  # only a retryable failure gets here: a refusal was raised
        raise TransportError(f"task {task_id}: the platform could not be reached to set its status or save its "
                             f"result within {retry_for:g}s")
    return "failed" if outcome else "completed"


def _add_gateway_route(task: Task, routes: LLMRoutes) -> None:
    """Put the task's LLM gateway route on it (``payload_extension.llm_gateway``), as a stream delivery has it."""
    extension = task.payload_extension if isinstance(task.payload_extension, dict) else {}
    if "llm_gateway" in extension or not task.agent_id:
        return
    try:
        route = routes.gateway_route(task.agent_id, task.id)
    except XpanderError as exc:
        logger.warning("task %s: LLM gateway route not fetched (%s); running without it", task.id,
                       scrub(str(exc), (routes.configuration.api_key,)))
        return
    if isinstance(route, dict) and route.get("base_url") and route.get("token"):
        task.payload_extension = {**extension, "llm_gateway": {"base_url": route["base_url"],
                                                                 "token": route["token"]}}
        logger.info("task %s: runs with its LLM gateway route", task.id)

"""``run_platform_task`` (:mod:`xpander_sync.worker._execute`), the code a Celery worker runs for each task:
a refusal of the platform is raised as itself (not retried), the reload before the save survives an outage,
the save gets its own retry window after a long handler, and the task's LLM gateway route is fetched."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest

from xpander_sync import Task, Tasks
from xpander_sync.errors import APIError, NotFoundError, TransportError
from xpander_sync.local import LocalBackend
from xpander_sync.testing import make_agent
from xpander_sync.worker import WorkerSettings
from xpander_sync.worker._execute import run_platform_task

from .conftest import config_for, invoke, wait_task

FAST_SETTINGS = WorkerSettings(backoff_base=0.01, backoff_max=0.02)


class Counting:
    """A handler that counts its runs and keeps the task it was given."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.calls: List[Task] = []
        self.sleep = sleep

    def __call__(self, task: Task) -> Task:
        self.calls.append(task)
        time.sleep(self.sleep)
        task.result = "done"
        return task


def _refuse_saves(monkeypatch: pytest.MonkeyPatch, status: int, times: int = 10**6) -> List[int]:
    refused: List[int] = []
    original = Tasks.save

    def save(self: Tasks, task: Task, **kwargs: Any) -> Task:
        if task.status != "executing" and len(refused) < times:  # the result's save, not the status update
            refused.append(status)
            raise APIError(status, "refused by the test", method="PATCH", route=f"/agent-execution/{task.id}/update")
        return original(self, task, **kwargs)

    monkeypatch.setattr(Tasks, "save", save)
    return refused


def test_a_refused_save_is_raised_as_itself_not_as_a_retryable_error(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Finding 1: a 422 on the save used to come out as a retryable TransportError: Celery (max_retries=None)
    re-ran the handler forever. The platform's own error, not retryable, is raised instead."""
    config = config_for(backend)
    task_id = invoke(config, "refused")
    refused = _refuse_saves(monkeypatch, 422)
    handler = Counting()

    with pytest.raises(APIError) as raised:
        run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS, retry_for=5)

    assert raised.value.status_code == 422 and raised.value.retryable is False
    assert not isinstance(raised.value, TransportError)
    assert len(handler.calls) == 1 and refused == [422]  # run once, the save tried once (a refusal is final)
    assert f"save task {task_id} failed" in caplog.text


def test_a_refused_status_update_is_raised_before_the_handler_runs(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_for(backend)
    task_id = invoke(config, "gone")

    def set_status(self: Task, *args: Any, **kwargs: Any) -> Task:
        raise NotFoundError(404, "Task not found", method="PATCH", route="/x")

    monkeypatch.setattr(Task, "set_status", set_status)
    handler = Counting()
    with pytest.raises(NotFoundError) as raised:
        run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS, retry_for=5)
    assert raised.value.retryable is False and handler.calls == []


def test_an_outage_past_the_deadline_stays_retryable(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for(backend)
    task_id = invoke(config, "outage")
    refused = _refuse_saves(monkeypatch, 503)
    with pytest.raises(TransportError) as raised:
        run_platform_task(task_id, Counting(), configuration=config, settings=FAST_SETTINGS, retry_for=0.1)
    assert raised.value.retryable is True and len(refused) >= 2  # retried until the deadline


def test_the_save_has_its_own_retry_window_after_a_long_handler(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The save's window starts when the handler returns: a handler longer than ``retry_for`` does not leave
    the save a single attempt (a failed one would have Celery run the handler again)."""
    config = config_for(backend)
    task_id = invoke(config, "long")
    refused = _refuse_saves(monkeypatch, 503, times=1)
    handler = Counting(sleep=0.3)
    assert run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS,
                             retry_for=0.2) == "completed"
    assert refused == [503] and len(handler.calls) == 1
    assert wait_task(backend, task_id)["result"] == "done"


@pytest.mark.parametrize("failure", [TransportError("connection reset"), APIError(503, "busy", method="GET"),
                                     NotFoundError(404, "gone for a moment", method="GET")])
def test_a_failed_reload_before_the_save_does_not_rerun_the_handler(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, failure: Exception,
) -> None:
    """Finding 2: the reload just before the save had no error handling: a brief outage there raised out of
    the run, Celery retried, and the handler ran a second time though the first had finished."""
    config = config_for(backend)
    task_id = invoke(config, "reload")
    original = Tasks.get
    gets: List[str] = []

    def get(self: Tasks, wanted: str, *args: Any, **kwargs: Any) -> Task:
        gets.append(wanted)
        if len(gets) == 2:  # the first reload before the save
            raise failure
        return original(self, wanted, *args, **kwargs)

    monkeypatch.setattr(Tasks, "get", get)
    handler = Counting()
    assert run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS,
                             retry_for=5) == "completed"
    assert len(handler.calls) == 1
    stored = wait_task(backend, task_id)
    assert stored["status"] == "completed" and stored["result"] == "done"


def test_a_task_finished_meanwhile_is_not_saved_again(backend: LocalBackend) -> None:
    config = config_for(backend)
    task_id = invoke(config, "twice")

    def finishes_it_elsewhere(task: Task) -> Task:
        Tasks(config).get(task_id).set_status("completed", "the other run")
        task.result = "this run"
        return task

    assert run_platform_task(task_id, finishes_it_elsewhere, configuration=config,
                             settings=FAST_SETTINGS) == "superseded"
    assert wait_task(backend, task_id)["result"] == "the other run"


def test_the_task_gets_its_llm_gateway_route(backend: LocalBackend) -> None:
    """Finding 3: the stream announces ``supports_llm_gateway``, but a Celery worker reloads the task by id and
    the reload has no ``payload_extension.llm_gateway``: the route is fetched from the platform instead."""
    backend.add_agent(make_agent("agt-gw", _local_llm_gateway=True))
    config = config_for(backend)
    from xpander_sync import Backend

    task_id = Backend(config).invoke_agent(agent_id="agt-gw", prompt="routed").id
    handler = Counting()
    assert run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS) == "completed"

    (seen,) = handler.calls
    extension: Dict[str, Any] = seen.payload_extension or {}
    assert extension.get("llm_gateway") == {"base_url": backend.llm_proxy_url("openai"),
                                            "token": f"local-gateway-{task_id}"}
    stored = wait_task(backend, task_id)
    assert "local-gateway-" not in str(stored.get("payload_extension"))  # never sent back
    assert any(r["path"] == f"/agents/agt-gw/llm-gateway-route/{task_id}" for r in backend.requests_log)


def test_a_task_without_a_gateway_route_runs_as_is(backend: LocalBackend) -> None:
    config = config_for(backend)
    task_id = invoke(config, "direct")  # agt-openai has no route: 404
    handler = Counting()
    assert run_platform_task(task_id, handler, configuration=config, settings=FAST_SETTINGS) == "completed"
    assert "llm_gateway" not in ((handler.calls[0].payload_extension) or {})

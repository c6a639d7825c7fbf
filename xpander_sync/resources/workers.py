"""``Workers``: the platform routes of the ``@on_task`` worker, and the metrics body it sends.

* ``GET {events_root}/events/{agent_id}/``: the agent's event stream (server-sent events);
* ``POST {events_root}/events/{worker_id}?type=worker&agent_id=...``: the worker's own events
  (``worker-heartbeat``, ``worker-capacity-update``);
* ``POST /agents-metrics/{agent_id}/execution``: a finished task's execution metrics.

``events_root`` (:attr:`Configuration.events_root <xpander_sync.Configuration.events_root>`) is
the agent controller's absolute URL, outside the REST root. Task status updates and reloads
go through :class:`~xpander_sync.Tasks`.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any, Dict

import requests

from .._async import async_twin
from .._converter import unstructure
from ..errors import InvalidInputError
from ..models.task import Task
from ._base import Resource, check_id, route

#: Read timeout (seconds) of a worker event POST (heartbeat, capacity), as the official SDK.
EVENT_POST_TIMEOUT = 10.0


def build_metrics_body(task: Task) -> Dict[str, Any]:
    """The ``ExecutionMetricsReport`` of a finished task (``POST /agents-metrics/{agent_id}/execution``).

    The keys and constants are the reference's; ``duration`` is the task's measured
    duration (upstream always sends 0.0) and ``api_calls_made`` its ``used_tools`` (empty
    for an orchestration task that returns metrics, as upstream).

    Args:
        task: the finished task; ``task.tokens`` must be set.

    Returns:
        The JSON body of the metrics report.

    Raises:
        InvalidInputError: the task has no ``tokens``.
    """
    if task.tokens is None:
        raise InvalidInputError("task.tokens must be set to report metrics")
    calls = [] if (task.is_orchestration and task.return_metrics) else list(task.used_tools or [])
    return {
        "execution_id": task.id,
        "source": task.source,
        "sub_executions": list(task.sub_executions or []),
        "memory_thread_id": task.id,
        "task": task.input.text or "",
        "triggered_by": "N/A",
        "skills": [],
        "status": str(task.status),
        "internal_status": task.internal_status,
        "duration": float(task.duration or 0.0),
        "ai_model": "xpander",
        "worker": None,
        "ai_employee_id": None,
        "api_calls_made": calls,
        "result": task.result,
        "llm_tokens": {
            "inner": {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0},
            "worker": unstructure(task.tokens),
        },
    }


class Workers(Resource):
    """What a worker says to the platform: its event stream, heartbeats, capacity and metrics.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. The events routes need its ``organization_id``.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def stream_url(self, agent_id: str) -> str:
        """The URL of an agent's event stream (``GET {events_root}/events/{agent_id}/``), without its query.

        Args:
            agent_id: the agent whose tasks the stream delivers.

        Returns:
            The absolute URL.

        Raises:
            InvalidInputError: a bad ``agent_id``.
            ConfigurationError: no organization id is set.
        """
        return self.configuration.events_root + route("/events/{agent_id}/", agent_id=agent_id)

    def open_stream(self, agent_id: str, *, environment: str, idle_timeout: float) -> requests.Response:
        """Open the agent's event stream; the platform registers a worker on it.

        One attempt, not retried (the worker reconnects with its own backoff) and not
        redirected (a redirect would carry ``x-api-key`` elsewhere).

        Args:
            agent_id: the agent whose tasks to receive.
            environment: ``"local"`` or ``"xpander"``.
            idle_timeout: seconds without a byte after which a read fails (the platform
                sends keep-alive comments).

        Returns:
            The open streaming response, of any status: the caller checks it, reads
            ``response.raw`` and closes it.

        Raises:
            InvalidInputError: a bad ``agent_id``.
            ConfigurationError: no organization id is set.
            TransportError: the connection failed.
        """
        return self._transport.stream(
            "GET", "", url=self.stream_url(agent_id),
            params={"environment": environment, "supports_llm_gateway": "true"},
            headers={"Accept": "text/event-stream", "Cache-Control": "no-store"},
            timeout=(self.configuration.connect_timeout, idle_timeout),
        )

    def heartbeat(self, worker_id: str, agent_id: str) -> None:
        """Send ``worker-heartbeat`` (the local time, ISO format without a zone, as upstream).

        Args:
            worker_id: the id the platform gave the worker when it registered.
            agent_id: the worker's agent.

        Raises:
            InvalidInputError: a bad ``worker_id``.
            ConfigurationError: no organization id is set.
            ModuleException: the platform refused it (e.g. 404 for an unknown worker) or could
                not be reached.
        """
        self._post_event(worker_id, agent_id, "worker-heartbeat", _dt.datetime.now().isoformat())

    def update_capacity(self, worker_id: str, agent_id: str, *, is_busy: bool) -> None:
        """Send ``worker-capacity-update``: whether the worker can take another task.

        Args:
            worker_id: the id the platform gave the worker when it registered.
            agent_id: the worker's agent.
            is_busy: ``True`` when every slot is taken.

        Raises:
            InvalidInputError: a bad ``worker_id``.
            ConfigurationError: no organization id is set.
            ModuleException: the platform refused it or could not be reached.
        """
        self._post_event(worker_id, agent_id, "worker-capacity-update", {"is_busy": bool(is_busy)})

    def _post_event(self, worker_id: str, agent_id: str, event: str, data: Any) -> None:
        url = self.configuration.events_root + route("/events/{worker_id}", worker_id=worker_id)
        body = {"id": str(uuid.uuid4()), "event": event, "data": data}
        self._transport.request(
            "POST", "", url=url, params={"type": "worker", "agent_id": agent_id}, json=body,
            repeatable=True,  # the event carries its own id
            timeout=(self.configuration.connect_timeout, EVENT_POST_TIMEOUT),
        )

    def report_metrics(self, task: Task) -> None:
        """Report a finished task's metrics (``POST /agents-metrics/{agent_id}/execution``).

        Args:
            task: the finished task; ``task.tokens`` must be set. The body is
                :func:`build_metrics_body`'s.

        Raises:
            InvalidInputError: the task has no ``tokens``, or an unusable ``agent_id``.
            ModuleException: the platform refused it or could not be reached.
        """
        check_id("task.agent_id", task.agent_id)
        path = route("/agents-metrics/{agent_id}/execution", agent_id=task.agent_id)
        self._transport.request("POST", path, json=build_metrics_body(task))

    aopen_stream = async_twin(open_stream)
    aheartbeat = async_twin(heartbeat)
    aupdate_capacity = async_twin(update_capacity)
    areport_metrics = async_twin(report_metrics)

"""``LLMRoutes``: where a task's model requests go (its custom LLM endpoint, the platform's LLM gateway)."""

from __future__ import annotations

from typing import Any

from .._async import async_twin
from .._retry import RetryPolicy
from ..errors import NotFoundError
from ._base import Resource, route

#: The official SDK's time limits for the two calls (seconds).
CUSTOM_ENDPOINT_TIMEOUT = 8.0
GATEWAY_ROUTE_TIMEOUT = 5.0
_NO_RETRY = RetryPolicy(max_retries=0)


class LLMRoutes(Resource):
    """A task's LLM routing.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def custom_endpoint(self, agent_id: str, task_id: str, *, timeout: float = CUSTOM_ENDPOINT_TIMEOUT) -> Any:
        """The task's custom LLM endpoint (``POST /agents/{agent_id}/custom-llm-endpoint/{task_id}``, no body).

        One attempt, at most ``timeout`` seconds (the caller fails open).

        Args:
            agent_id: the agent running the task.
            task_id: the task.
            timeout: seconds to connect and to wait for the answer.

        Returns:
            The decoded answer: ``{"provider": ..., "token": ...}`` when the task has one.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``task_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/agents/{agent_id}/custom-llm-endpoint/{task_id}", agent_id=agent_id, task_id=task_id)
        return self._transport.request("POST", path, timeout=(timeout, timeout), retry=_NO_RETRY).data

    def gateway_route(self, agent_id: str, task_id: str, *, timeout: float = GATEWAY_ROUTE_TIMEOUT) -> Any:
        """The task's LLM gateway route (``POST /agents/{agent_id}/llm-gateway-route/{task_id}``, no body).

        One attempt, at most ``timeout`` seconds. A task without a route answers 404: ``None``.

        Args:
            agent_id: the agent running the task.
            task_id: the task.
            timeout: seconds to connect and to wait for the answer.

        Returns:
            The decoded answer (``{"base_url": ..., "token": ...}``), or ``None`` on a 404.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``task_id``.
            ModuleException: the platform refused the call (other than 404) or could not be reached.
        """
        path = route("/agents/{agent_id}/llm-gateway-route/{task_id}", agent_id=agent_id, task_id=task_id)
        try:
            return self._transport.request("POST", path, timeout=(timeout, timeout), retry=_NO_RETRY).data
        except NotFoundError:
            return None

    def proxy_url(self, provider: str) -> str:
        """The platform's LLM proxy for a provider: ``{configuration.base_url}/llm-proxy/{provider}``.

        The plain base URL (no organization segment), as the official SDK builds it. Pure.

        Args:
            provider: the provider the custom endpoint named.

        Returns:
            The base URL a model client sends its requests to.

        Raises:
            InvalidInputError: a ``provider`` that cannot be one path segment.
        """
        return self.configuration.base_url.rstrip("/") + route("/llm-proxy/{provider}", provider=provider)

    acustom_endpoint = async_twin(custom_endpoint)
    agateway_route = async_twin(gateway_route)

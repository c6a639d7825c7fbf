"""The LLM gateway and the custom LLM endpoint: a task's model requests routed through the platform.

A task's ``payload_extension`` may route its model (reference sections 2.1, 2.2 and 3.3.6):

* ``llm_custom_provider`` (truthy) and the task has an id: ``LLMRoutes.custom_endpoint`` (8 s,
  one attempt, fail-open: any error or an answer without a truthy ``provider`` and ``token``
  builds as usual), cached per platform client and task for 60 s. The model then talks to
  the platform's LLM proxy for the endpoint's provider (``LLMRoutes.proxy_url``) with the
  endpoint's token as its key (the task user's OIDC LLM token, when the agent uses one, stays
  the key) and the header ``x-xpander-execution-id: <task id>``.
* ``llm_gateway`` = ``{"base_url", "token"}`` (what the platform puts on a task it delivers to
  a worker that announced ``supports_llm_gateway``): the model goes through the gateway, unless
  it stays direct: the agent has its own ``llm_api_base``, its model uses the OIDC LLM token,
  the agent stores its own credential, or the task has a custom provider. Only three wires go
  through: ``anthropic``, ``amazon_bedrock`` with an ``anthropic.`` model (on the Anthropic
  wire), and ``openai`` (``{base_url}/v1``; an ``ft:`` model is named ``openai::ft:...``).
  The key is the gateway's token, also sent as ``x-xpander-api-key``, with
  ``x-xpander-execution-id: <task id>``. No request: the route came with the task.

Tokens are :class:`~xpander_sync.Secret` values; headers are masked in every ``repr``. The
official SDK also fetches ``LLMRoutes.gateway_route`` for runs of its ``/invoke`` HTTP server,
which xpander-sync does not have; a Celery worker fetches it (``worker.run_platform_task``), since
its task comes by id, without the stream's route. This module never calls it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import attrs

from ..._redact import Secret, mask_header_values
from ...errors import ModuleException, XpanderError
from ...models.agent import Agent
from ...models.task import Task
from ...resources import LLMRoutes
from .._llm import ModelSpec, merge_headers, oidc_llm_token
from ._base import Feature

logger = logging.getLogger(__name__)

#: The header carrying the task id to the platform's LLM proxy.
EXECUTION_HEADER = "x-xpander-execution-id"
#: The header carrying the gateway's token.
GATEWAY_KEY_HEADER = "x-xpander-api-key"
_NONE: Tuple[str, ...] = ()  # a cached "this task has no usable endpoint"


def routing(task: Optional[Task]) -> Dict[str, Any]:
    """The task's ``payload_extension`` when it is a dict, else ``{}`` (pure).

    Args:
        task: the task, or ``None``.

    Returns:
        The extension (not a copy), or ``{}``.
    """
    extension = task.payload_extension if task is not None else None
    return extension if isinstance(extension, dict) else {}


def gateway_route(task: Optional[Task]) -> Optional[Tuple[str, str]]:
    """The task's ``llm_gateway`` route (pure).

    Args:
        task: the task, or ``None``.

    Returns:
        ``(base_url without a trailing slash, token)``, or ``None`` without a complete route.
    """
    route = routing(task).get("llm_gateway")
    if not isinstance(route, dict):
        return None
    base, token = route.get("base_url"), route.get("token")
    if not isinstance(base, str) or not base.strip() or not isinstance(token, str) or not token.strip():
        return None
    return base.strip().rstrip("/"), token.strip()


def stays_direct(agent: Agent, task: Optional[Task]) -> bool:
    """Whether the model ignores the gateway (the reference's rule; pure).

    Args:
        agent: the agent (its ``llm_api_base``, OIDC LLM settings, stored credential).
        task: the task (its user's OIDC token, its custom provider).

    Returns:
        ``True`` when the model keeps its own endpoint.
    """
    own_credential = agent.llm_credentials is not None and bool(agent.llm_credentials.value)
    return bool(
        (agent.llm_api_base or "").strip()
        or oidc_llm_token(agent, task) is not None
        or own_credential
        or routing(task).get("llm_custom_provider")
    )


def via_custom_endpoint(spec: ModelSpec, proxy_url: str, token: str, task_id: str, keep_key: bool) -> ModelSpec:
    """``spec`` sent to the custom endpoint's proxy (pure).

    Args:
        spec: the resolved model.
        proxy_url: the platform's LLM proxy for the endpoint's provider (``LLMRoutes.proxy_url``).
        token: the endpoint's token (the key).
        task_id: the task (``x-xpander-execution-id``).
        keep_key: keep ``spec``'s key (the task user's OIDC LLM token comes first).

    Returns:
        A new :class:`ModelSpec`.
    """
    headers = mask_header_values(merge_headers(spec.extra_headers, {EXECUTION_HEADER: task_id}))
    return attrs.evolve(
        spec, base_url=proxy_url,
        api_key=spec.api_key if keep_key else Secret(token), extra_headers=headers, base_url_is_custom=True,
    )


def via_gateway(spec: ModelSpec, root: str, token: str, task_id: Optional[str]) -> Optional[ModelSpec]:
    """``spec`` sent through the LLM gateway at ``root`` (pure).

    Args:
        spec: the resolved model.
        root: the gateway's base URL.
        token: the gateway's token (the key, and ``x-xpander-api-key``).
        task_id: the task (``x-xpander-execution-id``), if it has an id.

    Returns:
        A new :class:`ModelSpec`, or ``None`` when the gateway has no wire for the provider.
    """
    provider, model_id = spec.provider, spec.model_id
    if provider == "openai":
        base = f"{root}/v1"
        if model_id.startswith("ft:"):
            model_id = f"openai::{model_id}"
    elif provider == "anthropic" or (provider == "amazon_bedrock" and "anthropic." in model_id):
        provider, base = "anthropic", root
    else:
        return None
    layers: Dict[str, str] = {GATEWAY_KEY_HEADER: token}
    if task_id:
        layers[EXECUTION_HEADER] = task_id
    headers = mask_header_values(merge_headers(spec.extra_headers, layers))
    return attrs.evolve(spec, provider=provider, model_id=model_id, base_url=base, api_key=Secret(token),
                        extra_headers=headers, base_url_is_custom=True)


class Gateway(Feature):
    """Routes the model through the task's custom LLM endpoint or the platform's LLM gateway."""

    name = "gateway"

    def model_spec(self, agent: Agent, spec: ModelSpec) -> ModelSpec:
        """``spec`` routed as the module docstring says (unchanged, with no request, for other tasks).

        Args:
            agent: the agent whose model is built.
            spec: its resolved model.

        Returns:
            The (possibly routed) :class:`ModelSpec`.
        """
        task = self.task
        if task is None:
            return spec
        if routing(task).get("llm_custom_provider"):
            endpoint = self.custom_endpoint(agent, task) if task.id else None
            if endpoint is None:
                return spec
            proxy_url, token = endpoint
            keep = oidc_llm_token(agent, task) is not None
            return via_custom_endpoint(spec, proxy_url, token.reveal(), task.id, keep)
        route = gateway_route(task)
        if route is None or stays_direct(agent, task):
            return spec
        routed = via_gateway(spec, route[0], route[1], task.id)
        return spec if routed is None else routed

    def custom_endpoint(self, agent: Agent, task: Task) -> Optional[Tuple[str, Secret]]:
        """The task's custom LLM endpoint (``LLMRoutes.custom_endpoint``, cached 60 s per task).

        Args:
            agent: the agent being built (the route's agent).
            task: the task (with an id).

        Returns:
            ``(proxy URL, token)``, or ``None`` when the call failed or the answer is unusable (fail-open).
        """
        transport = self.context.transport
        routes = LLMRoutes(transport.configuration, transport=transport)

        def fetch() -> Any:
            answer = routes.custom_endpoint(agent.id, task.id)
            if isinstance(answer, dict):
                provider, token = answer.get("provider"), answer.get("token")
                if isinstance(provider, str) and provider.strip() and isinstance(token, str) and token.strip():
                    return (routes.proxy_url(provider.strip()), Secret(token.strip()))
            logger.debug("task %s: the custom LLM endpoint answer has no provider and token; building as usual",
                         task.id)
            return _NONE

        try:
            value = transport.caches.llm_endpoints.get_or_load(task.id, fetch)
        except (ModuleException, XpanderError) as exc:
            logger.warning("task %s: custom LLM endpoint unavailable (%s); building as usual", task.id, exc)
            return None
        return None if value == _NONE else value

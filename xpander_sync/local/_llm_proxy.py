"""The platform's LLM proxy on the local backend: a scripted model mounted under ``/llm-proxy/{provider}/...``.

On the platform, an agent routed through its custom LLM endpoint sends its model requests to
``{base_url}/llm-proxy/{provider}``, with the endpoint's token as the key (the reference's section 2.2).
The local backend serves the same route from a :class:`~xpander_sync._scripted_model.ScriptedModel`: each
request is handed to :meth:`ScriptedModel.handle` with its path, headers and raw body, and its answer (the
provider's own JSON or SSE stream, chosen by the path's suffix) goes back as it is. Nothing leaves the
machine, and no key from the environment is needed.

While a model is mounted (and ``point_agents`` is on), every agent the backend serves without an
``llm_api_base`` of its own is served with ``llm_api_base`` set to the proxy of its provider, so a client
builds its model against the proxy through the agent's ordinary settings: the key it sends then follows the
client's precedence for a custom endpoint (the agent's stored key, else the ``"EMPTY"`` placeholder; an
environment key never goes there). An agent whose JSON sets ``llm_api_base`` keeps it.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Optional
from urllib.parse import quote, urlencode

from .._scripted_model import ScriptedModel
from ._routing import HTTPError, Request

#: The route prefix of the platform's LLM proxy.
PROXY_PREFIX = "/llm-proxy"
#: The route served (``{rest:path}`` is the provider API's own path, e.g. ``v1/messages``).
PROXY_ROUTE = PROXY_PREFIX + "/{provider}/{rest:path}"


class LLMProxy:
    """The mounted scripted model (if any) and the agents it is offered to.

    Args:
        base_url: Returns the backend's base URL (known once it is bound).
    """

    def __init__(self, base_url: Callable[[], str]) -> None:
        self._base_url = base_url
        self._lock = threading.Lock()
        self._model: Optional[ScriptedModel] = None
        self._point_agents = True

    @property
    def model(self) -> Optional[ScriptedModel]:
        """The mounted model, or ``None``."""
        with self._lock:
            return self._model

    def mount(self, model: Optional[ScriptedModel], *, point_agents: bool = True) -> None:
        """Serve ``model`` under the proxy route (``None`` unmounts it).

        Args:
            model: The scripted model (it need not be started: only its :meth:`~ScriptedModel.handle` is used).
            point_agents: Serve agents without an ``llm_api_base`` with the proxy as theirs.
        """
        with self._lock:
            self._model = model
            self._point_agents = point_agents

    def base_url(self, provider: str) -> str:
        """The proxy's base URL for ``provider`` (what an agent's ``llm_api_base`` is set to).

        Args:
            provider: The provider, as the agent names it (``openai``, ``anthropic``, ...).

        Returns:
            ``{backend url}/llm-proxy/{provider}``.
        """
        name = (provider or "openai").strip().lower().replace("-", "_") or "openai"
        return f"{self._base_url()}{PROXY_PREFIX}/{quote(name, safe='')}"

    def point(self, agent: dict[str, Any]) -> dict[str, Any]:
        """The agent JSON to serve: pointed at the proxy when a model is mounted and it has no endpoint.

        Args:
            agent: The agent JSON about to be served (not modified).

        Returns:
            ``agent`` itself, or a copy with ``llm_api_base`` set to :meth:`base_url` of its provider.
        """
        with self._lock:
            pointing = self._model is not None and self._point_agents
        if not pointing or (agent.get("llm_api_base") or "").strip():
            return agent
        pointed = copy.copy(agent)
        pointed["llm_api_base"] = self.base_url(str(agent.get("model_provider") or "openai"))
        return pointed

    def route(self, req: Request) -> tuple[int, Any]:
        """``POST /llm-proxy/{provider}/...``: the mounted model answers, in the provider's own format.

        Raises:
            HTTPError: 503 when no model is mounted.
        """
        model = self.model
        if model is None:
            raise HTTPError(503, "no LLM is mounted on this local backend: call LocalBackend.mount_llm(model)")
        target = req.path + ("?" + urlencode(req.query) if req.query else "")
        response = model.handle(req.method, target, req.headers, req.raw)
        return response.status, response

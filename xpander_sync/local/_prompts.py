"""The platform's prompt routes: an agent's dynamic prompt and its channel presence.

* ``POST /tools/{agent_id}/dynamic-prompt`` answers ``{"text": ...}``: the agent's
  ``_local_prompts.dynamic_prompt`` (the platform runs the agent's ``dynamic_prompt_code``; the
  local backend serves the text that code would produce), ``""`` when there is none.
* ``POST /tools/{agent_id}/channel-presence`` answers ``{"text": ...}``: the agent's
  ``_local_prompts.channel_presence``, ``""`` when there is none.

Both answer 404 for an unknown agent. ``_local_prompts`` is a private key of the agent JSON
(stripped from every agent response, like every ``_local*`` key). Calls are counted per route
and agent (:meth:`PromptRoutes.calls`), for tests that check a warm build asks nothing.
"""

from __future__ import annotations

import threading
from typing import Any

from ._agents import AgentCatalog
from ._routing import Request

#: The private agent key holding the texts served here.
LOCAL_PROMPTS_KEY = "_local_prompts"


class PromptRoutes:
    """Serves the prompt routes from the agents' ``_local_prompts`` key.

    Args:
        agents: The agents served.
    """

    def __init__(self, agents: AgentCatalog) -> None:
        self._agents = agents
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}

    def _text(self, req: Request, key: str) -> tuple[int, Any]:
        agent = self._agents.get(req.params["agent_id"])  # 404 for an unknown agent
        with self._lock:
            counted = (key, agent["id"])
            self._calls[counted] = self._calls.get(counted, 0) + 1
        texts = agent.get(LOCAL_PROMPTS_KEY)
        value = texts.get(key) if isinstance(texts, dict) else None
        return 200, {"text": value if isinstance(value, str) else ""}

    def dynamic_prompt(self, req: Request) -> tuple[int, Any]:
        """``POST /tools/{agent_id}/dynamic-prompt``: the agent's dynamic prompt text.

        Args:
            req: The request (``agent_id`` in its params).

        Returns:
            ``(200, {"text": ...})``.
        """
        return self._text(req, "dynamic_prompt")

    def channel_presence(self, req: Request) -> tuple[int, Any]:
        """``POST /tools/{agent_id}/channel-presence``: the agent's channel presence text.

        Args:
            req: The request (``agent_id`` in its params).

        Returns:
            ``(200, {"text": ...})``.
        """
        return self._text(req, "channel_presence")

    def calls(self) -> dict[tuple[str, str], int]:
        """How many times each ``(route key, agent id)`` was asked.

        Returns:
            A copy of the counters (route keys ``dynamic_prompt`` and ``channel_presence``).
        """
        with self._lock:
            return dict(self._calls)

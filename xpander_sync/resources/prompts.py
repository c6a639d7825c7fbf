"""``Prompts``: the prompt text the platform computes for an agent (its dynamic prompt, its channel presence).

Both routes live under ``/tools/{agent_id}/`` on the wire, take no body and answer
``{"text": "..."}``. ``get_args`` uses them through
:mod:`xpander_sync.frameworks.features.prompts`, which decides when to ask and fails open.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from .._async import async_twin
from .._retry import RetryPolicy
from ._base import Resource, route

#: Read timeout (seconds) of the dynamic-prompt and channel-presence calls, as the official SDK.
PROMPT_TIMEOUT = 8.0
#: One attempt: the build fails open rather than wait out retries.
_ONCE = RetryPolicy(max_retries=0)

_PRESENCE_TAG = re.compile(r"</?channel_presence\b[^>]*>", re.IGNORECASE)


def text_of(data: Any) -> str:
    """The ``text`` of a prompt answer; ``""`` for anything but ``{"text": <string>}``.

    Args:
        data: the decoded JSON answer.

    Returns:
        The text, stripped.
    """
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"]).strip()
    return ""


def strip_presence_tags(text: str) -> str:
    """``text`` without any ``<channel_presence ...>`` / ``</channel_presence>`` tag, stripped.

    The platform may wrap the presence text in the tags the prompt block uses itself; they
    are removed so the block is never nested.

    Args:
        text: the presence text from the platform.

    Returns:
        The text without the tags.
    """
    return _PRESENCE_TAG.sub("", text).strip()


class Prompts(Resource):
    """Prompt text computed by the platform for one agent.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def _timeout(self) -> Tuple[float, float]:
        return (min(PROMPT_TIMEOUT, self.configuration.connect_timeout),
                min(PROMPT_TIMEOUT, self.configuration.read_timeout))

    def dynamic_prompt(self, agent_id: str, *, timeout: Optional[Tuple[float, float]] = None) -> str:
        """The agent's dynamic prompt, run on the platform (``POST /tools/{agent_id}/dynamic-prompt``, no body).

        Args:
            agent_id: the agent.
            timeout: ``(connect, read)`` seconds; default: 8 s each (or the configured timeouts when shorter);
                one attempt (the caller fails open, as the official SDK does after 8 s).

        Returns:
            The text (``""`` when the answer holds none).

        Raises:
            InvalidInputError: ``agent_id`` is empty or contains ``/``, ``?`` or ``#``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/tools/{agent_id}/dynamic-prompt", agent_id=agent_id)
        return text_of(self._transport.request("POST", path, timeout=timeout or self._timeout(), retry=_ONCE).data)

    def channel_presence(self, agent_id: str, *, timeout: Optional[Tuple[float, float]] = None) -> str:
        """Where the agent is present (channels), as prompt text (``POST /tools/{agent_id}/channel-presence``).

        Args:
            agent_id: the agent.
            timeout: ``(connect, read)`` seconds; default: 8 s each (or the configured timeouts when shorter);
                one attempt (the caller fails open, as the official SDK does after 8 s).

        Returns:
            The text with any ``<channel_presence>`` tags removed (``""`` when there is none).

        Raises:
            InvalidInputError: ``agent_id`` is empty or contains ``/``, ``?`` or ``#``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/tools/{agent_id}/channel-presence", agent_id=agent_id)
        data = self._transport.request("POST", path, timeout=timeout or self._timeout(), retry=_ONCE).data
        return strip_presence_tags(text_of(data))

    adynamic_prompt = async_twin(dynamic_prompt)
    achannel_presence = async_twin(channel_presence)

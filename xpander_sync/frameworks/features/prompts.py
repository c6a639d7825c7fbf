"""Prompt text the platform adds to an agent's instructions: dynamic prompt, environment context, channel presence.

Three features, applied in this order to every agent of a build (leader and members), and
to none of them when the task carries an ``instructions_override`` (the override replaces
the agent's own prompt, and the official SDK then asks the platform for neither text):

* :class:`DynamicPrompt` (``instructions.dynamic_prompt_enabled`` and non-blank
  ``dynamic_prompt_code``): ``Prompts.dynamic_prompt`` runs the code on the platform; its text
  goes before or after the instructions (``dynamic_prompt_position``), separated by a blank line.
* :class:`EnvironmentContext` (``runtime_environment.context_layers``): an
  ``<environment_context>`` block, one ``### name`` section per layer, put first. No request.
* :class:`ChannelPresence` (every agent): ``Prompts.channel_presence``; a non-blank text (its
  own ``<channel_presence>`` tags removed) is appended in a ``<channel_presence>`` block.

Both requests take 8 s at most and fail open (the build goes on without the text: a
warning for the dynamic prompt, a debug line for the presence). The official SDK asks for
both on every build; here each answer (an empty one after a failure included) is kept in
the transport's ``prompts`` cache with the agent's TTL (``agent_cache_ttl``), keyed per
agent, so a warm ``get_args`` sends no request at all.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Hashable, List, Optional

from ...errors import XpanderError
from ...models.agent import Agent
from ...resources.prompts import Prompts
from ._base import Feature, join_blocks

logger = logging.getLogger(__name__)

#: The note of the ``<environment_context>`` block.
ENVIRONMENT_NOTE = "Facts about the environment you run in, maintained by your owner on the platform"
#: The note of the ``<channel_presence>`` block.
PRESENCE_NOTE = "The channels and conversations you are part of, as the platform reports them"


def place_dynamic_prompt(text: str, dynamic: str, position: Optional[str]) -> str:
    """``text`` with ``dynamic`` put before it (``position == "before"``) or after it, a blank line between.

    Args:
        text: the instructions so far.
        dynamic: the dynamic prompt's text (nothing changes when blank).
        position: ``"before"`` or ``"after"`` (anything else counts as ``"after"``, the default).

    Returns:
        The combined instructions.
    """
    dynamic = dynamic.strip()
    if not dynamic:
        return text
    if not text.strip():
        return dynamic
    if (position or "").strip().lower() == "before":
        return f"{dynamic}\n\n{text}"
    return f"{text}\n\n{dynamic}"


def context_layers(agent: Agent) -> List[Dict[str, str]]:
    """The agent's environment context layers as ``[{"name", "content"}]``, blank ones left out.

    ``runtime_environment.context_layers`` is a list of objects with a ``name`` and a
    ``content`` (``text`` or ``value`` also read), or an object mapping each name to its text.

    Args:
        agent: the agent.

    Returns:
        The layers, in their order.
    """
    env = agent.runtime_environment if isinstance(agent.runtime_environment, dict) else {}
    raw = env.get("context_layers")
    items: List[Any]
    if isinstance(raw, dict):
        items = [{"name": k, "content": v} for k, v in raw.items()]
    elif isinstance(raw, list):
        items = raw
    else:
        return []
    layers = []
    for item in items:
        if not isinstance(item, dict):
            continue
        body = next((str(item[k]) for k in ("content", "text", "value") if isinstance(item.get(k), str)), "")
        if not body.strip():
            continue
        name = str(item["name"]) if isinstance(item.get("name"), str) else ""
        layers.append({"name": name.strip() or "Context", "content": body.strip()})
    return layers


def environment_block(layers: List[Dict[str, str]]) -> str:
    """The ``<environment_context>`` block: one ``### name`` section per layer.

    Args:
        layers: the layers (:func:`context_layers`).

    Returns:
        The block, or ``""`` when there is no layer.
    """
    if not layers:
        return ""
    sections = "\n\n".join(f"### {layer['name']}\n{layer['content']}" for layer in layers)
    return f'<environment_context note="{ENVIRONMENT_NOTE}">\n{sections}\n</environment_context>'


def presence_block(text: str) -> str:
    """The ``<channel_presence>`` block of a presence text.

    Args:
        text: the presence text (tags already removed).

    Returns:
        The block, or ``""`` when the text is blank.
    """
    text = text.strip()
    if not text:
        return ""
    return f'<channel_presence note="{PRESENCE_NOTE}">\n{text}\n</channel_presence>'


class _PlatformText(Feature):
    """A feature whose text comes from the platform: fetched once per agent per build, cached with the agent."""

    def __init__(self, adapter: Any) -> None:
        super().__init__(adapter)
        self._memo: Dict[Hashable, str] = {}

    def overridden(self) -> bool:
        """Whether the task replaces the agents' instructions (the features then add nothing)."""
        task = self.task
        return task is not None and bool(task.instructions_override)

    def fetch(self, key: Hashable, load: Callable[[Prompts], str], what: str, level: int) -> str:
        """The cached text for ``key``, else ``load(resource)``; ``""`` (logged at ``level``) on a failure."""
        if key in self._memo:  # asked twice in one build
            return self._memo[key]
        transport = getattr(self.context, "transport", None)
        if transport is None:  # a context without a platform (test doubles)
            return ""
        def load_or_empty() -> str:  # only on a cold key: a warm build builds no resource
            try:
                return load(Prompts(transport.configuration, transport=transport))
            except XpanderError as exc:
                logger.log(level, "%s unavailable, building without it: %s", what, exc)
                return ""

        self._memo[key] = text = str(transport.caches.prompts.get_or_load(key, load_or_empty))
        return text


class DynamicPrompt(_PlatformText):
    """The agent's dynamic prompt, run on the platform and placed before or after its instructions."""

    name = "dynamic_prompt"

    @staticmethod
    def enabled(agent: Agent) -> bool:
        """Whether ``agent`` has a dynamic prompt.

        Args:
            agent: the agent.

        Returns:
            ``True`` when ``dynamic_prompt_enabled`` is set and ``dynamic_prompt_code`` is not blank.
        """
        settings = agent.instructions
        return bool(settings.dynamic_prompt_enabled and (settings.dynamic_prompt_code or "").strip())

    def text(self, agent: Agent) -> str:
        """The dynamic prompt's text for ``agent`` (one request per agent and TTL).

        Args:
            agent: the agent.

        Returns:
            The text; ``""`` when the agent has none, the task overrides the instructions, or the call failed.
        """
        if self.overridden() or not self.enabled(agent):
            return ""
        return self.fetch(("dynamic-prompt", agent.id, agent.version),
                          lambda r: r.dynamic_prompt(agent.id), f"agent {agent.id}: dynamic prompt", logging.WARNING)

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` with the dynamic prompt placed per ``dynamic_prompt_position``.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (the dynamic prompt applies to every agent).
            text: its instructions so far.

        Returns:
            The instructions with the dynamic prompt.
        """
        del root
        return place_dynamic_prompt(text, self.text(agent), agent.instructions.dynamic_prompt_position)


class EnvironmentContext(Feature):
    """The agent's runtime environment context layers, as a block put before its instructions."""

    name = "environment_context"

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` preceded by the ``<environment_context>`` block (no request).

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (every agent gets its own layers).
            text: its instructions so far.

        Returns:
            The instructions with the block first; ``text`` unchanged when there is no layer or the task
            overrides the instructions.
        """
        del root
        task = self.task
        block = "" if task is not None and task.instructions_override else environment_block(context_layers(agent))
        if not block:
            return text
        return join_blocks(block, text)


class ChannelPresence(_PlatformText):
    """Where the agent is present (its channels), as a block after its instructions."""

    name = "channel_presence"

    def text(self, agent: Agent) -> str:
        """The presence text of ``agent`` (one request per agent and TTL).

        Args:
            agent: the agent.

        Returns:
            The text, tags removed; ``""`` when the task overrides the instructions, the platform has
            none, or the call failed.
        """
        if self.overridden():
            return ""
        return self.fetch(("channel-presence", agent.id), lambda r: r.channel_presence(agent.id),
                          f"agent {agent.id}: channel presence", logging.DEBUG)

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` followed by the ``<channel_presence>`` block, a blank line between.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (members get their own presence).
            text: its instructions so far.

        Returns:
            The instructions with the block last (unchanged when there is no presence text).
        """
        del root
        block = presence_block(self.text(agent))
        if not block:
            return text
        return join_blocks(text, block)

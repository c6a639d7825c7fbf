"""The :class:`Feature` base: one platform setting's effect on a build, for every framework.

A feature is what an agent's owner turns on in the platform (a knowledge base, memories, a
dynamic prompt, ...). It never knows which framework is being built: it changes the
framework-neutral pieces the :class:`~xpander_sync.frameworks._adapter.Adapter` base hands
to every adapter, through these hooks (each a no-op by default):

* :meth:`Feature.instructions`: the agent's instructions text;
* :meth:`Feature.additional_context`: the context block (memories, the plan, ...);
* :meth:`Feature.expected_output`: the expected-output text;
* :meth:`Feature.tools`: extra :class:`~xpander_sync.frameworks._toolspec.ToolSpec` objects;
* :meth:`Feature.filter_tools`: the agent's final tool list (remove or replace tools);
* :meth:`Feature.model_spec`: the resolved model (endpoint, key, headers).

One instance per feature per ``get_args`` build (it may remember what it fetched for the
build); it reaches the platform only through resources bound to ``adapter.context.transport``,
and only when its setting is on: an agent that does not use a feature costs no request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

from ...models.agent import Agent
from ...models.task import Task

if TYPE_CHECKING:  # pragma: no cover
    from .._llm import ModelSpec
    from .._toolspec import ToolSpec


def join_blocks(first: str, second: str, sep: str = "\n\n") -> str:
    """``first`` and ``second`` joined by ``sep``; a blank side is left out (no stray separator).

    Args:
        first: the text that goes first.
        second: the text that goes second.
        sep: what goes between them.

    Returns:
        The joined text.
    """
    if not first.strip():
        return second
    if not second.strip():
        return first
    return f"{first}{sep}{second}"


class Feature:
    """One platform feature, applied to one build.

    Args:
        adapter: the build (its ``context``, ``task``, ``name``).

    Attributes:
        name: the feature's id (``"knowledge"``, ``"memories"``, ...), as docs/frameworks.md names it.
    """

    name: str = ""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    @property
    def context(self) -> Any:
        """The build's :class:`~xpander_sync.frameworks._context.BuildContext`."""
        return self.adapter.context

    @property
    def task(self) -> Optional[Task]:
        """The task being run, or ``None``."""
        return self.adapter.task  # type: ignore[no-any-return]

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """The instructions text of ``agent`` after this feature (default: unchanged)."""
        del agent, root
        return text

    def additional_context(self, agent: Agent, root: bool, text: str) -> str:
        """The additional context of ``agent`` after this feature (default: unchanged)."""
        del agent, root
        return text

    def expected_output(self, agent: Agent, root: bool, text: str) -> str:
        """The expected output of ``agent`` after this feature (default: unchanged)."""
        del agent, root
        return text

    def tools(self, agent: Agent, root: bool) -> List[ToolSpec]:
        """Tools this feature adds to ``agent`` (default: none)."""
        del agent, root
        return []

    def filter_tools(self, agent: Agent, root: bool, specs: List[ToolSpec]) -> List[ToolSpec]:
        """``agent``'s final tool specs after this feature (default: unchanged)."""
        del agent, root
        return specs

    def model_spec(self, agent: Agent, spec: ModelSpec) -> ModelSpec:
        """``agent``'s resolved model after this feature (default: unchanged)."""
        del agent
        return spec

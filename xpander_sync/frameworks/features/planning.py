"""Deep planning: the agent works from an execution plan kept on the platform, item by item.

Deep planning is **active** for a build when the agent has ``deep_planning`` on and the task
has ``deep_planning.enabled``. Then, for the agent the task runs:

* the task is reloaded once (its status route, through :meth:`Tasks.get
  <xpander_sync.resources.Tasks.get>`; an error propagates, as in the official SDK, and is
  not cached), so the plan is the platform's current one. The reloaded plan is kept per task
  id in the transport's caches for ``agent_cache_ttl``, like the agent payload (``0``: every
  build reloads): a rebuild of the same task within that time sees the plan of the first
  build and asks nothing;
* the planning instructions are appended to its instructions (another text when the plan
  has already started: carry on with it rather than write a new one);
* ``"\\nAll planned tasks completed and marked as done."`` is appended to its expected output;
* the plan (``id`` and ``title`` of each item, or a line saying there is none yet) is put
  first in its additional context.

The plan tools (:data:`PLAN_TOOLS`, which the platform lists among the agent's tools) are
removed from every agent of the build unless deep planning is active or the task sets
``must_deep_plan``; with ``must_deep_plan`` alone, an agent that has plan tools gets the
planning instructions too (no reload). Nothing here costs a request unless deep planning is
active.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

from ...models.agent import Agent
from ...models.task import DeepPlanning
from ...resources.tasks import Tasks
from .._toolspec import ToolSpec
from ._base import Feature, join_blocks

#: The platform's plan tools: kept only when deep planning is active or the task must plan.
PLAN_TOOLS = frozenset({
    "xpcreate_agent_plan",
    "xpget_agent_plan",
    "xpadd_new_agent_plan_item",
    "xpupdate_agent_plan_item",
    "xpdelete_agent_plan_item",
    "xpcomplete_agent_plan_items",
    "xpstart_execution_plan",
})

#: Appended to the expected output while deep planning is active (the platform's own wording).
EXPECTED_OUTPUT_SUFFIX = "\nAll planned tasks completed and marked as done."

#: The planning instructions for a task whose plan has not started.
PLAN_INSTRUCTIONS = """<deep_planning>
You work from an execution plan that the platform keeps for this task.
1. First write the plan with xpcreate_agent_plan: short, concrete items, in the order you will do them.
2. Start it with xpstart_execution_plan before you act on any item.
3. As soon as an item is finished, mark it done with xpcomplete_agent_plan_items (use each item's full id).
4. When you learn something that changes the work, edit the plan (xpadd_new_agent_plan_item,
   xpupdate_agent_plan_item, xpdelete_agent_plan_item); xpget_agent_plan shows where it stands.
5. You are done only when every item is marked done.
</deep_planning>"""

#: The planning instructions once the plan has started (it is in the context already).
SEEDED_PLAN_INSTRUCTIONS = """<deep_planning>
This task already has an execution plan in progress (listed in your context); do not write a new one.
1. Continue with the first item that is not done yet.
2. As soon as an item is finished, mark it done with xpcomplete_agent_plan_items (use each item's full id).
3. If the remaining work changes, edit the plan (xpadd_new_agent_plan_item, xpupdate_agent_plan_item,
   xpdelete_agent_plan_item); xpget_agent_plan shows where it stands.
4. You are done only when every item is marked done.
</deep_planning>"""

#: The context line when the task has no plan yet.
NO_PLAN = "Execution plan: none yet, write one first."


def plan_block(plan: DeepPlanning) -> str:
    """The plan as a context line: its items' ``id`` and ``title`` as JSON, or :data:`NO_PLAN`.

    Args:
        plan: the task's deep-planning state.

    Returns:
        One line of context.
    """
    if not (plan.enabled and plan.tasks):
        return NO_PLAN
    items = [{"id": item.id, "title": item.title} for item in plan.tasks]
    return "Execution plan (id and title of each item): " + json.dumps(items, ensure_ascii=False)


def has_plan_tools(agent: Agent) -> bool:
    """Whether the platform gave ``agent`` any plan tool.

    Args:
        agent: the agent.

    Returns:
        ``True`` when one of its tools is in :data:`PLAN_TOOLS`.
    """
    return any(tool.id in PLAN_TOOLS for tool in agent.tools)


class DeepPlanningFeature(Feature):
    """The deep-planning instructions, expected output, plan context and plan tools of a build.

    Args:
        adapter: the build (its ``context``, ``task``).
    """

    name = "deep_planning"

    def __init__(self, adapter: Any) -> None:
        super().__init__(adapter)
        self._plan: Optional[DeepPlanning] = None

    def active(self, agent: Agent) -> bool:
        """Whether deep planning is on for ``agent`` in this build.

        Args:
            agent: the agent.

        Returns:
            ``True`` when ``agent.deep_planning`` and ``task.deep_planning.enabled`` are both set.
        """
        task = self.task
        return task is not None and bool(agent.deep_planning and task.deep_planning.enabled)

    def must_plan(self) -> bool:
        """Whether the task demands a plan (``must_deep_plan``) whatever the agent's setting.

        Returns:
            ``task.must_deep_plan`` (``False`` without a task).
        """
        return self.task is not None and bool(self.task.must_deep_plan)

    def plan(self) -> DeepPlanning:
        """The task's deep-planning state, reloaded from the platform (cached per task id for ``agent_cache_ttl``).

        Returns:
            The reloaded task's ``deep_planning`` (the given task's with a context that has no platform).

        Raises:
            ModuleException: the reload failed (as in the official SDK, the build stops).
        """
        task = self.task
        if task is None:  # never asked without a task (deep planning is off then)
            return DeepPlanning()
        if self._plan is None:
            transport = getattr(self.context, "transport", None)
            if transport is None:  # a context without a platform (test doubles)
                self._plan = task.deep_planning
            else:
                tasks = Tasks(transport.configuration, transport=transport)
                self._plan = transport.caches.plans.get_or_load(task.id, lambda: tasks.get(task.id).deep_planning)
        return self._plan

    def instructions(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` followed by the planning instructions when they apply.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (the only one that plans).
            text: its instructions so far.

        Returns:
            The instructions, with the seeded-plan variant when the plan has started.
        """
        if not root:
            return text
        if self.active(agent):
            block = SEEDED_PLAN_INSTRUCTIONS if self.plan().started else PLAN_INSTRUCTIONS
        elif self.must_plan() and has_plan_tools(agent):
            block = PLAN_INSTRUCTIONS
        else:
            return text
        return join_blocks(text, block)

    def expected_output(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` with :data:`EXPECTED_OUTPUT_SUFFIX` while deep planning is active.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.
            text: its expected output so far.

        Returns:
            The expected output.
        """
        return text + EXPECTED_OUTPUT_SUFFIX if root and self.active(agent) else text

    def additional_context(self, agent: Agent, root: bool, text: str) -> str:
        """``text`` preceded by the plan (:func:`plan_block`) while deep planning is active.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.
            text: its additional context so far.

        Returns:
            The additional context.
        """
        if not (root and self.active(agent)):
            return text
        block = plan_block(self.plan())
        return join_blocks(block, text, "\n")

    def filter_tools(self, agent: Agent, root: bool, specs: List[ToolSpec]) -> List[ToolSpec]:
        """``specs`` without the plan tools, unless deep planning is active or the task must plan.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.
            specs: its tool specs.

        Returns:
            The tool specs to build.
        """
        del root
        if self.active(agent) or self.must_plan():
            return specs
        return [spec for spec in specs if spec.name not in PLAN_TOOLS]

"""Feature 5 of issue 15 over every adapter: deep planning (the task status reload, the planning instructions,
the expected-output suffix, the plan in the context, the plan tools kept or removed), and a real turn of each
framework against the local backend's scripted model showing the reloaded plan reaches the model."""

from __future__ import annotations

import copy
from typing import Any, Dict, List

import pytest
import responses

from xpander_sync import Backend, Configuration, NotFoundError
from xpander_sync.frameworks.features.planning import (
    EXPECTED_OUTPUT_SUFFIX,
    NO_PLAN,
    PLAN_INSTRUCTIONS,
    PLAN_TOOLS,
    SEEDED_PLAN_INSTRUCTIONS,
    plan_block,
)
from xpander_sync.local import LocalBackend
from xpander_sync.models.task import DeepPlanning, DeepPlanningItem
from xpander_sync.testing import ScriptedModel, answer

from ..conftest import BASE, SENTINEL_KEY, load_fixture
from ._features_kit import prompt_text, tool_names
from .conftest import ORG_HEADERS, TASK_ID, make_agent, make_task, require_framework
from .test_contract import each_adapter
from .test_contract import name as adapter_name_fixture

name = adapter_name_fixture  # the fixture each_adapter() parametrizes

NO_STORE = {"session_storage": False}
STARTED = {"enabled": True, "enforce": False, "started": True, "question_raised": False, "tasks": [
    {"id": "35f56b8e-1427-4a5e-a1c0-57a4f7ec8e92", "title": "Search contact", "completed": True},
    {"id": "8a3c4f12-9b7e-4d2a-b5c8-1f6e9a0d3b4c", "title": "Create note", "completed": False},
]}
NOT_STARTED = {"enabled": True, "enforce": False, "started": False, "question_raised": False, "tasks": []}


def plan_tool(tool_id: str) -> Dict[str, Any]:
    return {"id": tool_id, "name": tool_id, "method": "POST", "path": f"/{tool_id}", "description": f"Plan: {tool_id}",
            "parameters": {"type": "object", "properties": {
                "body_params": {"type": "object", "properties": {"x": {"type": "string"}}, "required": []},
                "query_params": {"type": "object", "properties": {}, "required": []},
                "path_params": {"type": "object", "properties": {}, "required": []}},
                "required": ["body_params", "query_params", "path_params"]}}


def planning_agent(deep_planning: bool = True, **changes: Any) -> Any:
    """agt-features plus the platform's plan tools."""
    from .conftest import agent_payload

    tools = agent_payload("agt-features")["tools"] + [plan_tool(t) for t in sorted(PLAN_TOOLS)]
    return make_agent("agt-features", tools=tools, agno_settings=NO_STORE, deep_planning=deep_planning,
                      _local_prompts=None, **changes)


def task_with(plan: Dict[str, Any], **changes: Any) -> Any:
    changes.setdefault("input", {"text": "hi", "user": None})
    return make_task(deep_planning=plan, instructions_override=None, **changes)


def mock_build(mocked: Any, reload_plan: Any = None) -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    mocked.post(f"{BASE}/tools/agt-features/dynamic-prompt", json={"text": ""})
    mocked.post(f"{BASE}/tools/agt-features/channel-presence", json={"text": ""})
    if reload_plan is not None:
        status = dict(load_fixture("task_status"), deep_planning=reload_plan)
        mocked.get(f"{BASE}/agent-execution/{TASK_ID}/status", json=status)


def get_args(name: str, agent: Any, task: Any) -> Dict[str, Any]:
    config = Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url=BASE)
    return Backend(config).get_args(agent=agent, task=task, framework=name)


def calls(mocked: Any) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]


def expected_output(name: str, args: Dict[str, Any]) -> str:
    if name == "agno":
        return str(args.get("expected_output") or "")
    text = prompt_text(name, args)
    return text[text.index("<expected_output>"):text.index("</expected_output>")]


# -- pure pieces ----------------------------------------------------------------------------------------------


def test_plan_block() -> None:
    plan = DeepPlanning(enabled=True, tasks=[DeepPlanningItem(id="i-1", title="Find", completed=True)])
    assert plan_block(plan) == 'Execution plan (id and title of each item): [{"id": "i-1", "title": "Find"}]'
    assert plan_block(DeepPlanning(enabled=True)) == NO_PLAN
    assert plan_block(DeepPlanning(enabled=False, tasks=plan.tasks)) == NO_PLAN


# -- every adapter --------------------------------------------------------------------------------------------


@each_adapter()
def test_active_deep_planning_reloads_the_task_and_plans(name: str, mocked: Any) -> None:
    mock_build(mocked, reload_plan=NOT_STARTED)
    task = task_with(copy.deepcopy(STARTED), expected_output="A summary.")  # stale: the reload says not started
    args = get_args(name, planning_agent(), task)
    assert calls(mocked).count(f"GET /agent-execution/{TASK_ID}/status") == 1
    status = next(c for c in mocked.calls if c.request.url.endswith("/status"))
    assert status.request.headers["x-api-key"] == SENTINEL_KEY and status.request.body is None
    text = prompt_text(name, args)
    assert PLAN_INSTRUCTIONS in text and SEEDED_PLAN_INSTRUCTIONS not in text
    assert NO_PLAN in text
    assert "A summary." + EXPECTED_OUTPUT_SUFFIX in expected_output(name, args)
    assert set(PLAN_TOOLS) <= set(tool_names(args))


@each_adapter()
def test_a_started_plan_gets_the_seeded_instructions_and_its_items(name: str, mocked: Any) -> None:
    mock_build(mocked, reload_plan=STARTED)
    args = get_args(name, planning_agent(), task_with(copy.deepcopy(NOT_STARTED)))
    text = prompt_text(name, args)
    assert SEEDED_PLAN_INSTRUCTIONS in text and PLAN_INSTRUCTIONS not in text
    block = ('Execution plan (id and title of each item): [{"id": "35f56b8e-1427-4a5e-a1c0-57a4f7ec8e92", '
             '"title": "Search contact"}, {"id": "8a3c4f12-9b7e-4d2a-b5c8-1f6e9a0d3b4c", "title": "Create note"}]')
    assert block in text
    # the plan comes first in the context, before the task's own context
    assert text.index(block) < text.index("The user is on the enterprise plan.")


@each_adapter()
def test_without_deep_planning_the_plan_tools_go_and_nothing_is_asked(name: str, mocked: Any) -> None:
    mock_build(mocked)
    for agent, task in ((planning_agent(deep_planning=False), task_with(STARTED)),
                        (planning_agent(), task_with({"enabled": False})),
                        (planning_agent(), None)):
        args = get_args(name, agent, task)
        text = prompt_text(name, args)
        assert not set(PLAN_TOOLS) & set(tool_names(args))
        assert "XpanderCrmSearchContacts" in tool_names(args)
        assert "<deep_planning>" not in text and EXPECTED_OUTPUT_SUFFIX.strip() not in text
        assert "Execution plan" not in text
    assert not [c for c in calls(mocked) if "/agent-execution/" in c]


@each_adapter()
def test_must_deep_plan_keeps_the_tools_and_instructions_without_a_reload(name: str, mocked: Any) -> None:
    mock_build(mocked)
    args = get_args(name, planning_agent(deep_planning=False), task_with({"enabled": False}, must_deep_plan=True))
    assert set(PLAN_TOOLS) <= set(tool_names(args))
    text = prompt_text(name, args)
    assert PLAN_INSTRUCTIONS in text and "Execution plan" not in text
    assert not [c for c in calls(mocked) if "/agent-execution/" in c]
    # without plan tools, must_deep_plan adds no instructions
    plain = make_agent("agt-features", agno_settings=NO_STORE, deep_planning=False)
    assert "<deep_planning>" not in prompt_text(name, get_args(name, plain, task_with({}, must_deep_plan=True)))


@each_adapter()
def test_a_failed_reload_stops_the_build(name: str, mocked: Any) -> None:
    mocked.post(f"{BASE}/tools/agt-features/dynamic-prompt", json={"text": ""})
    mocked.post(f"{BASE}/tools/agt-features/channel-presence", json={"text": ""})
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    mocked.get(f"{BASE}/agent-execution/{TASK_ID}/status", status=404, json={"detail": "Task not found"})
    with pytest.raises(NotFoundError):
        get_args(name, planning_agent(), task_with(STARTED))
    mocked.assert_all_requests_are_fired = False  # the build stops where the adapter asked for the plan


@each_adapter()
def test_the_reload_is_reused_for_agent_cache_ttl_and_a_failure_is_not(name: str, mocked: Any) -> None:
    mock_build(mocked, reload_plan=NOT_STARTED)
    task = task_with(copy.deepcopy(NOT_STARTED))
    get_args(name, planning_agent(), task)
    # the platform's plan changes, but a rebuild of the same task within the TTL sees the first build's plan
    status = dict(load_fixture("task_status"), deep_planning=STARTED)
    mocked.replace(responses.GET, f"{BASE}/agent-execution/{TASK_ID}/status", json=status)
    text = prompt_text(name, get_args(name, planning_agent(), task))
    assert calls(mocked).count(f"GET /agent-execution/{TASK_ID}/status") == 1
    assert PLAN_INSTRUCTIONS in text and NO_PLAN in text
    # agent_cache_ttl=0: every build reloads (and sees the new plan)
    config = Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url=BASE, agent_cache_ttl=0)
    for _ in range(2):
        text = prompt_text(name, Backend(config).get_args(agent=planning_agent(), task=task, framework=name))
        assert SEEDED_PLAN_INSTRUCTIONS in text and "Search contact" in text
    assert calls(mocked).count(f"GET /agent-execution/{TASK_ID}/status") == 3


@each_adapter()
def test_a_failed_reload_is_not_cached(name: str, mocked: Any) -> None:
    mock_build(mocked)
    route = f"{BASE}/agent-execution/{TASK_ID}/status"
    mocked.get(route, status=404, json={"detail": "Task not found"})
    with pytest.raises(NotFoundError):
        get_args(name, planning_agent(), task_with(STARTED))
    mocked.replace(responses.GET, route, json=dict(load_fixture("task_status"), deep_planning=STARTED))
    assert SEEDED_PLAN_INSTRUCTIONS in prompt_text(name, get_args(name, planning_agent(), task_with(NOT_STARTED)))
    assert calls(mocked).count(f"GET /agent-execution/{TASK_ID}/status") == 2


# -- a real turn of every framework ---------------------------------------------------------------------------


@pytest.fixture
def local(clean_environ: None, tmp_path: Any) -> Any:
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-plan") as backend:
        yield backend


@each_adapter()
def test_a_real_turn_sees_the_platform_plan(name: str, local: LocalBackend) -> None:
    from .test_run_matrix import DRIVERS as RUNS

    require_framework(name)
    model = local.mount_llm(ScriptedModel([answer("planned")]))
    backend = Backend(Configuration(api_key="xpk-plan", base_url=local.url, organization_id="local-org"))
    task = backend.invoke_agent("agt-features", "Follow up with Ada")
    task.deep_planning = DeepPlanning(enabled=True, started=True, tasks=[
        DeepPlanningItem(id="item-1", title="Look Ada up"), DeepPlanningItem(id="item-2", title="Write the note")])
    task.save(with_deep_plan_update=True)
    task.deep_planning = DeepPlanning(enabled=True)  # a stale copy: the build reloads the platform's plan
    args = backend.get_args(agent_id="agt-features", task=task, framework=name)
    assert "planned" in RUNS[name].run(args, False)
    first = model.requests[0]
    for text in ("Look Ada up", "item-2", "This task already has an execution plan in progress",
                 EXPECTED_OUTPUT_SUFFIX.strip()):
        assert first.mentions(text), text

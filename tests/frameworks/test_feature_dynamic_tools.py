"""Feature 8 of issue 15 over every adapter: dynamic tools (a large catalog replaced by the list/search/get/execute
meta-tools, the hint in the instructions, execute going through the hidden tool's own call), and a real turn of
each framework against the local backend's scripted model calling a hidden tool through xp_execute_tool."""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List

import pytest

from xpander_sync import Backend, Configuration, InvalidInputError
from xpander_sync.frameworks.features.dynamic_tools import META_TOOLS, MIN_TOOLS_ENV, search
from xpander_sync.frameworks.features.planning import PLAN_TOOLS
from xpander_sync.local import LocalBackend
from xpander_sync.testing import ScriptedModel, answer_with_tool_result, call_tool

from ..conftest import BASE, SENTINEL_KEY
from ._features_kit import call_tool as kit_call_tool
from ._features_kit import prompt_text, tool_names
from .conftest import ORG_HEADERS, TASK_ID, agent_payload, make_agent, make_task, require_framework
from .test_contract import each_adapter
from .test_contract import name as adapter_name_fixture

name = adapter_name_fixture  # the fixture each_adapter() parametrizes

NO_STORE = {"session_storage": False}
WEATHER = "XpanderWeatherForecast"


def catalog(count: int) -> List[Dict[str, Any]]:
    """``count`` tools shaped like the sample's CRM search; one of them is a weather forecast."""
    base = agent_payload("agt-features")["tools"][0]
    tools = []
    for i in range(count):
        tool = copy.deepcopy(base)
        tool["id"] = WEATHER if i == 7 else f"XpanderCrmTool{i:02d}"
        tool["name"] = tool["id"]
        tool["description"] = ("Look up the weather forecast for a city." if i == 7
                               else f"CRM operation number {i} on contacts.")
        tools.append(tool)
    return tools


def dynamic_agent(count: int = 50, use: bool = True, extra: Any = ()) -> Any:
    # No knowledge base: its search tool is not part of the catalog and would show up beside it.
    return make_agent("agt-features", tools=catalog(count) + list(extra), use_dynamic_tools=use,
                      knowledge_bases=[], agno_settings=NO_STORE,
                      instructions={"role": ["Help."], "goal": [], "general": ""}, runtime_environment=None)


def get_args(name: str, mocked: Any, agent: Any, task: Any = None) -> Dict[str, Any]:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    mocked.post(f"{BASE}/tools/agt-features/channel-presence", json={"text": ""})
    config = Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url=BASE)
    return Backend(config).get_args(agent=agent, task=task, framework=name)


def quiet_task() -> Any:
    return make_task(deep_planning={"enabled": False}, input={"text": "hi", "user": None})


# -- pure pieces ----------------------------------------------------------------------------------------------


def test_search_ranks_by_shared_words() -> None:
    from xpander_sync.frameworks._toolspec import FunctionToolSpec

    specs = [FunctionToolSpec(n, d, {}, lambda a: a) for n, d in (
        ("crm_search", "Search contacts"), ("weather", "Forecast for a city"), ("notes", "Write a note"))]
    assert [s.name for s in search(specs, "city weather forecast", 5)] == ["weather"]
    assert [s.name for s in search(specs, "search notes", 5)] == ["crm_search", "notes"]
    assert search(specs, "nothing alike", 5) == []


# -- every adapter --------------------------------------------------------------------------------------------


@each_adapter()
def test_a_large_catalog_becomes_the_meta_tools(name: str, mocked: Any) -> None:
    plan = [dict(copy.deepcopy(agent_payload("agt-features")["tools"][0]), id="xpget_agent_plan")]
    task = make_task(deep_planning={"enabled": False}, input={"text": "hi", "user": None}, must_deep_plan=True)
    args = get_args(name, mocked, dynamic_agent(extra=plan), task)
    assert tool_names(args) == [*META_TOOLS, "xpget_agent_plan"]  # built-in xp* tools stay listed
    text = prompt_text(name, args)
    assert "<dynamic_tools>" in text and "Your 50 tools" in text and "xp_execute_tool" in text
    assert len(mocked.calls) == 2  # the metadata and the presence: no request of its own

    found = json.loads(kit_call_tool(name, args, "xp_search_tools", {"query": "weather forecast"}))
    assert found["tools"][0] == {"name": WEATHER, "summary": "Look up the weather forecast for a city."}
    listed = json.loads(kit_call_tool(name, args, "xp_list_tools", {"offset": 48, "limit": 10}))
    assert listed["total"] == 50 and [t["name"] for t in listed["tools"]] == ["XpanderCrmTool48", "XpanderCrmTool49"]
    detail = json.loads(kit_call_tool(name, args, "xp_get_tool", {"name": WEATHER}))
    assert detail["parameters"]["properties"]["query_params"]["properties"]["q"]["type"] == "string"
    missing = kit_call_tool(name, args, "xp_get_tool", {"name": "nope"})
    assert "no tool named 'nope'" in missing


@each_adapter()
def test_execute_calls_the_hidden_tool_as_if_it_were_listed(name: str, mocked: Any) -> None:
    task = quiet_task()
    args = get_args(name, mocked, dynamic_agent(), task)
    mocked.post(f"{BASE}/agents/agt-features/operations/{WEATHER}", json={"forecast": "sunny"})
    out = kit_call_tool(name, args, "xp_execute_tool",
                        {"name": WEATHER, "arguments": {"query_params": {"q": "Berlin"}}})
    assert json.loads(out) == {"forecast": "sunny"}
    call = mocked.calls[-1]
    assert call.request.headers["x-execution-id"] == TASK_ID
    assert call.request.headers["x-agent-version"] == "1"
    # the hidden tool's own body (its schema's defaults filled in), the same as when it is listed
    assert json.loads(call.request.body) == {"query_params": {"q": "Berlin", "limit": 10}, "path_params": {},
                                             "body_params": {}}
    mocked.assert_all_requests_are_fired = False  # the second build is warm: metadata and presence cached
    listed = get_args(name, mocked, dynamic_agent(use=False), task)
    mocked.post(f"{BASE}/agents/agt-features/operations/{WEATHER}", json={"forecast": "sunny"})
    kit_call_tool(name, listed, WEATHER, {"query_params": {"q": "Berlin"}})
    direct = mocked.calls[-1].request
    assert direct.body == call.request.body
    assert {k: direct.headers[k] for k in ("x-execution-id", "x-agent-version")} == {
        k: call.request.headers[k] for k in ("x-execution-id", "x-agent-version")}
    # arguments given as a JSON text are read too; an unknown tool is an error the model sees
    mocked.post(f"{BASE}/agents/agt-features/operations/{WEATHER}", json={"forecast": "rain"})
    out = kit_call_tool(name, args, "xp_execute_tool",
                        {"name": WEATHER, "arguments": json.dumps({"query_params": {"q": "Oslo"}})})
    assert json.loads(out) == {"forecast": "rain"}
    assert "find it with xp_search_tools" in kit_call_tool(name, args, "xp_execute_tool",
                                                            {"name": "nope", "arguments": {}})


@each_adapter()
def test_below_the_threshold_or_off_nothing_changes(name: str, mocked: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for agent in (dynamic_agent(49), dynamic_agent(60, use=False)):
        args = get_args(name, mocked, agent)
        names = tool_names(args)
        assert not set(META_TOOLS) & set(names) and WEATHER in names
        assert "<dynamic_tools>" not in prompt_text(name, args)
    monkeypatch.setenv(MIN_TOOLS_ENV, "8")
    assert tool_names(get_args(name, mocked, dynamic_agent(8))) == list(META_TOOLS)
    monkeypatch.setenv(MIN_TOOLS_ENV, "many")
    with pytest.raises(InvalidInputError, match=MIN_TOOLS_ENV):
        get_args(name, mocked, dynamic_agent(8))
    mocked.assert_all_requests_are_fired = False


def test_plan_tools_are_not_hideable() -> None:
    from xpander_sync.frameworks.features.dynamic_tools import is_hideable

    assert not any(is_hideable(t) for t in PLAN_TOOLS) and not any(is_hideable(t) for t in META_TOOLS)
    assert is_hideable("XpanderCrmSearchContacts")


# -- a real turn of every framework ---------------------------------------------------------------------------


@pytest.fixture
def local(clean_environ: None, tmp_path: Any) -> Any:
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-dyn") as backend:
        yield backend


@each_adapter()
def test_a_real_turn_runs_a_hidden_tool(name: str, local: LocalBackend) -> None:
    from .test_run_matrix import DRIVERS as RUNS

    require_framework(name)
    # No knowledge base: its search tool (agno's own) would join the meta-tools sent to the model.
    data = dict(agent_payload("agt-features"), id="agt-dyn", tools=catalog(50), use_dynamic_tools=True,
                knowledge_bases=[], framework=name)
    local.add_agent(data)
    local.register_tool(WEATHER, lambda payload, headers: {"forecast": "FORECAST-77", "q": payload})
    model = local.mount_llm(ScriptedModel([
        call_tool("xp_execute_tool", {"name": WEATHER, "arguments": {"query_params": {"q": "Berlin"}}}),
        answer_with_tool_result("final: "),
    ]))
    backend = Backend(Configuration(api_key="xpk-dyn", base_url=local.url, organization_id="local-org"))
    args = backend.get_args(agent_id="agt-dyn", framework=name)
    final = RUNS[name].run(args, False)
    assert sorted(model.requests[0].tools) == sorted(META_TOOLS)  # agno sorts the tools it sends
    calls = [c for c in local.tool_calls() if c["tool_id"] == WEATHER]
    assert len(calls) == 1 and calls[0]["body"]["query_params"]["q"] == "Berlin"
    assert "FORECAST-77" in (model.requests[1].last_tool_result or "")
    assert "FORECAST-77" in final

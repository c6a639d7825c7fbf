"""The shared acceptance of every registered adapter, parametrized over the registry.

Each test runs once per adapter of :data:`xpander_sync.frameworks.ADAPTERS` (the test id is
the adapter's name) and skips, through ``pytest.importorskip``, when that framework is not
installed; ``pytest tests/frameworks --framework NAME`` runs one adapter's share (what each
framework's tox env does). What differs between frameworks is only *how a framework calls a
tool*: :data:`DRIVERS` holds that, one small entry per adapter. What is specific to one
framework stays in its own ``test_<module>.py``.
"""

from __future__ import annotations

import asyncio
import configparser
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Tuple

import pytest

from xpander_sync import Backend, ConfigurationError, FrameworkNotInstalledError, InvalidInputError
from xpander_sync._converter import unstructure
from xpander_sync.frameworks import ADAPTERS, builtin_adapters, get_adapter, get_args_for
from xpander_sync.models.tools import ToolInvocationResult
from xpander_sync.summary import summarize_args

from .conftest import (
    ACCEPTANCE_AGENTS,
    VERIFIED_BODY,
    FakeContext,
    assert_operation_posted,
    make_agent,
    make_task,
    mock_members,
    mock_operation,
    mock_platform,
    require_framework,
)

ROOT = Path(__file__).resolve().parents[2]
ANSWER = {"contacts": [{"id": "c-1", "name": "Ada"}]}
ALL_REFUSED = ("amazon_bedrock", "google_ai_studio", "azure_ai_foundary", "huggingface")


# -- how each framework calls a tool (the only per-framework knowledge here) ----------------------


def _call_agno(tool: Any, arguments: Dict[str, Any]) -> str:
    from agno.tools.function import FunctionCall

    return str(FunctionCall(function=tool, arguments=arguments).execute().result)


def _call_openai_agents(tool: Any, arguments: Dict[str, Any]) -> str:
    from agents.tool_context import ToolContext

    args_json = json.dumps(arguments)
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call-1", tool_arguments=args_json)
    return asyncio.run(tool.on_invoke_tool(ctx, args_json))


def _call_langchain(tool: Any, arguments: Dict[str, Any]) -> str:
    return tool.invoke(arguments)


def _call_strands(tool: Any, arguments: Dict[str, Any]) -> str:
    async def run() -> Any:
        return [e async for e in tool.stream({"toolUseId": "call-1", "name": tool.tool_name, "input": arguments}, {})]

    return asyncio.run(run())[-1].tool_result["content"][0]["text"]


def _call_google_adk(tool: Any, arguments: Dict[str, Any]) -> str:
    return asyncio.run(tool.run_async(args=arguments, tool_context=None))


def _call_pydantic_ai(tool: Any, arguments: Dict[str, Any]) -> str:
    return tool.function(**arguments)


class Driver(NamedTuple):
    """How the framework calls a tool, and where the adapter's behaviour legitimately differs."""

    call_tool: Callable[[Any, Dict[str, Any]], str]
    #: providers the adapter refuses (agno maps every platform provider).
    refused: Tuple[str, ...] = ALL_REFUSED
    #: an OpenAI agent without any key is refused at build time (agno leaves it to the OpenAI client).
    needs_openai_key: bool = True
    #: the sample agents' session storage is built (GET .../db per agent).
    stores_sessions: bool = False


DRIVERS: Dict[str, Driver] = {
    "agno": Driver(_call_agno, refused=("huggingface",), needs_openai_key=False, stores_sessions=True),
    "open-ai-agents": Driver(_call_openai_agents),
    "langchain": Driver(_call_langchain),
    "strands-agents": Driver(_call_strands),
    "google-adk": Driver(_call_google_adk),
    "pydantic-ai": Driver(_call_pydantic_ai),
}


def each_adapter(names: Any = None) -> Any:
    """One parameter per registered adapter (marked with its framework), or per name in ``names``."""
    return pytest.mark.parametrize(
        "name", [pytest.param(n, id=n, marks=pytest.mark.framework(n)) for n in (names or ADAPTERS)], indirect=True
    )


@pytest.fixture
def name(request: pytest.FixtureRequest, openai_env: str) -> str:
    """The adapter under test; skips when its framework is not installed."""
    require_framework(request.param)
    return request.param


def build(name: str, agent: Any, task: Any = None, context: Any = None, **kw: Any) -> Dict[str, Any]:
    context = context or FakeContext(db_uri="postgresql://u:p@db.example:5432/x")
    return get_adapter(name).build(agent, task, kw.get("override"), kw.get("tools"), None, context)


def construct(name: str, args: Dict[str, Any]) -> Any:
    """What the user does with the arguments: call the adapter's constructor (by its dotted name)."""
    module, _, attr = get_adapter(name).constructor_for(args).rpartition(".")
    return getattr(importlib.import_module(module), attr)(**args)


# -- the registry line, the extra, the tox env, the docs: no framework needed ----------------------


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.framework(k)) for k in ADAPTERS])
def test_each_registry_line_has_its_adapter_extra_tox_env_docs_row_and_driver(key):
    adapter = get_adapter(key)
    assert adapter.name == key and adapter.extra and adapter.requires and adapter.constructor
    assert adapter.missing_message() == f'{adapter.extra} is not installed: pip install "xpander-sync[{adapter.extra}]"'
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    assert adapter.extra in extras["options.extras_require"]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    envs = {section: tox[section].get("commands", "") for section in tox.sections()}
    assert any(f"--framework {key}" in commands for commands in envs.values()), f"no tox env runs {key}"
    docs = (ROOT / "docs" / "frameworks.md").read_text(encoding="utf-8")
    assert f"| `{key}` |" in docs and f"`{adapter.constructor}`" in docs
    assert key in DRIVERS
    assert summarize_args({"name": "x"}, key)["framework_class"] == adapter.constructor


def test_the_registry_lists_the_adapter_classes_in_order():
    assert [a.name for a in builtin_adapters()] == list(ADAPTERS)


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


@each_adapter()
@pytest.mark.parametrize("agent_id", ACCEPTANCE_AGENTS)
def test_sample_agents_construct_offline_from_get_args(mocked, config, name, agent_id):
    db = DRIVERS[name].stores_sessions
    mock_platform(mocked, agent_id, db=db)
    if agent_id == "agt-team":
        mock_members(mocked, db=db)
    args = Backend(config).get_args(agent_id=agent_id, task=make_task(output_format=None), framework=name)
    built = construct(name, args)
    assert not any(key.startswith("_") for key in args)
    agent = make_agent(agent_id)
    assert args["name"] in (agent.name, agent.sanitized_name) and getattr(built, "name", args["name"]) == args["name"]


@each_adapter()
def test_tool_call_through_the_framework_posts_the_operation(mocked, config, name):
    mock_platform(mocked, "agt-openai", db=DRIVERS[name].stores_sessions)
    args = Backend(config).get_args(agent_id="agt-openai", task=make_task(), framework=name)
    construct(name, args)
    mock_operation(mocked)
    assert json.loads(DRIVERS[name].call_tool(args["tools"][0], {"query_params": {"q": "ada"}})) == ANSWER
    assert_operation_posted(mocked)


@each_adapter()
def test_the_agents_own_framework_is_used_by_default(name):
    args = get_args_for(make_agent(framework=name), make_task(), context=FakeContext(db_uri="postgresql://h/x"))
    explicit = build(name, make_agent(), make_task())
    assert type(args["model"]) is type(explicit["model"]) and sorted(args) == sorted(explicit)


# -- the shared build rules -----------------------------------------------------------------------


@each_adapter()
def test_tool_calls_carry_this_builds_agent_and_task_and_errors_reach_the_model(name):
    context = FakeContext(db_uri="postgresql://h/x")
    first = build(name, make_agent(), make_task(id="task-1"), context)["tools"][0]
    second = build(name, make_agent(version=9), make_task(id="task-2"), context)["tools"][0]
    call = DRIVERS[name].call_tool
    call(first, {"query_params": {"q": "ada"}})
    call(second, {"query_params": {"q": "ada"}})
    calls = [c for c in context.calls if c[0] == "invoke_tool"]
    assert [c[2] for c in calls] == ["task-1", "task-2"] and calls[0][4] == VERIFIED_BODY
    context.tool_result = ToolInvocationResult(tool_id="t", payload={}, status_code=404, result="gone", is_error=True)
    assert json.loads(call(first, {"query_params": {"q": "x"}})) == {
        "is_error": True, "status_code": 404, "result": "gone"}


@each_adapter()
def test_override_model_skips_the_model_and_extra_tools_come_last(name):
    model, mine = object(), object()
    context = FakeContext(db_uri="postgresql://h/x")
    args = build(name, make_agent(), make_task(), context, tools=[mine], override={"model": model, "name": "X"})
    assert args["model"] is model and args["tools"][-1] is mine and args["name"] == "X"
    assert "org_llm_headers" not in context.calls


@each_adapter()
def test_unmapped_providers_are_refused_naming_provider_and_framework(name):
    for provider in DRIVERS[name].refused:
        with pytest.raises(InvalidInputError, match=rf"model provider '{provider}' is not supported by the {name}"):
            build(name, make_agent(model_provider=provider))


@each_adapter([n for n in ADAPTERS if DRIVERS[n].needs_openai_key])
def test_openai_without_any_key_is_a_configuration_error(name, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigurationError, match="no OpenAI API key: set OPENAI_API_KEY"):
        build(name, make_agent())


@each_adapter()
def test_an_agent_without_a_model_name_is_refused(name):
    with pytest.raises(InvalidInputError, match="agent agt-anthropic has no model_name"):
        build(name, make_agent("agt-anthropic", model_name=""))


@each_adapter()
def test_a_team_containing_itself_is_refused_and_the_team_is_not_modified(name):
    looping = make_agent("agt-team", graph=[{"item_id": "agt-team", "type": "agent", "targets": []}])
    before = unstructure(looping)
    with pytest.raises(InvalidInputError, match="contains itself"):
        build(name, looping, None, FakeContext(members={"agt-team": looping}, db_uri="postgresql://h/x"))
    assert unstructure(looping) == before


# -- installation ---------------------------------------------------------------------------------


@each_adapter()
def test_missing_framework_names_the_extra(name, monkeypatch):
    adapter = get_adapter(name)
    monkeypatch.setitem(sys.modules, adapter.requires, None)
    with pytest.raises(FrameworkNotInstalledError, match=rf'pip install "xpander-sync\[{adapter.extra}\]"'):
        build(name, make_agent())


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.framework(k)) for k in ADAPTERS])
def test_importing_the_adapter_imports_no_framework(key):
    module, _, _ = ADAPTERS[key].partition(":")
    top = get_adapter(key).requires.split(".")[0]
    code = f"import sys, {module}; assert {top!r} not in sys.modules, {top!r}"
    subprocess.run([sys.executable, "-c", code], check=True)

"""The framework registry: choosing an adapter, third-party adapters, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any, Dict, List

import pytest

from xpander_sync import InvalidInputError, UnsupportedFrameworkError
from xpander_sync._converter import structure, unstructure
from xpander_sync.frameworks import (
    Adapter,
    get_adapter,
    get_args_for,
    get_builder,
    register_framework,
    supported_frameworks,
    unregister_framework,
)
from xpander_sync.models import Agent

from ..conftest import load_fixture

CALLS: List[Dict[str, Any]] = []


def recording_builder(agent, task, override, tools, auth_events_callback, context):
    """A builder importable by path, for the lazy-import test."""
    CALLS.append(
        {
            "agent": agent.id,
            "task": task,
            "override": override,
            "tools": tools,
            "callback": auth_events_callback,
            "context": context,
        }
    )
    return {"built_for": agent.id}


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    import xpander_sync.frameworks as registry

    CALLS.clear()
    monkeypatch.setattr(registry, "_entry_points_scanned", True)  # no real entry points in these tests
    monkeypatch.setattr(registry, "_entry_points", {})
    yield
    for name in ("agno", "langchain", "crewai", "lazy", "google-adk", "open-claw"):
        unregister_framework(name)


def make_agent(framework: Any) -> Agent:
    data = load_fixture("agent_openai")
    data["framework"] = framework
    return structure(data, Agent)


def test_agno_is_supported_and_registered_lazily():
    import xpander_sync.frameworks as registry

    assert "agno" in supported_frameworks()
    assert registry._registry["agno"] in ("xpander_sync.frameworks.agno:AgnoAdapter", get_adapter("agno"))
    from xpander_sync.frameworks.agno import AgnoAdapter, build_agno_args

    assert get_adapter("AGNO") is AgnoAdapter
    assert get_builder("AGNO") == build_agno_args == AgnoAdapter.build
    assert registry._registry["agno"] is AgnoAdapter  # resolved once, then kept


def test_an_adapter_class_can_be_registered_and_a_builder_function_has_no_class():
    class EchoAdapter(Adapter):
        """Builds {"name": ...} without any framework."""

        name, extra, requires, constructor = "crewai", "crewai", "json", "crewai.Agent"

        def agent_args(self, agent, *, root, extra_tools, path):
            return {"name": agent.name, "tools": extra_tools}

    register_framework("crewai", EchoAdapter)
    assert get_adapter("crewai") is EchoAdapter
    assert get_args_for(make_agent("crewai"), tools=["t"], override={"x": 1}, context="ctx") == {
        "name": "CRM Assistant", "tools": ["t"], "x": 1}
    register_framework("lazy", recording_builder)
    with pytest.raises(UnsupportedFrameworkError, match="builder function, not an Adapter"):
        get_adapter("lazy")


@pytest.mark.parametrize("framework", ["open-claw"])
def test_known_framework_without_adapter_is_refused_with_the_supported_list(framework):
    agent = make_agent(framework)
    before = unstructure(agent)
    with pytest.raises(UnsupportedFrameworkError) as info:
        get_args_for(agent, context=object())
    message = str(info.value)
    assert repr(framework) in message and "supported: agno" in message and "framework='agno'" in message
    assert unstructure(agent) == before and agent.framework == framework  # never mutated


def test_unknown_framework_is_refused():
    with pytest.raises(UnsupportedFrameworkError, match="unknown framework 'crewai'; supported: agno"):
        get_args_for(make_agent("crewai"), context=object())


@pytest.mark.parametrize("framework", ["", "  ", "agno", "Agno"])
def test_empty_or_agno_framework_uses_the_agno_adapter(framework):
    register_framework("agno", recording_builder)
    assert get_args_for(make_agent(framework), context="ctx") == {"built_for": "agt-openai"}
    assert len(CALLS) == 1


def test_explicit_framework_argument_wins_and_the_agent_is_not_mutated():
    register_framework("agno", recording_builder)
    agent = make_agent("langchain")
    task, override, tools, callback = object(), {"markdown": False}, [print], (lambda *a: None)
    args = get_args_for(agent, task, override, tools, callback, context="ctx", framework="agno")
    assert args == {"built_for": "agt-openai"}
    assert CALLS == [
        {
            "agent": "agt-openai",
            "task": task,
            "override": override,
            "tools": tools,
            "callback": callback,
            "context": "ctx",
        }
    ]
    assert agent.framework == "langchain"


def test_third_party_builder_for_a_platform_framework():
    seen = []

    def open_claw_builder(agent, task, override, tools, auth_events_callback, context):
        seen.append((agent.id, context))
        return {"agent_name": agent.name}

    assert register_framework("Open-Claw", open_claw_builder) is open_claw_builder
    assert "open-claw" in supported_frameworks()
    assert get_args_for(make_agent("open-claw"), context="ctx") == {"agent_name": "CRM Assistant"}
    assert seen == [("agt-openai", "ctx")]
    unregister_framework("open-claw")
    with pytest.raises(UnsupportedFrameworkError):
        get_builder("open-claw")


def test_string_builders_are_imported_on_first_use():
    register_framework("lazy", "tests.frameworks.test_registry:recording_builder")
    assert get_builder("lazy") is recording_builder
    assert get_args_for(make_agent("lazy"), context="c") == {"built_for": "agt-openai"}


@pytest.mark.parametrize(
    "name, builder", [("", recording_builder), ("x", "no-colon"), ("x", 42), ("x", ":f")]
)
def test_invalid_registrations_are_refused(name, builder):
    with pytest.raises(InvalidInputError):
        register_framework(name, builder)


def test_a_builder_must_return_a_dict():
    register_framework("crewai", lambda *args: ["not", "a", "dict"])
    with pytest.raises(TypeError, match="'crewai' adapter returned list"):
        get_args_for(make_agent("crewai"), context="c")


def test_entry_points_add_frameworks_but_never_replace_agno(monkeypatch):
    import importlib.metadata

    import xpander_sync.frameworks as registry

    class FakePoint:
        def __init__(self, name, target):
            self.name, self.target, self.loaded = name, target, 0

        def load(self):
            self.loaded += 1
            return self.target

    points = [FakePoint("open-claw", recording_builder), FakePoint("agno", lambda *a: {"hijacked": True})]

    class FakeEntryPoints:
        def select(self, group):
            return points if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda: FakeEntryPoints())
    monkeypatch.setattr(registry, "_entry_points_scanned", False)
    assert "open-claw" in supported_frameworks()
    assert points[0].loaded == 0  # listing does not import the adapter
    assert get_args_for(make_agent("open-claw"), context="c") == {"built_for": "agt-openai"}
    assert points[0].loaded == 1
    assert get_builder("agno") is not points[1].target and points[1].loaded == 0


def test_importing_the_registry_and_helpers_imports_no_agno():
    code = textwrap.dedent(
        """
        import sys
        import xpander_sync
        import xpander_sync.frameworks as registry
        import xpander_sync.frameworks._tools, xpander_sync.frameworks._llm
        assert "agno" in registry.supported_frameworks()
        registry.get_builder("agno")  # imports the adapter module, which must not import agno
        leaked = sorted(m for m in sys.modules if m == "agno" or m.startswith("agno."))
        print("LEAKED", leaked)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "LEAKED []" in result.stdout

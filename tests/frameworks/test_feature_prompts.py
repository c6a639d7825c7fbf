"""Features 3 and 4 of issue 15 over every adapter: the dynamic prompt, the environment context layers and the
channel presence (exact HTTP calls, the text each framework's prompt gets, the cache), and a real turn of each
framework against the local backend's scripted model showing the three texts reach the model."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import pytest
import requests

from xpander_sync import Backend, Configuration
from xpander_sync.frameworks.features.prompts import (
    ENVIRONMENT_NOTE,
    PRESENCE_NOTE,
    context_layers,
    environment_block,
    place_dynamic_prompt,
    presence_block,
)
from xpander_sync.local import LocalBackend
from xpander_sync.testing import ScriptedModel, answer

from ..conftest import BASE, SENTINEL_KEY
from ._features_kit import prompt_text
from .conftest import ORG_HEADERS, make_agent, make_task, require_framework
from .test_contract import each_adapter
from .test_contract import name as adapter_name_fixture

name = adapter_name_fixture  # the fixture each_adapter() parametrizes

DYNAMIC = "Today's focus account: Acme."
PRESENCE = "You are talking in the #sales channel."
NO_STORE = {"session_storage": False}


def features_agent(**changes: Any) -> Any:
    changes.setdefault("agno_settings", NO_STORE)
    return make_agent("agt-features", **changes)


def mock_prompts(mocked: Any, agent_id: str = "agt-features", *, dynamic: bool = True) -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    if dynamic:
        mocked.post(f"{BASE}/tools/{agent_id}/dynamic-prompt", json={"text": DYNAMIC})
    mocked.post(f"{BASE}/tools/{agent_id}/channel-presence",
                json={"text": f'<channel_presence note="x">{PRESENCE}</channel_presence>'})


def calls(mocked: Any) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]


def prompt_calls(mocked: Any) -> List[Any]:
    return [c for c in mocked.calls if "/tools/" in c.request.url]


def no_task_deep_plan(**changes: Any) -> Any:
    """A task that turns no deep planning on (its own feature) and has no user."""
    changes.setdefault("deep_planning", {"enabled": False})
    changes.setdefault("input", {"text": "hi", "user": None})
    return make_task(**changes)


def get_args(name: str, agent: Any, task: Any = None, config: Optional[Configuration] = None) -> Dict[str, Any]:
    backend = Backend(config or Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url=BASE))
    return backend.get_args(agent=agent, task=task, framework=name)


# -- pure pieces ----------------------------------------------------------------------------------------------


def test_place_dynamic_prompt() -> None:
    assert place_dynamic_prompt("base", "dyn", "after") == "base\n\ndyn"
    assert place_dynamic_prompt("base", "dyn", None) == "base\n\ndyn"
    assert place_dynamic_prompt("base", "dyn", "somewhere") == "base\n\ndyn"
    assert place_dynamic_prompt("base", " dyn ", "Before") == "dyn\n\nbase"
    assert place_dynamic_prompt("base", "  ", "before") == "base"
    assert place_dynamic_prompt("  ", "dyn", "after") == "dyn"


def test_environment_block_from_layers() -> None:
    agent = features_agent(runtime_environment={"context_layers": [
        {"name": "A", "content": "one"}, {"name": "", "text": "two"}, {"name": "B", "content": " "}, "junk",
    ]})
    layers = context_layers(agent)
    assert layers == [{"name": "A", "content": "one"}, {"name": "Context", "content": "two"}]
    assert environment_block(layers) == (
        f'<environment_context note="{ENVIRONMENT_NOTE}">\n### A\none\n\n### Context\ntwo\n</environment_context>'
    )
    assert context_layers(features_agent(runtime_environment={"context_layers": {"X": "y"}})) == [
        {"name": "X", "content": "y"}]
    assert context_layers(features_agent(runtime_environment=None)) == []
    assert environment_block([]) == ""


def test_presence_block() -> None:
    assert presence_block(" here ") == f'<channel_presence note="{PRESENCE_NOTE}">\nhere\n</channel_presence>'
    assert presence_block("  ") == ""


# -- every adapter --------------------------------------------------------------------------------------------


@each_adapter()
def test_the_three_texts_reach_every_framework(name: str, mocked: Any) -> None:
    mock_prompts(mocked)
    args = get_args(name, features_agent(), no_task_deep_plan())
    assert sorted(calls(mocked)) == sorted([
        "GET /metadata/default_llm_extra_headers",
        "POST /tools/agt-features/dynamic-prompt",
        "POST /tools/agt-features/channel-presence",
    ])
    for call in prompt_calls(mocked):
        assert call.request.body is None and "Content-Type" not in call.request.headers
        assert call.request.headers["x-api-key"] == SENTINEL_KEY
    text = prompt_text(name, args)
    env = text.index("<environment_context")
    role = text.index("You help the sales team")
    dyn = text.index(DYNAMIC)
    presence = text.index("<channel_presence")
    assert env < role < dyn < presence  # environment first, the dynamic prompt after, presence last
    assert "### Company\nAcme sells industrial sensors" in text
    assert f'<channel_presence note="{PRESENCE_NOTE}">\n{PRESENCE}\n</channel_presence>' in text
    assert text.count("<channel_presence") == 1  # the platform's own tags were removed


@each_adapter()
def test_a_dynamic_prompt_before_the_instructions(name: str, mocked: Any) -> None:
    mock_prompts(mocked)
    agent = features_agent()
    agent.instructions.dynamic_prompt_position = "before"
    text = prompt_text(name, get_args(name, agent))  # no task: the texts are there too
    assert text.index(DYNAMIC) < text.index("You help the sales team")


@each_adapter()
def test_a_warm_build_asks_nothing(name: str, mocked: Any) -> None:
    mock_prompts(mocked)
    backend = Backend(Configuration(api_key=SENTINEL_KEY, organization_id="org-test", base_url=BASE))
    first = backend.get_args(agent=features_agent(), framework=name)
    count = len(mocked.calls)
    second = backend.get_args(agent=features_agent(), framework=name)
    assert len(mocked.calls) == count  # presence and dynamic prompt cached with the agent
    assert prompt_text(name, first) == prompt_text(name, second)


@each_adapter()
def test_an_instructions_override_asks_for_neither(name: str, mocked: Any) -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    args = get_args(name, features_agent(), no_task_deep_plan(instructions_override="Only this."))
    assert calls(mocked) == ["GET /metadata/default_llm_extra_headers"]
    text = prompt_text(name, args)
    assert "Only this." in text
    assert DYNAMIC not in text and "<environment_context" not in text and "<channel_presence" not in text


@each_adapter()
def test_an_agent_without_the_settings_costs_only_the_presence(name: str, mocked: Any) -> None:
    mock_prompts(mocked, "agt-openai", dynamic=False)
    agent = make_agent("agt-openai", agno_settings=NO_STORE)
    agent.instructions.dynamic_prompt_enabled = True  # enabled without code: still off
    agent.instructions.dynamic_prompt_code = "   "
    text = prompt_text(name, get_args(name, agent))
    assert sorted(calls(mocked)) == ["GET /metadata/default_llm_extra_headers",
                                     "POST /tools/agt-openai/channel-presence"]
    assert "<environment_context" not in text and PRESENCE in text


@each_adapter()
def test_failures_open(name: str, mocked: Any, caplog: pytest.LogCaptureFixture) -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    mocked.post(f"{BASE}/tools/agt-features/dynamic-prompt", status=500, json={"detail": "boom"})
    mocked.post(f"{BASE}/tools/agt-features/channel-presence", body=requests.ConnectionError("down"))
    caplog.set_level(logging.DEBUG, logger="xpander_sync.frameworks.features.prompts")
    text = prompt_text(name, get_args(name, features_agent()))
    assert "You help the sales team" in text and "<environment_context" in text
    assert DYNAMIC not in text and "<channel_presence" not in text
    levels = {r.levelno for r in caplog.records if "unavailable" in r.getMessage()}
    assert levels == {logging.WARNING, logging.DEBUG}  # the dynamic prompt warns, the presence logs at debug
    assert SENTINEL_KEY not in caplog.text


@each_adapter()
def test_team_members_get_their_own_presence(name: str, mocked: Any) -> None:
    from .conftest import agent_payload

    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    for agent_id in ("agt-team", "agt-anthropic", "agt-sub-b"):
        if agent_id != "agt-team":
            mocked.get(f"{BASE}/agents/{agent_id}", json=dict(agent_payload(agent_id), agno_settings=NO_STORE))
        mocked.post(f"{BASE}/tools/{agent_id}/channel-presence", json={"text": f"presence of {agent_id}"})
    args = get_args(name, make_agent("agt-team", agno_settings=NO_STORE), no_task_deep_plan())
    assert sorted(c for c in calls(mocked) if "/tools/" in c) == [
        "POST /tools/agt-anthropic/channel-presence",
        "POST /tools/agt-sub-b/channel-presence",
        "POST /tools/agt-team/channel-presence",
    ]
    assert "presence of agt-team" in prompt_text(name, args)


# -- a real turn of every framework ---------------------------------------------------------------------------


@pytest.fixture
def local(clean_environ: None, tmp_path: Any) -> Any:
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-prompts") as backend:
        yield backend


@each_adapter()
def test_a_real_turn_sends_the_texts_to_the_model(name: str, local: LocalBackend) -> None:
    from .test_run_matrix import DRIVERS as RUNS

    require_framework(name)
    model = local.mount_llm(ScriptedModel([answer("done")]))
    backend = Backend(Configuration(api_key="xpk-prompts", base_url=local.url, organization_id="local-org"))
    args = backend.get_args(agent_id="agt-features", framework=name)
    backend.get_args(agent_id="agt-features", framework=name)  # warm: nothing asked again
    assert local._prompts.calls() == {("dynamic_prompt", "agt-features"): 1,
                                      ("channel_presence", "agt-features"): 1}
    assert "done" in RUNS[name].run(args, False)
    first = model.requests[0]
    for text in (DYNAMIC, PRESENCE, "### Company", "<environment_context", "<channel_presence"):
        assert first.mentions(text), text

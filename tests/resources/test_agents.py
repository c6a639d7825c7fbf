"""resources.agents: routes, headers and bodies of Agents as the reference lists them."""

from __future__ import annotations

import pytest

from xpander_sync import (
    Agent,
    Agents,
    Configuration,
    InvalidInputError,
    MissingAgentError,
    Task,
    User,
)
from xpander_sync.resources.tasks import CREATE_TASK_KEYS

from ..conftest import BASE, body_of, load_fixture


def test_agents_get_with_and_without_version(mocked, config):
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    agents = Agents(config)
    agent = agents.get("agt-openai")
    assert isinstance(agent, Agent) and agent.configuration is config
    agents.get("agt-openai", version=3)
    first, second = mocked.calls
    assert "x-agent-version" not in first.request.headers
    assert second.request.headers["x-agent-version"] == "3"


def test_agents_get_defaults_to_configured_agent(mocked, monkeypatch):
    monkeypatch.setenv("XPANDER_AGENT_ID", "agt-openai")
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    assert Agents(Configuration(base_url=BASE)).get().id == "agt-openai"


def test_agents_get_without_any_id_is_a_clear_error(config):
    with pytest.raises(MissingAgentError, match="XPANDER_AGENT_ID"):
        Agents(Configuration(base_url=BASE)).get()


@pytest.mark.parametrize("bad", ["", "a/b", "x?y", 5, None])
def test_agent_ids_are_validated(config, bad):
    with pytest.raises((InvalidInputError, MissingAgentError)):
        Agents(config).get_raw(bad)


def test_agents_list(mocked, config):
    mocked.get(f"{BASE}/agents/list", json=[
        {"id": "a1", "name": "One", "icon": "x", "instructions": {}, "status": "ACTIVE",
         "organization_id": "o", "created_at": "2026-03-01T10:00:00Z"},
    ])
    (item,) = Agents(config).list()
    assert (item.id, item.name, item.access_scope) == ("a1", "One", "personal")
    assert item.configuration is config


def test_agent_create_task_body_matches_reference(mocked, config):
    mocked.get(f"{BASE}/agents/agt-openai", json=load_fixture("agent_openai"))
    mocked.post(f"{BASE}/agent-execution/agt-openai", json=load_fixture("create_task_response"))
    loaded = Agents(config).get("agt-openai")
    task = loaded.create_task(
        "Find Ada Lovelace in the CRM and add a note that she asked for a demo.",
        file_urls=["https://files.example.com/uploads/meeting-notes.txt"],
        user_details=User(id="user-42", first_name="Dana", last_name="Levi", email="dana@example.com",
                          additional_attributes={"plan": "enterprise"}, timezone="Europe/Berlin"),
        agent_version=3,
        output_format="markdown",
        events_streaming=True,
        additional_context="The user is on the enterprise plan.",
        expected_output="A one-paragraph confirmation.",
        title="CRM demo follow-up",
    )
    assert isinstance(task, Task) and task.configuration is config
    call = mocked.calls[1]
    body = body_of(call)
    assert list(body) == list(CREATE_TASK_KEYS) and len(body) == 27
    reference = load_fixture("create_task_request")
    for key, value in reference.items():
        assert body[key] == value, key
    assert call.request.headers["x-agent-version"] == "3"
    assert body["llm_model_provider"] is None and body["tool_call_limit"] is None

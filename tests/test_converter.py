"""The converter: sample payloads round-trip, unknown keys are ignored, wrong types name their path."""

from __future__ import annotations

import datetime as dt

import pytest

from xpander_sync import (
    Agent,
    AgentExecutionStatus,
    MCPServerTransport,
    OutputFormat,
    ResponseDecodeError,
    Task,
    TaskUpdateEvent,
    TaskUpdateEventType,
    Tokens,
)
from xpander_sync._converter import parse_datetime, structure, unstructure

from .conftest import load_fixture

AGENTS = ["agent_openai", "agent_anthropic", "agent_team", "agent_sub_b", "agent_mcp"]


@pytest.mark.parametrize("name", AGENTS)
def test_sample_agents_structure(name):
    data = load_fixture(name)
    agent = structure(data, Agent)
    assert agent.id == data["id"] and agent.model_name == data["model_name"]
    assert agent.output_format.value == data["output_format"]
    assert len(agent.tools) == len(data["tools"]) and len(agent.graph) == len(data["graph"])
    again = structure(unstructure(agent), Agent)
    assert again == agent


def test_agent_details():
    agent = structure(load_fixture("agent_openai"), Agent)
    assert [t.id for t in agent.tools] == ["XpanderCrmSearchContacts", "XpanderCrmCreateNote"]
    # the second tool only has ``function_description``: it becomes the description
    assert agent.tools[1].description == "Attach a free-text note to a CRM contact."
    assert agent.version == 3 and agent.knowledge_bases[0].id == "kb-1"
    assert agent.agno_settings.num_history_runs == 10 and agent.agno_settings.session_storage is True
    assert agent.created_at == dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert agent.instructions.instructions == (
        "\n        <instructions>\n            ['You work for the sales team.', "
        "'Always confirm the contact before writing a note.']\n        </instructions>"
        "\n        <goals>\n            Keep CRM records accurate\n        </goals>\n        "
    )
    team = structure(load_fixture("agent_team"), Agent)
    assert team.is_a_team and team.sub_agents == ["agt-anthropic", "agt-sub-b"]
    mcp = structure(load_fixture("agent_mcp"), Agent)
    (server,) = mcp.mcp_servers
    assert server.transport == MCPServerTransport.STREAMABLE_HTTP and server.allowed_tools == ["search", "fetch"]
    assert mcp.graph_item_for(server).id == "gi-mcp-1"


def test_local_mcp_servers_use_stdio():
    data = load_fixture("agent_mcp")
    data["graph"][0]["settings"]["mcp_settings"].update(type="local", command="npx server", url=None)
    assert structure(data, Agent).mcp_servers[0].transport == MCPServerTransport.STDIO


def test_unknown_keys_are_ignored_and_unknown_enums_kept():
    data = dict(load_fixture("agent_openai"), brand_new_field={"x": 1}, output_format="pdf")
    agent = structure(data, Agent)
    assert agent.output_format.value == "pdf" and isinstance(agent.output_format, OutputFormat)
    assert unstructure(agent)["output_format"] == "pdf"
    assert "brand_new_field" not in unstructure(agent)


def test_wrong_types_raise_decode_error_with_paths_and_no_values():
    data = load_fixture("agent_openai")
    data["version"] = "three-SECRET-VALUE"
    data["tools"][1]["parameters"] = ["not", "an", "object"]
    data["agno_settings"]["session_storage"] = "yes"
    del data["name"]
    with pytest.raises(ResponseDecodeError) as info:
        structure(data, Agent)
    err = info.value
    assert err.model == "Agent"
    joined = " | ".join(err.errors)
    assert "@ $.version" in joined and "@ $.tools[1].parameters" in joined
    assert "@ $.agno_settings.session_storage" in joined and "required field missing @ $.name" in joined
    assert "SECRET" not in str(err) and err.__cause__ is None and err.__suppress_context__


def test_non_object_payload():
    with pytest.raises(ResponseDecodeError, match=r"expected a JSON object, got array @ \$"):
        structure([1, 2], Agent)


def test_task_samples_and_defaults():
    task = structure(load_fixture("task_status"), Task)
    assert task.status is AgentExecutionStatus.COMPLETED
    assert task.tokens == Tokens(completion_tokens=212, prompt_tokens=1830)
    assert task.deep_planning.tasks[1].title == "Create note"
    assert task.input.user.email == "dana@example.com"
    minimal = structure(load_fixture("report_response"), Task)
    # no tuple defaults (upstream bug): absent keys are plain None / []
    assert minimal.expected_output is None and minimal.mcp_servers == []
    assert minimal.title is None and minimal.triggering_agent_id is None


def test_task_agent_version_accepts_integers():
    data = dict(load_fixture("report_response"), agent_version=4)
    assert structure(data, Task).agent_version == "4"


def test_task_unstructure_is_wire_json():
    task = structure(load_fixture("create_task_response"), Task)
    wire = unstructure(task)
    assert "configuration" not in wire
    assert wire["created_at"] == "2026-03-21T09:15:02.481000Z"
    assert wire["status"] == "pending" and wire["think_mode"] == "default"
    assert wire["input"] == load_fixture("create_task_response")["input"]  # no empty attachments/principal
    assert wire["expected_output"] == "A one-paragraph confirmation." and wire["mcp_servers"] == []


def test_tokens_total_is_computed_and_always_serialised():
    assert unstructure(Tokens(completion_tokens=3, prompt_tokens=4, cache_read_tokens=9)) == {
        "completion_tokens": 3, "prompt_tokens": 4, "cache_read_tokens": 9, "cache_write_tokens": 0,
        "total_tokens": 7,
    }
    assert structure({"completion_tokens": 1, "prompt_tokens": 1, "total_tokens": 99}, Tokens).total_tokens == 2
    assert Tokens(completion_tokens=None, prompt_tokens=5).total_tokens == 5


def test_event_serialises_time_with_z():
    event = TaskUpdateEvent(
        type=TaskUpdateEventType.AUTH_EVENT, task_id="t", organization_id="o",
        time=dt.datetime(2026, 3, 21, 9, 15, 3, 117000, tzinfo=dt.timezone.utc), data={"a": 1},
    )
    assert unstructure(event) == {
        "type": "auth_event", "task_id": "t", "organization_id": "o", "time": "2026-03-21T09:15:03.117000Z",
        "data": {"a": 1}, "identity": None,
    }


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-03-21T09:15:02.481Z", dt.datetime(2026, 3, 21, 9, 15, 2, 481000, tzinfo=dt.timezone.utc)),
        ("2026-03-21T09:15:02.4812345+02:00", dt.datetime(2026, 3, 21, 9, 15, 2, 481234,
                                                          tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("2026-03-21T09:00:02.394289", dt.datetime(2026, 3, 21, 9, 0, 2, 394289)),
    ],
)
def test_datetime_parsing(text, expected):
    assert parse_datetime(text) == expected


def test_secrets_in_models_are_hidden():
    agent = structure(load_fixture("agent_anthropic"), Agent)
    assert "sk-ant-CUSTOM" not in repr(agent)
    assert agent.llm_credentials.value.reveal() == "sk-ant-CUSTOM"
    assert unstructure(agent)["llm_credentials"]["value"] == "sk-ant-CUSTOM"  # the wire needs the value


def test_tokens_keep_a_given_total_and_compute_it_otherwise():
    from xpander_sync import InvalidInputError, Tokens

    given = Tokens(completion_tokens=150, prompt_tokens=50, total_tokens=210)  # the seed guide's call
    assert given.total_tokens == 210 and unstructure(given)["total_tokens"] == 210
    assert "total_tokens=210" in repr(given)
    computed = Tokens(completion_tokens=150, prompt_tokens=50)
    assert computed.total_tokens == 200 and unstructure(computed)["total_tokens"] == 200
    with pytest.raises(InvalidInputError, match="total_tokens"):
        Tokens(total_tokens="200")

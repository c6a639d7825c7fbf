"""xpander tools as the LLM sees them (schemas) and as the platform receives them (payloads)."""

from __future__ import annotations

import copy

import pytest

from xpander_sync._converter import structure
from xpander_sync.frameworks._tools import (
    build_payload,
    deep_merge,
    input_override,
    llm_schema,
    tool_description,
)
from xpander_sync.models import Agent, Tool

from ..conftest import load_fixture


@pytest.fixture
def agent() -> Agent:
    return structure(load_fixture("agent_openai"), Agent)


def tool_by_id(agent: Agent, tool_id: str) -> Tool:
    return next(t for t in agent.tools if t.id == tool_id)


# -- the sample of the reference (section 13) --------------------------------------------------


def test_search_schema_matches_the_reference_llm_facing_schema(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    original = copy.deepcopy(tool.parameters)
    schema = llm_schema(tool, input_override(agent, tool))

    query = schema["properties"]["query_params"]
    # The graph override gave `company` a permanent value: the LLM never sees it.
    assert set(query["properties"]) == {"q", "limit"}
    assert query["required"] == ["q"]
    assert query["properties"]["limit"]["default"] == 10
    # Empty containers are optional; the one with properties stays required.
    assert schema["required"] == ["query_params"]
    assert set(schema["properties"]) == {"query_params", "path_params", "body_params"}
    assert "permanentValue" not in repr(schema) and "isBlocked" not in repr(schema)
    assert tool.parameters == original  # the agent's tool is not modified


def test_search_payload_is_the_verified_wire_body(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    payload = build_payload(tool, {"query_params": {"q": "ada"}}, override=input_override(agent, tool))
    assert payload == {
        "query_params": {"q": "ada", "limit": 10, "company": "Acme"},
        "path_params": {},
        "body_params": {},
    }


def test_note_tool_keeps_optional_parameters_optional(agent):
    tool = tool_by_id(agent, "XpanderCrmCreateNote")
    assert input_override(agent, tool) is None  # its graph item has settings: null
    schema = llm_schema(tool, None)
    body = schema["properties"]["body_params"]
    assert body["required"] == ["text"]
    assert set(body["properties"]) == {"text", "visibility", "tags"}
    assert schema["required"] == ["path_params", "body_params"]  # query_params is empty → optional


def test_description_falls_back_to_function_description_then_name(agent):
    assert (
        tool_by_id(agent, "XpanderCrmCreateNote").description == "Attach a free-text note to a CRM contact."
    )
    assert tool_description(tool_by_id(agent, "XpanderCrmSearchContacts")).startswith("Search contacts")
    assert tool_description(Tool(id="t", name="Do the thing")) == "Do the thing"
    assert tool_description(Tool(id="t", name="n", description="  ")) == "n"


def test_llm_arguments_are_not_modified(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    arguments = {"query_params": {"q": "ada", "limit": None}}
    snapshot = copy.deepcopy(arguments)
    build_payload(
        tool, arguments, override=input_override(agent, tool), payload_extension={"query_params": {"x": 1}}
    )
    assert arguments == snapshot


# -- override extensions ----------------------------------------------------------------------


def crm_tool() -> Tool:
    return Tool(
        id="Crm",
        name="crm",
        parameters={
            "type": "object",
            "properties": {
                "body_params": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "old"},
                        "owner": {"type": "string"},
                        "secret_flag": {"type": "boolean"},
                        "contacts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"email": {"type": "string"}, "source": {"type": "string"}},
                                "required": ["email", "source"],
                            },
                        },
                    },
                    "required": ["text", "owner", "secret_flag"],
                },
            },
            "required": ["body_params"],
        },
    )


CRM_OVERRIDE = {
    "type": "object",
    "properties": {
        "body_params": {
            "type": "object",
            "properties": {
                "text": {"description": "The note, in English"},
                "owner": {"permanentValue": "ops-team"},
                "secret_flag": {"isBlocked": True},
                "contacts": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"source": {"permanentValue": "agent"}}},
                },
                "not_in_the_tool": {"description": "ignored"},
            },
        },
        "headers": {"type": "object", "properties": {"x-tenant": {"permanentValue": "t-1"}}},
    },
}


def test_override_hides_blocked_and_permanent_and_replaces_descriptions():
    schema = llm_schema(crm_tool(), CRM_OVERRIDE)
    body = schema["properties"]["body_params"]
    assert set(body["properties"]) == {"text", "contacts"}
    assert body["required"] == ["text"]
    assert body["properties"]["text"]["description"] == "The note, in English"
    item = body["properties"]["contacts"]["items"]
    assert set(item["properties"]) == {"email"} and item["required"] == ["email"]
    assert "not_in_the_tool" not in body["properties"]
    assert "headers" not in schema["properties"]  # an override never adds a property


def test_permanent_values_create_missing_containers_and_array_items():
    payload = build_payload(crm_tool(), {"body_params": {"text": "hi"}}, override=CRM_OVERRIDE)
    assert payload["body_params"] == {"text": "hi", "owner": "ops-team", "contacts": [{"source": "agent"}]}
    assert payload["headers"] == {"x-tenant": "t-1"}
    assert payload["query_params"] == {} and payload["path_params"] == {}


def test_permanent_values_apply_to_every_array_item_and_win_over_the_llm():
    arguments = {
        "body_params": {
            "text": "hi",
            "owner": "llm-choice",
            "secret_flag": True,  # blocked: the LLM was never offered it
            "contacts": [{"email": "a@x", "source": "llm"}, {"email": "b@x"}],
        }
    }
    payload = build_payload(crm_tool(), arguments, override=CRM_OVERRIDE)
    body = payload["body_params"]
    assert body["owner"] == "ops-team"
    assert "secret_flag" not in body
    assert body["contacts"] == [{"email": "a@x", "source": "agent"}, {"email": "b@x", "source": "agent"}]


# -- payload rules ----------------------------------------------------------------------------


def test_payload_extension_deep_merges_and_wins_but_not_over_permanent_values(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    extension = {"query_params": {"limit": 3, "company": "Evil"}, "headers": {"x-trace": "t"}}
    payload = build_payload(
        tool,
        {"query_params": {"q": "ada", "limit": 50}},
        override=input_override(agent, tool),
        payload_extension=extension,
    )
    assert payload["query_params"] == {"q": "ada", "limit": 3, "company": "Acme"}
    assert payload["headers"] == {"x-trace": "t"}


def test_none_values_are_dropped_and_defaults_fill_nulls(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    payload = build_payload(tool, {"query_params": {"q": "ada", "limit": None}, "body_params": {"x": None}})
    assert payload == {"query_params": {"q": "ada", "limit": 10}, "path_params": {}, "body_params": {}}


def test_payload_wrapper_and_stringified_containers_are_accepted(agent):
    tool = tool_by_id(agent, "XpanderCrmSearchContacts")
    wrapped = build_payload(tool, {"payload": {"query_params": {"q": "ada"}}})
    stringified = build_payload(tool, {"query_params": '{"q": "ada"}'})
    expected = {"query_params": {"q": "ada", "limit": 10}, "path_params": {}, "body_params": {}}
    assert wrapped == expected and stringified == expected


def test_local_tools_get_no_containers():
    tool = Tool(
        id="local_sum",
        name="sum",
        is_local=True,
        parameters={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
            "required": ["a"],
        },
    )
    assert build_payload(tool, {"a": 1}) == {"a": 1, "b": 2}
    assert llm_schema(tool)["required"] == ["a"]


def test_tool_without_parameters_gets_an_empty_object_schema():
    schema = llm_schema(Tool(id="ping", name="ping"))
    assert schema == {"type": "object", "properties": {}}
    assert build_payload(Tool(id="ping", name="ping"), None) == {
        "query_params": {},
        "path_params": {},
        "body_params": {},
    }


def test_deep_merge_copies_and_extension_wins():
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    merged = deep_merge(base, {"a": {"b": 2, "e": 3}, "d": {"x": 1}})
    assert merged == {"a": {"b": 2, "c": [1], "e": 3}, "d": {"x": 1}}
    merged["a"]["c"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}

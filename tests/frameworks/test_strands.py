"""The Strands adapter: real ``strands.Agent`` objects from the sample agents (no LLM, no network)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

pytest.importorskip("strands", reason='strands-agents is not installed: pip install "xpander-sync[strands-agents]"')
from pydantic import ValidationError
from strands import Agent as StrandsAgent
from strands.models.anthropic import AnthropicModel
from strands.models.openai import OpenAIModel
from strands.models.openai_responses import OpenAIResponsesModel
from strands.tools.tools import PythonAgentTool

from xpander_sync import Backend
from xpander_sync.frameworks import _tools
from xpander_sync.frameworks.strands import build_strands_args, pydantic_model_from_schema

from .conftest import (
    ACCEPTANCE_AGENTS,
    MCP_TASK_SERVERS,
    ORG,
    FakeContext,
    assert_operation_posted,
    make_agent,
    make_task,
    mock_members,
    mock_operation,
    mock_platform,
)

NAME = "strands-agents"
pytestmark = [pytest.mark.framework(NAME), pytest.mark.usefixtures("openai_env")]


def build(agent, task=None, context=None, **kw):
    return build_strands_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


def stream_result(tool: PythonAgentTool, arguments) -> dict:
    """What Strands' executor does when the LLM calls the tool: the last event of ``stream``."""

    async def run():
        events = [e async for e in tool.stream({"toolUseId": "call-1", "name": tool.tool_name, "input": arguments}, {})]
        return events[-1].tool_result

    return asyncio.run(run())


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


@pytest.mark.parametrize("agent_id", ACCEPTANCE_AGENTS)
def test_sample_agents_construct_offline_from_get_args(mocked, config, agent_id):
    mock_platform(mocked, agent_id)
    if agent_id == "agt-team":
        mock_members(mocked)
    args = Backend(config).get_args(agent_id=agent_id, task=make_task(output_format=None), framework=NAME)
    built = StrandsAgent(**args)
    assert built.name == make_agent(agent_id).name and built.agent_id == agent_id


def test_tool_call_through_a_direct_call_and_stream_posts_the_operation(mocked, config):
    mock_platform(mocked, "agt-openai")
    args = Backend(config).get_args(agent_id="agt-openai", task=make_task(), framework=NAME)
    agent = StrandsAgent(**args)
    mock_operation(mocked)
    result = agent.tool.XpanderCrmSearchContacts(query_params={"q": "ada"}, record_direct_tool_call=False)
    assert result["status"] == "success"
    assert json.loads(result["content"][0]["text"]) == {"contacts": [{"id": "c-1", "name": "Ada"}]}
    assert_operation_posted(mocked)

    mock_operation(mocked)
    streamed = stream_result(args["tools"][0], {"query_params": {"q": "ada"}})
    assert streamed["toolUseId"] == "call-1" and streamed["status"] == "success"
    assert_operation_posted(mocked)


# -- identity, instructions -------------------------------------------------------------------------


def test_identity_description_and_one_system_prompt():
    args = build(make_agent(), make_task())
    assert (args["agent_id"], args["name"]) == ("agt-openai", "CRM Assistant")
    assert args["description"] == "Looks up CRM contacts and writes notes"
    prompt = args["system_prompt"]
    assert "<instructions>" in prompt and "<expected_output>\nA one-paragraph confirmation." in prompt
    assert 'User details: {"id":"user-42"' in prompt
    assert args["callback_handler"] is None  # Strands' default prints to stdout


# -- model ------------------------------------------------------------------------------------------


def test_openai_model_key_headers_and_settings():
    model = build(make_agent())["model"]
    assert type(model) is OpenAIModel and model.config["model_id"] == "gpt-4.1"
    assert model.client_args == {"api_key": "sk-env-openai", "default_headers": {"X-Org-Trace": "fake-org-trace"}}
    assert model.config["params"] == {"temperature": 0.0, "user": ORG, "prompt_cache_key": f"{ORG}:agt-openai"}


@pytest.mark.parametrize(
    "cloud, env_key, expected",
    [(False, None, "sk-ant-CUSTOM"), (False, "sk-ant-ENV", "sk-ant-ENV"), (True, "sk-ant-ENV", "sk-ant-CUSTOM")],
)
def test_anthropic_key_precedence(monkeypatch, cloud, env_key, expected):
    if cloud:
        monkeypatch.setenv("IS_XPANDER_CLOUD", "true")
    if env_key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", env_key)
    args = build(make_agent("agt-anthropic"))
    model = args["model"]
    assert type(model) is AnthropicModel and model.client.api_key == expected
    assert model.config == {"model_id": "claude-sonnet-4-5-20250929", "max_tokens": 32000,
                            "params": {"temperature": 0.0}}
    assert model.client.default_headers["x-team"] == "legal"
    assert model.client.default_headers["X-Org-Trace"] == "fake-org-trace"
    StrandsAgent(**args)


def test_reasoning_and_responses_only_models():
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))["model"]
    assert high.config["params"]["reasoning_effort"] == "high" and "temperature" not in high.config["params"]
    responses = build(make_agent(), make_task(llm_model_name="gpt-6"))["model"]
    assert type(responses) is OpenAIResponsesModel and responses.config["model_id"] == "gpt-6"


def test_openai_compatible_provider_gets_its_endpoint_and_no_env_key():
    model = build(make_agent(model_provider="fireworks", model_name="accounts/x/models/y"))["model"]
    assert model.client_args["base_url"] == "https://api.fireworks.ai/inference/v1"
    assert model.client_args["api_key"] == "EMPTY"


# -- structured output ----------------------------------------------------------------------------


def test_json_output_schema_becomes_an_equivalent_pydantic_model():
    agent = make_agent("agt-json")
    args = build(agent)
    model = args["structured_output_model"]
    schema = model.model_json_schema()
    assert schema["required"] == ["vendor", "total", "currency"]
    assert schema["properties"]["vendor"]["description"] == "Vendor name"
    parsed = model.model_validate({"vendor": "Acme", "total": 12.5, "currency": "EUR",
                                   "line_items": [{"description": "x", "amount": 1}]})
    assert parsed.line_items[0].amount == 1
    with pytest.raises(ValidationError):
        model.model_validate({"vendor": "Acme"})  # required fields stay required
    assert "structured_output_model" not in build(agent, make_task(output_format="text"))
    StrandsAgent(**args)


def test_schema_conversion_of_enums_unions_aliases_and_closed_objects():
    model = pydantic_model_from_schema({
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "risk": {"enum": ["low", "high"]},
            "score": {"type": ["number", "null"]},
            "from": {"type": "string"},
            "tags": {"type": "array"},
            "meta": {"type": "object"},
            "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["risk", "from"],
    })
    value = model.model_validate({"risk": "low", "from": "me", "score": None, "tags": [1], "any": 3})
    assert value.model_dump(by_alias=True)["from"] == "me"
    with pytest.raises(ValidationError):
        model.model_validate({"risk": "medium", "from": "me"})
    with pytest.raises(ValidationError):
        model.model_validate({"risk": "low", "from": "me", "extra": 1})
    assert pydantic_model_from_schema({"type": "string"}).model_validate({"value": "x"}).value == "x"


# -- tools --------------------------------------------------------------------------------------------


def test_tool_schema_verbatim_and_optional_parameters_stay_optional():
    agent = make_agent()
    search, note, knowledge = build(agent, make_task())["tools"]
    assert knowledge.tool_name == "search_knowledge_base"  # agt-openai has a knowledge base (features/knowledge.py)
    assert isinstance(search, PythonAgentTool)
    expected = _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert search.tool_spec["inputSchema"]["json"] == expected
    assert note.tool_spec["description"] == "Attach a free-text note to a CRM contact."


def test_extra_tools_are_appended_and_override_applies_last():
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    mine = OpenAIModel(client_args={"api_key": "k"}, model_id="gpt-4o-mini")
    context = FakeContext()
    args = build(make_agent(), make_task(), context, tools=[lookup],
                 override={"model": mine, "callback_handler": print})
    assert args["tools"][-1] is lookup and args["model"] is mine and args["callback_handler"] is print
    assert "org_llm_headers" not in context.calls
    StrandsAgent(**args)


# -- MCP ----------------------------------------------------------------------------------------------


def test_mcp_servers_are_not_built_and_a_warning_names_them(caplog):
    caplog.set_level(logging.WARNING, logger="xpander_sync")
    context = FakeContext()
    args = build(make_agent("agt-mcp"), make_task(mcp_servers=MCP_TASK_SERVERS), context)
    assert args["tools"] == []
    assert "3 MCP server(s) not built by the strands-agents adapter: strands connects" in caplog.text
    assert not [c for c in context.calls if c[0] == "mcp_headers"]
    StrandsAgent(**args)  # would connect with an MCPClient in tools: offline, nothing is attempted


# -- teams --------------------------------------------------------------------------------------------


def test_team_members_become_agents_as_tools_with_their_own_models():
    context = FakeContext()
    args = build(make_agent("agt-team"), make_task(instructions_override="Leader only."), context)
    team = StrandsAgent(**args)
    assert team.tool_names == ["ask_contract_reviewer", "ask_researcher"]
    reviewer, researcher = (tool._agent for tool in args["tools"])
    assert isinstance(reviewer, StrandsAgent) and reviewer.agent_id == "agt-anthropic"
    assert type(reviewer.model) is AnthropicModel and reviewer.model.client.api_key == "sk-ant-CUSTOM"
    assert type(researcher.model) is OpenAIModel and researcher.model.config["model_id"] == "gpt-4.1-mini"
    assert "Leader only." in args["system_prompt"] and "Leader only." not in reviewer.system_prompt
    assert args["tools"][0].tool_spec["description"].startswith("Delegate a request to the team member")


# -- installation -------------------------------------------------------------------------------------



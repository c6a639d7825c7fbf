"""The Pydantic AI adapter: real ``pydantic_ai.Agent`` objects from the sample agents (no LLM, no network)."""

from __future__ import annotations

import asyncio
import json
import types

import pytest

pytest.importorskip("pydantic_ai", reason='pydantic-ai is not installed: pip install "xpander-sync[pydantic-ai]"')
from pydantic import TypeAdapter
from pydantic_ai import Agent as PAgent
from pydantic_ai import Tool
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.toolsets import FilteredToolset

from xpander_sync import Backend, InvalidInputError
from xpander_sync.frameworks import _tools, get_args_for
from xpander_sync.frameworks.pydantic_ai import build_pydantic_ai_args

from .conftest import (
    MCP_TASK_SERVERS,
    ORG,
    FakeContext,
    assert_operation_posted,
    make_agent,
    make_task,
    mock_operation,
    mock_platform,
)

NAME = "pydantic-ai"
pytestmark = [pytest.mark.framework(NAME), pytest.mark.usefixtures("openai_env")]


def build(agent, task=None, context=None, **kw):
    return build_pydantic_ai_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


def calling(tool_name: str, arguments: dict) -> FunctionModel:
    """A model that calls one tool, then answers with what the tool returned."""

    def respond(messages, info: AgentInfo) -> ModelResponse:
        returned = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if returned:
            return ModelResponse(parts=[TextPart(str(returned[-1].content))])
        return ModelResponse(parts=[ToolCallPart(tool_name, arguments, tool_call_id="call-1")])

    return FunctionModel(respond)


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


def test_tool_call_through_the_agents_toolset_posts_the_operation(mocked, config):
    mock_platform(mocked, "agt-openai")
    args = Backend(config).get_args(agent_id="agt-openai", task=make_task(), framework=NAME)
    agent = PAgent(**args)
    mock_operation(mocked)
    with agent.override(model=calling("XpanderCrmSearchContacts", {"query_params": {"q": "ada"}})):
        result = agent.run_sync("Find Ada")
    assert json.loads(result.output) == {"contacts": [{"id": "c-1", "name": "Ada"}]}
    assert_operation_posted(mocked)

    mock_operation(mocked)
    assert "Ada" in args["tools"][0].function(query_params={"q": "ada"})  # Tool.function, directly
    assert_operation_posted(mocked)


def test_the_framework_name_is_our_own():
    args = get_args_for(make_agent(), make_task(), context=FakeContext(), framework="pydantic-ai")
    assert isinstance(args["model"], OpenAIChatModel)


# -- identity, instructions -------------------------------------------------------------------------


def test_identity_description_and_one_instructions_text():
    args = build(make_agent(), make_task())
    assert args["name"] == "CRM Assistant" and args["description"] == "Looks up CRM contacts and writes notes"
    prompt = args["instructions"]
    assert "<instructions>" in prompt and "<expected_output>\nA one-paragraph confirmation." in prompt
    assert 'User details: {"id":"user-42"' in prompt


# -- model ------------------------------------------------------------------------------------------


def test_openai_model_key_headers_and_settings():
    model = build(make_agent())["model"]
    assert type(model) is OpenAIChatModel and model.model_name == "gpt-4.1"
    assert model.client.api_key == "sk-env-openai" and str(model.client.base_url) == "https://api.openai.com/v1/"
    assert model.client.default_headers["X-Org-Trace"] == "fake-org-trace"
    assert model.settings == {"temperature": 0.0, "openai_user": ORG, "openai_prompt_cache_key": f"{ORG}:agt-openai"}


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
    assert model.model_name == "claude-sonnet-4-5-20250929"
    assert model.settings == {"temperature": 0.0, "max_tokens": 32000}
    assert model.client.default_headers["x-team"] == "legal"
    assert model.client.default_headers["X-Org-Trace"] == "fake-org-trace"
    PAgent(**args)


def test_reasoning_and_responses_only_models():
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))["model"]
    assert high.settings["openai_reasoning_effort"] == "high" and "temperature" not in high.settings
    responses = build(make_agent(), make_task(llm_model_name="gpt-6"))["model"]
    assert type(responses) is OpenAIResponsesModel and responses.model_name == "gpt-6"


def test_openai_compatible_provider_gets_its_endpoint_and_no_env_key():
    model = build(make_agent(model_provider="cerebras", model_name="llama-4"))["model"]
    assert str(model.client.base_url) == "https://api.cerebras.ai/v1/" and model.client.api_key == "EMPTY"
    with pytest.raises(InvalidInputError, match="needs the agent's llm_api_base"):
        build(make_agent(model_provider="openai_compatible"))


# -- structured output ----------------------------------------------------------------------------


def test_json_output_schema_as_a_structured_dict():
    agent = make_agent("agt-json")
    args = build(agent)
    output = args["output_type"]
    assert TypeAdapter(output).json_schema() == dict(agent.output_schema, title="StructuredOutput")
    built = PAgent(**args)
    with built.override(model=TestModel(custom_output_args={"vendor": "Acme", "total": 1, "currency": "EUR"})):
        assert built.run_sync("Extract").output == {"vendor": "Acme", "total": 1, "currency": "EUR"}
    assert "output_type" not in build(agent, make_task(output_format="text"))


# -- tools --------------------------------------------------------------------------------------------


def test_tool_schema_verbatim_and_optional_parameters_stay_optional():
    agent = make_agent()
    search, note, knowledge = build(agent, make_task())["tools"]
    assert knowledge.name == "search_knowledge_base"  # agt-openai has a knowledge base (features/knowledge.py)
    assert isinstance(search, Tool)
    expected = _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert search.tool_def.parameters_json_schema == expected
    assert search.tool_def.parameters_json_schema["properties"]["query_params"]["required"] == ["q"]
    assert note.description == "Attach a free-text note to a CRM contact."


def test_extra_tools_are_appended_and_override_applies_last():
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    mine = TestModel()
    context = FakeContext()
    args = build(make_agent(), make_task(), context, tools=[lookup], override={"model": mine, "retries": 5})
    assert args["tools"][-1] is lookup and args["model"] is mine and args["retries"] == 5
    assert "org_llm_headers" not in context.calls
    PAgent(**args)


# -- MCP ----------------------------------------------------------------------------------------------


def test_mcp_servers_are_toolsets_with_context_headers_and_not_connected():
    context = FakeContext()
    agent = make_agent("agt-mcp")
    task = make_task(mcp_servers=MCP_TASK_SERVERS)
    args = build(agent, task, context)
    remote, local, sse = args["toolsets"]
    assert isinstance(remote, FilteredToolset) and isinstance(remote.wrapped, MCPToolset)
    transport = remote.wrapped.client.transport
    assert transport.url == "https://mcp.notion.example/mcp"
    assert transport.headers == {"X-Static": "1", "Authorization": "Bearer oauth-token"}
    assert isinstance(local, FilteredToolset)  # allowed_tools=["echo"]
    stdio = local.wrapped.client.transport
    assert (stdio.command, stdio.args, stdio.env) == ("npx", ["-y", "@mcp/everything", "--label", "a b"],
                                                      {"TOKEN": "t", "N": "1"})
    assert isinstance(sse, MCPToolset) and sse.client.transport.url == "https://sse.example/sse"
    assert agent.mcp_servers[0].api_key is None and all(s.api_key is None for s in task.mcp_servers)
    PAgent(**args)


# -- teams --------------------------------------------------------------------------------------------


def test_team_members_become_delegation_tools_running_their_own_agents():
    context = FakeContext()
    args = build(make_agent("agt-team"), make_task(instructions_override="Leader only."), context)
    reviewer, researcher = args["tools"]
    assert (reviewer.name, researcher.name) == ("ask_contract_reviewer", "ask_researcher")
    assert reviewer.description == "Delegate a request to the team member 'Contract Reviewer': Scores contract risk"
    assert ("load_agents", ["agt-anthropic", "agt-sub-b"]) in context.calls
    PAgent(**args)

    # Each member is a pydantic_ai.Agent run on the request (a test model for everyone here).
    team = build(make_agent("agt-team"), None, FakeContext(), override={"model": TestModel(custom_output_text="ok")})
    # (it takes the run context: the member runs with the leader's usage; its run is the return's metadata)
    returned = asyncio.run(team["tools"][1].function(types.SimpleNamespace(usage=None), request="Find sources"))
    assert returned.return_value == "ok"
    leader = PAgent(**team)
    with leader.override(model=calling("ask_researcher", {"request": "Find sources"})):
        assert leader.run_sync("Research").output == "ok"


# -- installation -------------------------------------------------------------------------------------



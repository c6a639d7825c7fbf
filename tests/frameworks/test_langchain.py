"""The LangChain adapter: real ``create_agent`` graphs from the sample agents (no LLM, no network)."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("langchain.agents", reason='langchain is not installed: pip install "xpander-sync[langchain]"')
from langchain.agents import create_agent
from langchain.agents.middleware import ToolCallLimitMiddleware
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import StructuredTool
from langchain_openai import ChatOpenAI

from xpander_sync import Backend
from xpander_sync.frameworks import _tools
from xpander_sync.frameworks.langchain import build_langchain_args

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

NAME = "langchain"
pytestmark = [pytest.mark.framework(NAME), pytest.mark.usefixtures("openai_env")]


def build(agent, task=None, context=None, **kw):
    return build_langchain_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


def test_tool_call_through_invoke_posts_the_operation(mocked, config):
    mock_platform(mocked, "agt-openai")
    args = Backend(config).get_args(agent_id="agt-openai", task=make_task(), framework=NAME)
    create_agent(**args)
    mock_operation(mocked)
    search = args["tools"][0]
    assert json.loads(search.invoke({"query_params": {"q": "ada"}})) == {"contacts": [{"id": "c-1", "name": "Ada"}]}
    assert_operation_posted(mocked)
    # and as the agent's tool node calls it: a tool call, answered with a ToolMessage
    mock_operation(mocked)
    message = search.invoke({"type": "tool_call", "id": "call-1", "name": search.name,
                             "args": {"query_params": {"q": "ada"}}})
    assert message.tool_call_id == "call-1" and "Ada" in message.content
    assert_operation_posted(mocked)


# -- identity, instructions -------------------------------------------------------------------------


def test_name_and_one_system_prompt():
    args = build(make_agent(), make_task())
    assert args["name"] == "CRM_Assistant"  # becomes the messages' name: OpenAI allows [A-Za-z0-9_-]
    prompt = args["system_prompt"]
    assert prompt.startswith("Looks up CRM contacts and writes notes\n\n<instructions>")
    assert "<expected_output>\nA one-paragraph confirmation.\n</expected_output>" in prompt
    assert "Use markdown to format your answers." in prompt and 'User details: {"id":"user-42"' in prompt


# -- model ------------------------------------------------------------------------------------------


def test_openai_model_key_headers_and_settings():
    model = build(make_agent())["model"]
    assert type(model) is ChatOpenAI and model.model_name == "gpt-4.1"
    assert model.openai_api_key.get_secret_value() == "sk-env-openai" and model.openai_api_base is None
    assert model.default_headers == {"X-Org-Trace": "fake-org-trace"} and model.temperature == 0.0
    assert model.model_kwargs == {"user": ORG} and model.extra_body == {"prompt_cache_key": f"{ORG}:agt-openai"}


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
    assert type(model) is ChatAnthropic and model.anthropic_api_key.get_secret_value() == expected
    assert model.model == "claude-sonnet-4-5-20250929" and model.max_tokens == 32000 and model.temperature == 0.0
    assert model.default_headers == {"X-Org-Trace": "fake-org-trace", "x-team": "legal"}
    create_agent(**args)


def test_reasoning_and_responses_only_models():
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))["model"]
    assert high.reasoning_effort == "high" and high.temperature is None
    responses = build(make_agent(), make_task(llm_model_name="gpt-6"))["model"]
    assert responses.use_responses_api is True and responses.model_name == "gpt-6"


def test_openai_compatible_provider_gets_its_endpoint_and_no_env_key():
    model = build(make_agent(model_provider="open_router", model_name="anthropic/claude"))["model"]
    assert model.openai_api_base == "https://openrouter.ai/api/v1" and model.max_tokens == 32000
    assert model.openai_api_key.get_secret_value() == "EMPTY"


# -- structured output, tool-call limit ---------------------------------------------------------------


def test_json_output_schema_as_response_format():
    agent = make_agent("agt-json")
    args = build(agent)
    assert args["response_format"] == dict(agent.output_schema, title="StructuredOutput")
    assert "title" not in agent.output_schema  # the agent's schema is not modified
    assert "response_format" not in build(agent, make_task(output_format="markdown"))
    create_agent(**args)


def test_tool_call_limit_becomes_middleware():
    args = build(make_agent("agt-anthropic"))
    (limit,) = args["middleware"]
    assert isinstance(limit, ToolCallLimitMiddleware) and limit.run_limit == 20
    assert build(make_agent(), make_task(tool_call_limit=7))["middleware"][0].run_limit == 7
    assert "middleware" not in build(make_agent())


# -- tools --------------------------------------------------------------------------------------------


def test_tool_schema_verbatim_and_optional_parameters_stay_optional():
    agent = make_agent()
    search, note, knowledge = build(agent, make_task())["tools"]
    assert knowledge.name == "search_knowledge_base"  # agt-openai has a knowledge base (features/knowledge.py)
    assert isinstance(search, StructuredTool)
    assert search.args_schema == _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert search.args_schema["properties"]["query_params"]["required"] == ["q"]
    assert note.description == "Attach a free-text note to a CRM contact."


def test_extra_tools_are_appended_and_override_applies_last():
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    fake = GenericFakeChatModel(messages=iter([]))
    context = FakeContext()
    args = build(make_agent(), make_task(), context, tools=[lookup], override={"model": fake, "debug": True})
    assert args["tools"][-1] is lookup and args["model"] is fake and args["debug"] is True
    assert "org_llm_headers" not in context.calls
    create_agent(**args)


# -- MCP ----------------------------------------------------------------------------------------------


def test_mcp_servers_are_not_built_and_a_warning_names_them(caplog):
    caplog.set_level(logging.WARNING, logger="xpander_sync")
    context = FakeContext()
    args = build(make_agent("agt-mcp"), make_task(mcp_servers=MCP_TASK_SERVERS), context)
    assert args["tools"] == []
    assert "agent agt-mcp: 3 MCP server(s) not built by the langchain adapter" in caplog.text
    assert not [c for c in context.calls if c[0] == "mcp_headers"]  # no OAuth flow for nothing
    create_agent(**args)


# -- teams --------------------------------------------------------------------------------------------


def test_team_members_become_delegation_tools_running_their_own_graphs():
    context = FakeContext()
    args = build(make_agent("agt-team"), make_task(instructions_override="Leader only."), context)
    reviewer, researcher = args["tools"]
    assert (reviewer.name, researcher.name) == ("ask_contract_reviewer", "ask_researcher")
    assert reviewer.description == "Delegate a request to the team member 'Contract Reviewer': Scores contract risk"
    assert reviewer.args_schema["required"] == ["request"]
    assert ("load_agents", ["agt-anthropic", "agt-sub-b"]) in context.calls
    create_agent(**args)

    # Each member keeps its own model: with a fake model for everyone, the member graph answers.
    fake = GenericFakeChatModel(messages=iter([AIMessage(content="Three sources found.")]))
    team = build(make_agent("agt-team"), None, FakeContext(), override={"model": fake})
    assert team["tools"][1].invoke({"request": "Find sources"}) == "Three sources found."


# -- installation -------------------------------------------------------------------------------------



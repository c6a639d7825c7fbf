"""The LangChain adapter: real ``create_agent`` graphs from the sample agents (no LLM, no network)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ToolCallLimitMiddleware
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import StructuredTool
from langchain_openai import ChatOpenAI

from xpander_sync import Backend, ConfigurationError, FrameworkNotInstalledError, InvalidInputError
from xpander_sync.frameworks import _tools, dispatch_get_args
from xpander_sync.frameworks.langchain import build_langchain_args
from xpander_sync.models.tools import ToolInvocationResult

from .conftest import (
    ACCEPTANCE_AGENTS,
    MCP_TASK_SERVERS,
    ORG,
    VERIFIED_BODY,
    FakeContext,
    assert_operation_posted,
    make_agent,
    make_task,
    mock_members,
    mock_operation,
    mock_platform,
)

NAME = "langchain"


def build(agent, task=None, context=None, **kw):
    return build_langchain_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


@pytest.mark.parametrize("agent_id", ACCEPTANCE_AGENTS)
def test_sample_agents_construct_offline_from_get_args(mocked, config, agent_id):
    mock_platform(mocked, agent_id)
    if agent_id == "agt-team":
        mock_members(mocked)
    args = Backend(config).get_args(agent_id=agent_id, task=make_task(output_format=None), framework=NAME)
    graph = create_agent(**args)
    assert graph.name == make_agent(agent_id).sanitized_name


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


def test_the_agents_own_framework_is_used_by_default():
    args = dispatch_get_args(make_agent(framework="langchain"), make_task(), context=FakeContext())
    assert isinstance(args["model"], ChatOpenAI)


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


def test_openai_without_any_key_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigurationError, match="no OpenAI API key"):
        build(make_agent())


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


@pytest.mark.parametrize("provider", ["amazon_bedrock", "google_ai_studio", "azure_ai_foundary", "huggingface"])
def test_unmapped_providers_are_refused_naming_provider_and_framework(provider):
    with pytest.raises(InvalidInputError, match=rf"model provider '{provider}' is not supported by the {NAME}"):
        build(make_agent(model_provider=provider))


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
    search, note = build(agent, make_task())["tools"]
    assert isinstance(search, StructuredTool)
    assert search.args_schema == _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert search.args_schema["properties"]["query_params"]["required"] == ["q"]
    assert note.description == "Attach a free-text note to a CRM contact."


def test_tool_calls_carry_this_builds_agent_and_task_and_errors_reach_the_model():
    context = FakeContext()
    first = build(make_agent(), make_task(id="task-1"), context)["tools"][0]
    second = build(make_agent(version=9), make_task(id="task-2"), context)["tools"][0]
    first.invoke({"query_params": {"q": "ada"}})
    second.invoke({"query_params": {"q": "ada"}})
    calls = [c for c in context.calls if c[0] == "invoke_tool"]
    assert [c[2] for c in calls] == ["task-1", "task-2"] and calls[0][4] == VERIFIED_BODY
    context.tool_result = ToolInvocationResult(tool_id="t", payload={}, status_code=500, result="boom", is_error=True)
    assert json.loads(first.invoke({"query_params": {"q": "x"}}))["is_error"] is True


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


def test_a_team_containing_itself_is_refused():
    looping = make_agent("agt-team", graph=[{"item_id": "agt-team", "type": "agent", "targets": []}])
    with pytest.raises(InvalidInputError, match="contains itself"):
        build(looping, None, FakeContext(members={"agt-team": looping}))


# -- installation -------------------------------------------------------------------------------------


def test_missing_framework_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain.agents", None)
    with pytest.raises(FrameworkNotInstalledError, match=r'pip install "xpander-sync\[langchain\]"'):
        build(make_agent())


def test_importing_the_adapter_imports_no_framework():
    code = (
        "import sys, xpander_sync.frameworks.langchain as m\n"
        "assert not [n for n in sys.modules if n.split('.')[0] in ('langchain', 'langchain_core')]\n"
        "assert m.__name__ == 'xpander_sync.frameworks.langchain'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

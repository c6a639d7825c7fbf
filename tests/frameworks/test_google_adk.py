"""The Google ADK adapter: real ``LlmAgent`` objects from the sample agents (no LLM, no network)."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytest.importorskip("google.adk.agents", reason='google-adk is not installed: pip install "xpander-sync[google-adk]"')
from google.adk.agents import LlmAgent
from google.adk.models.anthropic_llm import AnthropicLlm
from google.adk.models.lite_llm import LiteLlm
from google.adk.tools import BaseTool
from google.adk.tools.mcp_tool import (
    McpToolset,
    SseConnectionParams,
    StdioConnectionParams,
    StreamableHTTPConnectionParams,
)

from xpander_sync import Backend, FrameworkNotInstalledError
from xpander_sync.frameworks import _tools
from xpander_sync.frameworks._llm import anthropic_sdk_takes
from xpander_sync.frameworks.google_adk import build_google_adk_args

from .conftest import (
    ACCEPTANCE_AGENTS,
    MCP_TASK_SERVERS,
    ORG,
    FakeContext,
    make_agent,
    make_task,
    mock_members,
    mock_platform,
)

NAME = "google-adk"
pytestmark = [pytest.mark.framework(NAME), pytest.mark.usefixtures("openai_env")]


def build(agent, task=None, context=None, **kw):
    return build_google_adk_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


def run(tool: BaseTool, arguments) -> str:
    """What ADK does when the LLM calls the tool."""
    return asyncio.run(tool.run_async(args=arguments, tool_context=None))


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


@pytest.mark.parametrize("agent_id", ACCEPTANCE_AGENTS)
def test_sample_agents_construct_offline_from_get_args(mocked, config, agent_id, monkeypatch):
    for module in [m for m in sys.modules if m == "litellm" or m.startswith("litellm.")]:
        monkeypatch.delitem(sys.modules, module)  # an earlier test's real turn imported it
    mock_platform(mocked, agent_id)
    if agent_id == "agt-team":
        mock_members(mocked)
    args = Backend(config).get_args(agent_id=agent_id, task=make_task(output_format=None), framework=NAME)
    built = LlmAgent(**args)
    assert built.name == make_agent(agent_id).sanitized_name
    assert "litellm" not in sys.modules  # imported at the first model call (its import fetches a price list)


# -- identity, instructions -------------------------------------------------------------------------


def test_identity_description_and_a_verbatim_system_instruction():
    args = build(make_agent(), make_task())
    assert args["name"] == "CRM_Assistant" and args["description"] == "Looks up CRM contacts and writes notes"
    prompt = args["static_instruction"]
    assert "<instructions>" in prompt and "<expected_output>\nA one-paragraph confirmation." in prompt
    assert 'User details: {"id":"user-42"' in prompt  # braces: ADK's `instruction` would template them
    assert "instruction" not in args
    LlmAgent(**args)


# -- model ------------------------------------------------------------------------------------------


def test_openai_model_through_litellm_key_headers_and_settings():
    args = build(make_agent())
    model = args["model"]
    assert type(model) is LiteLlm and model.model == "openai/gpt-4.1"
    assert model._additional_args == {
        "api_key": "sk-env-openai", "extra_headers": {"X-Org-Trace": "fake-org-trace"}, "user": ORG,
        "extra_body": {"prompt_cache_key": f"{ORG}:agt-openai"},
    }
    assert args["generate_content_config"].temperature == 0.0


@pytest.mark.parametrize(
    "cloud, env_key, expected",
    [(False, None, "sk-ant-CUSTOM"), (False, "sk-ant-ENV", "sk-ant-ENV"), (True, "sk-ant-ENV", "sk-ant-CUSTOM")],
)
def test_anthropic_key_precedence_on_the_native_class(monkeypatch, cloud, env_key, expected):
    if cloud:
        monkeypatch.setenv("IS_XPANDER_CLOUD", "true")
    if env_key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", env_key)
    args = build(make_agent("agt-anthropic"))
    model = args["model"]
    assert type(model) is AnthropicLlm and model.client.api_key == expected
    assert model.model == "claude-sonnet-4-5-20250929" and model.max_tokens == 32000
    assert model.client.default_headers["x-team"] == "legal"
    assert model.client.default_headers["X-Org-Trace"] == "fake-org-trace"
    if anthropic_sdk_takes("temperature"):
        assert args["generate_content_config"].temperature == 0.0
    else:  # anthropic 2.x: AnthropicLlm passes it as a keyword messages.create no longer takes
        assert "generate_content_config" not in args
    assert model.client.timeout == 900.0  # the SDK refuses the 32k cap without an explicit timeout
    LlmAgent(**args)


def test_reasoning_effort_and_openai_compatible_provider():
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))
    assert high["model"]._additional_args["reasoning_effort"] == "high" and "generate_content_config" not in high
    nim = build(make_agent(model_provider="nim", model_name="meta/llama"))["model"]
    assert nim.model == "openai/meta/llama"
    assert nim._additional_args["api_base"] == "https://integrate.api.nvidia.com/v1"
    assert nim._additional_args["api_key"] == "EMPTY"


def test_a_missing_litellm_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litellm" else real(name, *a))
    with pytest.raises(FrameworkNotInstalledError, match=r'need litellm: pip install "xpander-sync\[google-adk\]"'):
        build(make_agent())


# -- structured output ----------------------------------------------------------------------------


def test_json_output_schema_as_a_dict_with_tools_kept():
    agent = make_agent("agt-json")
    args = build(agent)
    assert args["output_schema"] == agent.output_schema and args["output_schema"] is not agent.output_schema
    assert "output_schema" not in build(agent, make_task(output_format="text"))
    LlmAgent(**args)
    with_tools = build(make_agent(), make_task(output_format="json", output_schema=agent.output_schema))
    built = LlmAgent(**with_tools)
    assert len(built.tools) == 2 and built.output_schema == agent.output_schema


# -- tools --------------------------------------------------------------------------------------------


def test_tool_declaration_is_the_schema_verbatim_and_optional_parameters_stay_optional():
    agent = make_agent()
    search, note = build(agent, make_task())["tools"]
    declaration = search._get_declaration()
    expected = _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert declaration.name == "XpanderCrmSearchContacts" and declaration.parameters_json_schema == expected
    assert declaration.parameters_json_schema["properties"]["query_params"]["required"] == ["q"]
    assert note.description == "Attach a free-text note to a CRM contact."


def test_extra_tools_are_appended_and_override_applies_last():
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    context = FakeContext()
    mine = LiteLlm(model="openai/gpt-4o-mini", api_key="sk-mine")
    args = build(make_agent(), make_task(), context, tools=[lookup], override={"model": mine})
    assert args["tools"][-1] is lookup and args["model"] is mine
    assert "generate_content_config" not in args and "org_llm_headers" not in context.calls
    LlmAgent(**args)


# -- MCP ----------------------------------------------------------------------------------------------


def test_mcp_servers_are_toolsets_with_context_headers_and_not_connected():
    context = FakeContext()
    agent = make_agent("agt-mcp")
    task = make_task(mcp_servers=MCP_TASK_SERVERS)
    args = build(agent, task, context)
    remote, local, sse = args["tools"]
    assert all(isinstance(t, McpToolset) for t in args["tools"])
    params = remote._connection_params
    assert isinstance(params, StreamableHTTPConnectionParams) and params.url == "https://mcp.notion.example/mcp"
    assert params.headers == {"X-Static": "1", "Authorization": "Bearer oauth-token"}
    assert remote.tool_filter == ["search", "fetch"]
    assert isinstance(local._connection_params, StdioConnectionParams)
    stdio = local._connection_params.server_params
    assert (stdio.command, stdio.args, stdio.env) == ("npx", ["-y", "@mcp/everything", "--label", "a b"],
                                                      {"TOKEN": "t", "N": "1"})
    assert isinstance(sse._connection_params, SseConnectionParams)
    assert agent.mcp_servers[0].api_key is None and all(s.api_key is None for s in task.mcp_servers)
    LlmAgent(**args)


# -- teams --------------------------------------------------------------------------------------------


def test_team_members_become_sub_agents_with_their_own_models():
    context = FakeContext()
    args = build(make_agent("agt-team"), make_task(instructions_override="Leader only."), context)
    team = LlmAgent(**args)
    reviewer, researcher = team.sub_agents
    assert (reviewer.name, researcher.name) == ("Contract_Reviewer", "Researcher")
    assert reviewer.parent_agent is team and reviewer.description == "Scores contract risk"
    assert type(reviewer.model) is AnthropicLlm and reviewer.model.client.api_key == "sk-ant-CUSTOM"
    assert type(researcher.model) is LiteLlm and researcher.model.model == "openai/gpt-4.1-mini"
    assert "Leader only." in args["static_instruction"] and "Leader only." not in reviewer.static_instruction


# -- installation -------------------------------------------------------------------------------------



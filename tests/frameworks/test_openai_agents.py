"""The openai-agents adapter: real ``agents.Agent`` objects from the sample agents (no LLM, no network)."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("agents", reason='openai-agents is not installed: pip install "xpander-sync[openai-agents]"')
from agents import Agent as OAAgent
from agents import FunctionTool, OpenAIChatCompletionsModel, OpenAIResponsesModel
from agents.extensions.models.any_llm_model import AnyLLMModel
from agents.mcp import MCPServerSse, MCPServerStdio, MCPServerStreamableHttp
from agents.tool_context import ToolContext

from xpander_sync._converter import unstructure
from xpander_sync.frameworks import _tools
from xpander_sync.frameworks._adapter import is_strict_compatible
from xpander_sync.frameworks.openai_agents import build_openai_agents_args

from .conftest import (
    MCP_TASK_SERVERS,
    ORG,
    ORG_HEADERS,
    TASK_ID,
    FakeContext,
    make_agent,
    make_task,
)

NAME = "open-ai-agents"
pytestmark = [pytest.mark.framework(NAME), pytest.mark.usefixtures("openai_env")]


def build(agent, task=None, context=None, **kw):
    return build_openai_agents_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


def invoke(tool: FunctionTool, arguments) -> str:
    """What openai-agents does when the LLM calls the tool."""
    args_json = arguments if isinstance(arguments, str) else json.dumps(arguments)
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call-1", tool_arguments=args_json)
    return asyncio.run(tool.on_invoke_tool(ctx, args_json))


# -- acceptance: every sample agent, through get_args, offline -----------------------------------


# -- identity, instructions, description ----------------------------------------------------------


def test_identity_and_one_system_prompt():
    args = build(make_agent(), make_task(additional_context="Enterprise plan."))
    assert args["name"] == "CRM Assistant"
    assert args["handoff_description"] == "Looks up CRM contacts and writes notes"
    prompt = args["instructions"]
    assert prompt.startswith("Looks up CRM contacts and writes notes\n\n<instructions>")
    assert "You work for the sales team." in prompt and "Keep CRM records accurate" in prompt
    assert "<expected_output>\nA one-paragraph confirmation.\n</expected_output>" in prompt
    assert "Use markdown to format your answers." in prompt
    assert 'User details: {"id":"user-42"' in prompt and prompt.rstrip().endswith(
        "Enterprise plan.\n</additional_context>"
    )
    override = build(make_agent(), make_task(instructions_override="Only answer in French."))
    assert "Only answer in French." in override["instructions"] and "sales team" not in override["instructions"]


# -- model ----------------------------------------------------------------------------------------


def test_openai_model_key_headers_and_settings():
    args = build(make_agent())
    model, settings = args["model"], args["model_settings"]
    assert type(model) is OpenAIChatCompletionsModel and model.model == "gpt-4.1"
    client = model._client
    assert client.api_key == "sk-env-openai" and str(client.base_url) == "https://api.openai.com/v1/"
    assert client.default_headers["X-Org-Trace"] == "fake-org-trace"
    assert settings.temperature == 0.0 and settings.reasoning is None
    assert settings.extra_body == {"user": ORG, "prompt_cache_key": f"{ORG}:agt-openai"}


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
    assert type(model) is AnyLLMModel and model.api_key == expected and model.model == (
        "anthropic/claude-sonnet-4-5-20250929"
    )
    assert args["model_settings"].extra_headers == {"X-Org-Trace": "fake-org-trace", "x-team": "legal"}
    assert args["model_settings"].max_tokens == 32000 and args["model_settings"].temperature == 0.0
    OAAgent(**args)


def test_reasoning_and_responses_only_models():
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))
    assert high["model_settings"].reasoning.effort == "high" and high["model_settings"].temperature is None
    responses = build(make_agent(), make_task(llm_model_name="gpt-6"))["model"]
    assert type(responses) is OpenAIResponsesModel and responses.model == "gpt-6"


def test_openai_compatible_provider_gets_its_endpoint_and_no_env_key():
    model = build(make_agent(model_provider="nebius", model_name="Qwen/Qwen3"))["model"]
    assert str(model._client.base_url) == "https://api.tokenfactory.nebius.com/v1/"
    assert model._client.api_key == "EMPTY"
    proxy = build(make_agent(model_provider="my_vllm", llm_api_base="http://127.0.0.1:8000/v1"))["model"]
    assert str(proxy._client.base_url) == "http://127.0.0.1:8000/v1/"


# -- structured output --------------------------------------------------------------------------


def test_json_output_schema_verbatim_and_strict_only_when_it_qualifies():
    agent = make_agent("agt-json")
    output = build(agent)["output_type"]
    assert output.json_schema() == agent.output_schema and output.name() == "StructuredOutput"
    assert output.is_strict_json_schema() is False and not output.is_plain_text()
    assert output.validate_json('{"vendor": "Acme", "total": 3, "currency": "EUR"}')["vendor"] == "Acme"
    strict = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    task = make_task(output_format="json", output_schema=strict)
    assert build(make_agent(), task)["output_type"].is_strict_json_schema() is True
    assert "output_type" not in build(agent, make_task(output_format="text"))
    assert is_strict_compatible({"type": "array", "items": strict}) and not is_strict_compatible({"type": "object"})
    OAAgent(**build(agent))


# -- tools ----------------------------------------------------------------------------------------


def test_tool_schema_verbatim_and_optional_parameters_stay_optional():
    agent = make_agent()
    search, note, knowledge = build(agent, make_task())["tools"]
    assert knowledge.name == "search_knowledge_base"  # agt-openai has a knowledge base (features/knowledge.py)
    assert isinstance(search, FunctionTool) and search.strict_json_schema is False
    expected = _tools.llm_schema(agent.tools[0], _tools.input_override(agent, agent.tools[0]))
    assert search.params_json_schema == expected
    assert search.params_json_schema["properties"]["query_params"]["required"] == ["q"]  # limit stays optional
    assert "company" not in json.dumps(search.params_json_schema)  # permanent value hidden
    assert note.params_json_schema["properties"]["body_params"]["required"] == ["text"]
    assert note.description == "Attach a free-text note to a CRM contact."


def test_extra_tools_are_appended_and_override_applies_last():
    mine = FunctionTool(name="mine", description="d", params_json_schema={"type": "object", "properties": {}},
                        on_invoke_tool=lambda ctx, a: "ok")
    context = FakeContext()
    args = build(make_agent(), make_task(), context, tools=[mine], override={"model": "gpt-4o-mini", "name": "X"})
    assert args["tools"][-1] is mine and args["name"] == "X"
    # A model id is built into the framework's model object, resolved as the agent's own model (issue 13).
    assert isinstance(args["model"], OpenAIChatCompletionsModel) and args["model"].model == "gpt-4o-mini"
    assert "org_llm_headers" in context.calls
    OAAgent(**args)


# -- MCP ------------------------------------------------------------------------------------------


def test_mcp_servers_are_built_with_context_headers_and_not_connected():
    context = FakeContext()
    agent = make_agent("agt-mcp")
    task = make_task(mcp_servers=MCP_TASK_SERVERS)
    args = build(agent, task, context)
    remote, local, sse = args["mcp_servers"]
    assert isinstance(remote, MCPServerStreamableHttp) and remote.name == "Notion"
    assert remote.params["url"] == "https://mcp.notion.example/mcp"
    assert remote.params["headers"] == {"X-Static": "1", "Authorization": "Bearer oauth-token"}
    assert remote.tool_filter == {"allowed_tool_names": ["search", "fetch"]}
    assert isinstance(local, MCPServerStdio) and local.params.command == "npx"
    assert local.params.args == ["-y", "@mcp/everything", "--label", "a b"] and local.params.env == {"TOKEN": "t",
                                                                                                    "N": "1"}
    assert isinstance(sse, MCPServerSse) and sse.params["url"] == "https://sse.example/sse"
    assert agent.mcp_servers[0].api_key is None and all(s.api_key is None for s in task.mcp_servers)
    OAAgent(**args)  # constructing connects nothing (the no_network guard would fail the test)


# -- teams ----------------------------------------------------------------------------------------


def test_team_members_become_handoffs_with_their_own_models():
    context = FakeContext()
    before = unstructure(make_agent("agt-team"))
    args = build(make_agent("agt-team"), make_task(instructions_override="Leader only."), context)
    reviewer, researcher = args["handoffs"]
    assert isinstance(reviewer, OAAgent) and (reviewer.name, researcher.name) == ("Contract Reviewer", "Researcher")
    assert type(reviewer.model) is AnyLLMModel and reviewer.model.api_key == "sk-ant-CUSTOM"
    assert type(researcher.model) is OpenAIChatCompletionsModel and researcher.model.model == "gpt-4.1-mini"
    assert reviewer.handoff_description == "Scores contract risk"
    assert "Leader only." in args["instructions"] and "Leader only." not in reviewer.instructions
    assert "<expected_output>\nA one-paragraph confirmation." in args["instructions"]
    assert ("load_agents", ["agt-anthropic", "agt-sub-b"]) in context.calls
    assert unstructure(make_agent("agt-team")) == before
    team = OAAgent(**args)
    assert [h.name for h in team.handoffs] == ["Contract Reviewer", "Researcher"]


# -- installation ---------------------------------------------------------------------------------


def test_org_headers_are_the_platforms():
    model = build(make_agent())["model"]
    assert {k: model._client.default_headers[k] for k in ORG_HEADERS} == ORG_HEADERS
    assert TASK_ID  # the task id used by the acceptance test above

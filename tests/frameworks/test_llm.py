"""Which LLM key, headers, endpoint and model an agent gets (the reference's precedence truth table)."""

from __future__ import annotations

import pytest

from xpander_sync import Secret
from xpander_sync._converter import structure
from xpander_sync.frameworks._llm import (
    EMPTY_KEY,
    merge_headers,
    normalize_provider,
    oidc_llm_token,
    points_away,
    resolve_api_key,
    resolve_llm,
)
from xpander_sync.models import Agent, LLMCredentials, Task

from ..conftest import load_fixture

CUSTOM = Secret("sk-CUSTOM")


def key(provider, env, *, custom=CUSTOM, oidc=None, api_base=None):
    found = resolve_api_key(provider, custom_key=custom, oidc_token=oidc, api_base=api_base, environ=env)
    return found.reveal() if found is not None else None


# -- the truth table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, env, custom, expected",
    [
        # no stored key: the environment
        ("openai", {"OPENAI_API_KEY": "env-o"}, None, "env-o"),
        ("openai", {"AGENTS_OPENAI_API_KEY": "env-a", "OPENAI_API_KEY": "env-o"}, None, "env-a"),
        ("openai", {}, None, None),
        ("anthropic", {"ANTHROPIC_API_KEY": "env-an"}, None, "env-an"),
        # local: environment, else stored key, per variable (OpenAI: a stored key beats
        # OPENAI_API_KEY but loses to AGENTS_OPENAI_API_KEY)
        ("openai", {"OPENAI_API_KEY": "env-o"}, CUSTOM, "sk-CUSTOM"),
        ("openai", {"AGENTS_OPENAI_API_KEY": "env-a", "OPENAI_API_KEY": "env-o"}, CUSTOM, "env-a"),
        ("openai", {}, CUSTOM, "sk-CUSTOM"),
        ("anthropic", {"ANTHROPIC_API_KEY": "env-an"}, CUSTOM, "env-an"),
        ("anthropic", {}, CUSTOM, "sk-CUSTOM"),
        # cloud: stored key, else environment
        ("openai", {"IS_XPANDER_CLOUD": "true", "AGENTS_OPENAI_API_KEY": "env-a"}, CUSTOM, "sk-CUSTOM"),
        ("anthropic", {"IS_XPANDER_CLOUD": "true", "ANTHROPIC_API_KEY": "env-an"}, CUSTOM, "sk-CUSTOM"),
        ("anthropic", {"IS_XPANDER_CLOUD": "true", "ANTHROPIC_API_KEY": "env-an"}, None, "env-an"),
        # only exactly "true" means cloud
        ("anthropic", {"IS_XPANDER_CLOUD": "True", "ANTHROPIC_API_KEY": "env-an"}, CUSTOM, "env-an"),
        ("anthropic", {"IS_XPANDER_CLOUD": "1", "ANTHROPIC_API_KEY": "env-an"}, CUSTOM, "env-an"),
        # a provider with no environment variable still gets its stored key
        ("some_new_provider", {}, CUSTOM, "sk-CUSTOM"),
    ],
)
def test_key_precedence(provider, env, custom, expected):
    assert key(provider, env, custom=custom) == expected


def test_oidc_token_beats_everything():
    env = {"IS_XPANDER_CLOUD": "true", "OPENAI_API_KEY": "env-o"}
    assert key("openai", env, oidc=Secret("oidc-tok"), api_base="https://proxy.example/v1") == "oidc-tok"


@pytest.mark.parametrize("cloud", [False, True])
def test_an_endpoint_away_from_the_provider_never_receives_an_environment_key(cloud):
    env = {"OPENAI_API_KEY": "env-o", "AGENTS_OPENAI_API_KEY": "env-a"}
    if cloud:
        env["IS_XPANDER_CLOUD"] = "true"
    proxy = "https://llm-proxy.example.com/v1"
    assert key("openai", env, custom=None, api_base=proxy) == EMPTY_KEY
    assert key("openai", env, api_base=proxy) == "sk-CUSTOM"
    # the provider's own host is not "away"
    assert key("openai", env, custom=None, api_base="https://api.openai.com/v1") == ("env-a")


def test_providers_without_a_canonical_host_use_their_own_variable_locally_only():
    env = {"OPENAI_COMPATIBLE_API_KEY": "env-c"}
    base = "http://localhost:8000/v1"
    assert key("openai_compatible", env, custom=None, api_base=base) == "env-c"
    cloud = dict(env, IS_XPANDER_CLOUD="true")
    assert key("openai_compatible", cloud, custom=None, api_base=base) == EMPTY_KEY
    assert key("openai_compatible", cloud, api_base=base) == "sk-CUSTOM"


def test_points_away():
    assert not points_away("openai", None)
    assert not points_away("openai", "https://API.openai.com/v1")
    assert not points_away("anthropic", "api.anthropic.com")
    assert points_away("openai", "https://api.openai.com.evil.example/v1")
    assert points_away("openai_compatible", "https://anything.example")


# -- OIDC ---------------------------------------------------------------------------------------


def oidc_agent(**changes) -> Agent:
    data = load_fixture("agent_openai")
    data.update(
        pre_auth_audiences=["api://llm"],
        use_oidc_pre_auth_token_for_llm=True,
        oidc_pre_auth_token_llm_audience="api://llm",
    )
    data.update(changes)
    return structure(data, Agent)


def oidc_task(tokens) -> Task:
    data = load_fixture("task_status")
    data["user_tokens"] = {"oidc_tokens": tokens}
    return structure(data, Task)


def test_oidc_token_needs_every_agent_setting():
    task = oidc_task({"api://llm": "tok-1"})
    assert oidc_llm_token(oidc_agent(), task).reveal() == "tok-1"
    assert oidc_llm_token(oidc_agent(pre_auth_audiences=[]), task) is None
    assert oidc_llm_token(oidc_agent(use_oidc_pre_auth_token_for_llm=False), task) is None
    assert oidc_llm_token(oidc_agent(), oidc_task({"api://llm": "__none__"})) is None
    assert oidc_llm_token(oidc_agent(), None) is None


def test_oidc_token_is_the_key_and_the_x_oidc_token_header(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-o")
    settings = resolve_llm(oidc_agent(), oidc_task({"api://llm": "tok-1"}), {"X-Org": "1"})
    assert settings.api_key.reveal() == "tok-1"
    assert settings.extra_headers == {"x-oidc-token": "tok-1", "X-Org": "1"}
    assert "tok-1" not in repr(settings)


# -- resolve_llm ----------------------------------------------------------------------------------


def make_agent(**changes) -> Agent:
    data = load_fixture("agent_openai")
    data.update(changes)
    return structure(data, Agent)


def test_headers_merge_sanitised_later_wins_case_insensitively():
    assert merge_headers(
        {"X-A": "org", "X-Blank": "  ", "X-None": None, "": "x"},
        {"x-a": " agent ", "X-B": 2},
    ) == {"x-a": "agent", "X-B": "2"}
    agent = make_agent(llm_extra_headers={"X-Org-Trace": "agent-wins", "X-Team": "legal"})
    settings = resolve_llm(agent, None, {"X-Org-Trace": "org", "X-Empty-Dropped": ""})
    assert settings.extra_headers == {"X-Org-Trace": "agent-wins", "X-Team": "legal"}


def test_reasoning_effort_only_for_reasoning_models_and_headers_are_kept():
    headers = {"X-Org": "1"}
    gpt5 = resolve_llm(make_agent(model_name="gpt-5", llm_reasoning_effort="high"), None, headers)
    assert gpt5.reasoning_effort == "high" and gpt5.extra_headers == headers and gpt5.is_reasoning_family
    assert (
        resolve_llm(make_agent(model_name="gpt-5", llm_reasoning_effort="medium"), None).reasoning_effort
        is None
    )
    assert (
        resolve_llm(make_agent(model_name="gpt-4.1", llm_reasoning_effort="high"), None).reasoning_effort
        is None
    )


def test_model_id_keeps_its_case_and_provider_is_normalised():
    settings = resolve_llm(
        make_agent(model_provider=" Nebius ", model_name="Meta-Llama/Llama-3.3-70B-Instruct"), None
    )
    assert settings.provider == "nebius"
    assert settings.model_id == "Meta-Llama/Llama-3.3-70B-Instruct"
    assert normalize_provider("Open-Router") == "open_router"
    assert normalize_provider("azure_ai_foundry") == "azure_ai_foundary"


def test_task_model_choice_wins_and_a_provider_switch_drops_the_agents_key_and_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-o")
    agent = structure(load_fixture("agent_anthropic"), Agent)
    agent.llm_api_base = "https://anthropic-proxy.example"
    data = load_fixture("task_status")
    data.update(llm_model_provider="openai", llm_model_name="gpt-5", llm_reasoning_effort="low")
    settings = resolve_llm(agent, structure(data, Task))
    assert (settings.provider, settings.model_id, settings.reasoning_effort) == ("openai", "gpt-5", "low")
    assert settings.api_key.reveal() == "env-o"  # not the agent's Anthropic key
    assert settings.base_url is None

    same = load_fixture("task_status")
    same.update(llm_model_name="claude-opus-4-1")
    kept = resolve_llm(agent, structure(same, Task))
    assert kept.model_id == "claude-opus-4-1"
    assert kept.api_key.reveal() == "sk-ant-CUSTOM"  # endpoint away from Anthropic: the stored key
    assert kept.base_url == "https://anthropic-proxy.example"


def test_anthropic_fixture_key_under_both_precedences(monkeypatch):
    agent = structure(load_fixture("agent_anthropic"), Agent)
    assert resolve_llm(agent, None).api_key.reveal() == "sk-ant-CUSTOM"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-ENV")
    assert resolve_llm(agent, None).api_key.reveal() == "sk-ant-ENV"
    monkeypatch.setenv("IS_XPANDER_CLOUD", "true")
    assert resolve_llm(agent, None).api_key.reveal() == "sk-ant-CUSTOM"


def test_azure_key_comes_from_the_authorization_header():
    agent = make_agent(
        model_provider="azure_ai_foundary",
        llm_api_base="https://x.services.ai.azure.com/models",
        llm_extra_headers={"authorization": "Bearer az-key", "X-Keep": "1"},
    )
    settings = resolve_llm(agent, None)
    assert settings.api_key.reveal() == "az-key"
    assert settings.extra_headers == {"X-Keep": "1"}


def test_default_base_urls_and_custom_flag():
    helicone = resolve_llm(make_agent(model_provider="helicone"), None)
    assert helicone.base_url == "https://ai-gateway.helicone.ai/v1" and not helicone.base_url_is_custom
    custom = resolve_llm(make_agent(model_provider="helicone", llm_api_base="https://h.example/v1"), None)
    assert custom.base_url == "https://h.example/v1" and custom.base_url_is_custom


def test_keys_never_show_in_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ENV-SENTINEL")
    agent = make_agent(llm_credentials=None)
    agent.llm_credentials = LLMCredentials(name="k", value="sk-STORED-SENTINEL")
    settings = resolve_llm(agent, None)
    assert "SENTINEL" not in repr(settings) and "SENTINEL" not in str(settings)


def test_prompt_cache_key_is_hashed_when_long():
    short = resolve_llm(make_agent(organization_id="o", id="a"), None)
    assert short.prompt_cache_key == "o:a"
    # two UUIDs (as the platform's ids are) make it longer than 64 characters
    long = resolve_llm(make_agent(id="0d1c9a52-6f0e-4a53-8a9e-3b1f2c4d5e6f"), None)
    assert len(long.prompt_cache_key) == 32 and ":" not in long.prompt_cache_key

"""A sentinel API key (and LLM key) never shows in repr, logs at DEBUG, exceptions or tracebacks."""

from __future__ import annotations

import traceback

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from xpander_sync import Backend, Configuration, ModuleException, RetryPolicy, Secret, Tasks, XpanderError
from xpander_sync._converter import structure
from xpander_sync.models import Agent
from xpander_sync.transport import Transport

from .conftest import BASE, SENTINEL_KEY, load_fixture

LLM_SENTINEL = "sk-ant-SENTINEL-LLM-42"


def everything_printed(objects, errors, caplog):
    texts = [repr(o) for o in objects] + [str(o) for o in objects]
    for exc in errors:
        texts.append(str(exc))
        texts.append(repr(exc))
        texts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    texts.append(caplog.text)
    texts.extend(str(r.args) for r in caplog.records)
    return "\n".join(texts)


def test_sentinels_never_leak(mocked, debug_logs):
    config = Configuration(api_key=SENTINEL_KEY, base_url=BASE, organization_id="org",
                           retry=RetryPolicy(max_retries=1, backoff_base=0.0))
    transport = Transport(config, sleep=lambda s: None)
    backend = Backend(config, transport=transport)
    tasks = Tasks(config, transport=transport)
    agent_json = load_fixture("agent_anthropic")
    agent_json["llm_credentials"]["value"] = LLM_SENTINEL
    agent = structure(agent_json, Agent)

    url = f"{BASE}/agent-execution/agt-openai/report_task"
    mocked.post(url, json=load_fixture("report_response"))
    mocked.post(url, json={"detail": f"bad key {SENTINEL_KEY}", "echo": {"x-api-key": SENTINEL_KEY}}, status=401)
    mocked.get(f"{BASE}/agent-execution/t1/status", body=f"<html>{SENTINEL_KEY}</html>")
    refused = requests.exceptions.ConnectionError(MaxRetryError(None, "/x", NewConnectionError(None, "refused")))
    mocked.get(f"{BASE}/agent-execution/t2/status", body=refused)
    mocked.get(f"{BASE}/agent-execution/t2/status", body=refused)

    errors = []
    backend.report_external_task(agent_id="agt-openai", input="hello", llm_response={"key": SENTINEL_KEY})
    with pytest.raises(ModuleException) as e1:
        backend.report_external_task(agent_id="agt-openai")
    errors.append(e1.value)
    with pytest.raises(ModuleException) as e2:
        tasks.get("t1")
    errors.append(e2.value)
    with pytest.raises(ModuleException) as e3:
        tasks.get("t2")
    errors.append(e3.value)
    with pytest.raises(XpanderError) as e4:
        Configuration(api_key=SENTINEL_KEY, connect_timeout=-1)
    errors.append(e4.value)

    printed = everything_printed([config, transport, backend, tasks, agent, agent.llm_credentials], errors, debug_logs)
    assert SENTINEL_KEY not in printed
    assert LLM_SENTINEL not in printed
    assert len([r for r in debug_logs.records if r.levelname == "DEBUG"]) >= 5  # DEBUG logging was on


def test_secret_type():
    secret = Secret("abc123")
    assert repr(secret) == "Secret('***')" and str(secret) == "***" and f"{secret}" == "***"
    assert secret.reveal() == "abc123" and secret == Secret("abc123") and bool(Secret("")) is False
    with pytest.raises(TypeError):
        Secret(5)


def test_redaction_helpers():
    from xpander_sync._redact import redact_headers, redact_mapping, redact_url, scrub

    assert redact_headers({"X-Api-Key": "k", "Authorization": "Bearer t", "Accept": "json"}) == {
        "X-Api-Key": "***", "Authorization": "***", "Accept": "json"}
    assert redact_mapping({"api_key": "k", "nested": [{"client_secret": "s", "name": "n"}], "empty_token": None}) == {
        "api_key": "***", "nested": [{"client_secret": "***", "name": "n"}], "empty_token": None}
    assert redact_url("https://u:p@h.example/x?token=abc&q=1") == "https://u:***@h.example/x?token=***&q=***"
    assert scrub("key=abcdef and abcdef", ["abcdef", None, ""]) == "key=*** and ***"

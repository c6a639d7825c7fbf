"""resources.prompts: the dynamic-prompt and channel-presence routes (no body, 8 s, ``{"text": ...}``)."""

from __future__ import annotations

import pytest
import requests

from xpander_sync import Configuration, InvalidInputError, ModuleException
from xpander_sync.resources import Prompts
from xpander_sync.resources.prompts import PROMPT_TIMEOUT, strip_presence_tags, text_of

from ..conftest import BASE, SENTINEL_KEY


def test_dynamic_prompt_posts_no_body_and_reads_text(mocked, config):
    mocked.post(f"{BASE}/tools/agt-openai/dynamic-prompt", json={"text": "  Focus: Acme.  "})
    assert Prompts(config).dynamic_prompt("agt-openai") == "Focus: Acme."
    request = mocked.calls[0].request
    assert request.method == "POST" and request.body is None
    assert "Content-Type" not in request.headers
    assert request.headers["x-api-key"] == SENTINEL_KEY


def test_channel_presence_strips_its_tags(mocked, config):
    mocked.post(f"{BASE}/tools/agt-openai/channel-presence",
                json={"text": '<channel_presence note="x">In #sales.</channel_presence>'})
    assert Prompts(config).channel_presence("agt-openai") == "In #sales."
    assert mocked.calls[0].request.body is None


def test_the_timeout_is_eight_seconds_and_one_attempt(config, monkeypatch):
    """The official SDK gives up after 8 s: no connect timeout or retry (429 Retry-After, connect
    failures) may keep a cold build waiting longer."""
    seen = {}

    def fake_request(self, method, path, **kwargs):
        seen.update(kwargs, method=method, path=path)

        class R:
            data = {"text": "t"}
        return R()

    monkeypatch.setattr("xpander_sync.transport.Transport.request", fake_request)
    for call, path in ((Prompts(config).channel_presence, "/tools/agt-openai/channel-presence"),
                       (Prompts(config).dynamic_prompt, "/tools/agt-openai/dynamic-prompt")):
        seen.clear()
        call("agt-openai")
        assert PROMPT_TIMEOUT == 8.0
        assert seen["timeout"] == (min(8.0, config.connect_timeout), 8.0)
        assert seen["retry"].max_retries == 0
        assert seen["method"] == "POST" and seen["path"] == path
        assert "json" not in seen
    slow = Configuration(api_key="k", base_url=BASE, connect_timeout=30.0, read_timeout=60.0)
    Prompts(slow).channel_presence("agt-openai")
    assert seen["timeout"] == (8.0, 8.0)


def test_a_throttled_presence_is_asked_once(mocked, config):
    mocked.post(f"{BASE}/tools/agt-openai/channel-presence", status=429, headers={"Retry-After": "1"},
                json={"detail": "slow down"})
    with pytest.raises(ModuleException):
        Prompts(config).channel_presence("agt-openai")
    assert len(mocked.calls) == 1


def test_ids_are_checked_and_encoded(mocked, config):
    with pytest.raises(InvalidInputError, match="agent_id"):
        Prompts(config).dynamic_prompt("a/b")
    mocked.post(f"{BASE}/tools/a%20b/dynamic-prompt", json={"text": "x"})
    assert Prompts(config).dynamic_prompt("a b") == "x"


def test_errors_are_module_exceptions(mocked, config):
    mocked.post(f"{BASE}/tools/agt-openai/dynamic-prompt", status=404, json={"detail": "no"})
    with pytest.raises(ModuleException):
        Prompts(config).dynamic_prompt("agt-openai")
    mocked.post(f"{BASE}/tools/agt-openai/channel-presence", body=requests.ConnectionError("down"))
    with pytest.raises(ModuleException):
        Prompts(config).channel_presence("agt-openai")


@pytest.mark.parametrize("data,text", [
    ({"text": "a"}, "a"), ({"text": 3}, ""), ({}, ""), (None, ""), ("text", ""), ([{"text": "a"}], ""),
])
def test_anything_but_a_text_object_is_empty(data, text):
    assert text_of(data) == text


def test_strip_presence_tags_keeps_the_rest():
    assert strip_presence_tags("<CHANNEL_PRESENCE a='1'>x</channel_presence> y") == "x y"
    assert strip_presence_tags("<channel_presence_other>x") == "<channel_presence_other>x"

"""The local backend's prompt routes: the dynamic prompt and the channel presence of an agent."""

from __future__ import annotations

import requests

from xpander_sync.local import LocalBackend

from .conftest import assert_json_error


def test_the_sample_agent_serves_its_texts(backend: LocalBackend, session: requests.Session) -> None:
    resp = session.post(backend.url + "/tools/agt-features/dynamic-prompt")
    assert resp.status_code == 200 and resp.json() == {"text": "Today's focus account: Acme."}
    resp = session.post(backend.url + "/tools/agt-features/channel-presence")
    assert resp.status_code == 200
    assert resp.json() == {"text": "<channel_presence>You are talking in the #sales channel.</channel_presence>"}
    assert backend._prompts.calls() == {("dynamic_prompt", "agt-features"): 1, ("channel_presence", "agt-features"): 1}


def test_an_agent_without_texts_answers_empty(backend: LocalBackend, session: requests.Session) -> None:
    for route in ("dynamic-prompt", "channel-presence"):
        resp = session.post(backend.url + f"/tools/agt-openai/{route}")
        assert resp.status_code == 200 and resp.json() == {"text": ""}


def test_unknown_agents_and_missing_keys(backend: LocalBackend, session: requests.Session) -> None:
    assert_json_error(session.post(backend.url + "/tools/agt-nope/channel-presence"), 404)
    assert requests.post(backend.url + "/tools/agt-features/dynamic-prompt", timeout=5).status_code == 401


def test_the_private_key_is_not_served(backend: LocalBackend, session: requests.Session) -> None:
    agent = session.get(backend.url + "/agents/agt-features").json()
    assert "_local_prompts" not in agent
    assert agent["instructions"]["dynamic_prompt_enabled"] is True
    assert agent["runtime_environment"]["context_layers"][0]["name"] == "Company"


def test_texts_of_an_added_agent(backend: LocalBackend, session: requests.Session) -> None:
    backend.add_agent({"id": "agt-x", "_local_prompts": {"channel_presence": "In #x.", "dynamic_prompt": 3}})
    assert session.post(backend.url + "/tools/agt-x/channel-presence").json() == {"text": "In #x."}
    assert session.post(backend.url + "/tools/agt-x/dynamic-prompt").json() == {"text": ""}

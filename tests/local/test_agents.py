"""The agents served: loading a folder of agent files, versions, and the private ``_local`` keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from xpander_sync.local import LocalBackend, sample_agents_dir
from xpander_sync.local._agents import AgentCatalog
from xpander_sync.local._routing import HTTPError

from .conftest import ORG, assert_json_error

# -- agents ---------------------------------------------------------------------------------------------


def test_get_agent_latest_and_versions(backend: LocalBackend, session: requests.Session) -> None:
    latest = session.get(backend.url + "/agents/agt-openai").json()
    assert latest["version"] == 3 and latest["model_name"] == "gpt-4.1" and len(latest["tools"]) == 2
    old = session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "2"}).json()
    assert old["version"] == 2 and old["model_name"] == "gpt-4o" and len(old["tools"]) == 1
    assert session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "3"}).json() == latest
    assert (
        "version"
        in assert_json_error(
            session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "9"}), 404
        ).lower()
    )
    assert_json_error(
        session.get(backend.url + "/agents/agt-openai", headers={"x-agent-version": "three"}), 400
    )
    assert_json_error(session.get(backend.url + "/agents/agt-nope"), 404)


def test_private_local_keys_are_stripped(backend: LocalBackend, session: requests.Session) -> None:
    backend.add_agent(
        {
            "id": "agt-x",
            "name": "X",
            "organization_id": "org-x",
            "_local_db_uri": "postgresql://u:p@db.local:5432/x",
            "_local_note": "hidden",
        }
    )
    agent = session.get(backend.url + "/agents/agt-x").json()
    assert agent == {"id": "agt-x", "name": "X", "organization_id": "org-x"}
    db = session.get(backend.url + "/agents/agt-x/db").json()
    assert db == {
        "id": "agt-x",
        "name": "X",
        "organization_id": "org-x",
        "connection_uri": {"uri": "postgresql://u:p@db.local:5432/x"},
    }
    assert all(
        not k.startswith("_local") for i in session.get(backend.url + "/agents/list").json() for k in i
    )


def test_sample_agents_are_consistent() -> None:
    folder = sample_agents_dir()
    agents = {}
    for f in folder.glob("*.json"):
        agents[f.name] = json.loads(f.read_text(encoding="utf-8"))
    latest = {a["id"]: a for name, a in agents.items() if "@" not in name}
    assert set(latest) == {
        "agt-openai", "agt-anthropic", "agt-team", "agt-sub-b", "agt-mcp", "agt-json", "agt-features",
    }
    assert {a["organization_id"] for a in agents.values()} == {ORG}
    assert [t["id"] for t in latest["agt-openai"]["tools"]] == [
        "XpanderCrmSearchContacts",
        "XpanderCrmCreateNote",
    ]
    assert latest["agt-openai"]["knowledge_bases"] == [{"id": "kb-1", "rw": False}]
    creds = latest["agt-anthropic"]["llm_credentials"]
    assert latest["agt-anthropic"]["model_provider"] == "anthropic" and "LOCAL" in creds["value"]
    assert latest["agt-anthropic"]["output_format"] == "json"
    members = [g["item_id"] for g in latest["agt-team"]["graph"] if g["type"] == "agent"]
    assert members == ["agt-anthropic", "agt-sub-b"] and all(m in latest for m in members)
    mcp = latest["agt-mcp"]["graph"][0]["settings"]["mcp_settings"]
    assert mcp["auth_type"] == "oauth2" and mcp["type"] == "remote"
    assert (
        latest["agt-json"]["output_format"] == "json"
        and latest["agt-json"]["output_schema"]["type"] == "object"
    )
    assert latest["agt-json"]["model_provider"] == "openai"


def test_custom_agents_dir_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"id": "a", "version": 2, "name": "A2"}))
    (tmp_path / "a@1.json").write_text(json.dumps({"id": "a", "version": 1, "name": "A1"}))
    (tmp_path / "notes.txt").write_text("ignored")
    with LocalBackend(tmp_path) as b:
        assert [i["id"] for i in requests.get(b.url + "/agents/list", timeout=5).json()] == ["a"]
        assert requests.get(b.url + "/agents/a", timeout=5).json()["name"] == "A2"
        one = requests.get(b.url + "/agents/a", headers={"x-agent-version": "1"}, timeout=5).json()
        assert one["name"] == "A1"
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json"):
        LocalBackend(tmp_path)
    with pytest.raises(FileNotFoundError):
        LocalBackend(tmp_path / "missing")


# -- the catalog, without a server ---------------------------------------------------------------------------


def test_catalog_versions_latest_and_organization() -> None:
    catalog = AgentCatalog("org-default")
    catalog.add({"id": "b", "version": 1, "organization_id": "org-b"})
    catalog.add({"id": "a"})  # version defaults to 1
    catalog.add({"id": "b", "version": 2, "name": "newer"})
    assert len(catalog) == 2
    assert [(agent["id"], agent.get("version")) for agent in catalog.latest()] == [("a", None), ("b", 2)]
    assert catalog.get("b", " 1 ")["organization_id"] == "org-b"
    assert catalog.get("b", "")["name"] == "newer"
    assert catalog.org(catalog.get("b", "1")) == "org-b" and catalog.org(catalog.get("a")) == "org-default"
    for agent_id, header, status in [("nope", None, 404), ("b", "7", 404), ("b", "two", 400)]:
        with pytest.raises(HTTPError) as info:
            catalog.get(agent_id, header)
        assert info.value.status == status
    with pytest.raises(ValueError):
        catalog.add({"id": ""})


def test_catalog_keeps_a_copy_of_what_it_was_given() -> None:
    agent = {"id": "a", "tools": [{"id": "t1"}]}
    catalog = AgentCatalog("org")
    catalog.add(agent)
    agent["tools"].append({"id": "t2"})
    assert catalog.get("a")["tools"] == [{"id": "t1"}]

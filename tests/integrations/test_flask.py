"""``examples/flask_app.py`` (docs/guides/flask.md) under Flask's test client, against the local backend."""

from __future__ import annotations

import pytest

from .conftest import xpander_settings


@pytest.fixture
def environ(monkeypatch, xpander_backend):
    """Set ``XPANDER_*`` as a deployment would; returns a setter for changing them."""
    def apply(**extra):
        for name, value in xpander_settings(xpander_backend, **extra).items():
            monkeypatch.setenv(name, value)

    apply()
    return apply


def test_route_reports_the_run(flask_example, environ, xpander_backend):
    client = flask_example.create_app().test_client()

    response = client.post("/agent/run", json={"input": "Find Ada"})

    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["agent"] == "CRM Assistant" and "XpanderCrmSearchContacts" in data["result"]
    (report,) = xpander_backend.reports()
    assert report["agent_id"] == "agt-openai" and report["body"]["id"] == data["task_id"]
    assert report["body"]["input"] == "Find Ada" and report["body"]["result"] == data["result"]


def test_agent_comes_from_the_environment(flask_example, environ, xpander_backend):
    environ(XPANDER_AGENT_ID="agt-anthropic")
    client = flask_example.create_app().test_client()

    first = client.post("/agent/run", json={"input": "Review clause 4"}).get_json()
    second = client.post("/agent/run", json={}).get_json()

    assert first["agent"] == "Contract Reviewer" and "no tools" in first["result"]
    reports = xpander_backend.reports()
    assert [r["agent_id"] for r in reports] == ["agt-anthropic", "agt-anthropic"]
    assert [r["body"]["id"] for r in reports] == [first["task_id"], second["task_id"]]
    assert reports[1]["body"]["input"] == ""


def test_refused_key_is_a_502_without_the_key(flask_example, environ, xpander_backend):
    environ(XPANDER_API_KEY="xpk-FLASK-SENTINEL-wrong")
    client = flask_example.create_app().test_client()

    response = client.post("/agent/run", json={"input": "q"})

    assert response.status_code == 502
    assert "403" in response.get_json()["error"]
    assert "xpk-FLASK-SENTINEL" not in response.get_data(as_text=True)
    assert xpander_backend.reports() == []

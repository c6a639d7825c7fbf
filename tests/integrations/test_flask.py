"""``xpander_sync.contrib.flask`` and ``examples/flask_app.py`` (docs/guides/flask.md) under Flask's test
client and CLI runner, against the local backend and its scripted model."""

from __future__ import annotations

import io
import json

import pytest

from xpander_sync import cli
from xpander_sync.testing import Usage, answer

from .conftest import closed_port_url, require, xpander_settings


@pytest.fixture
def environ(monkeypatch, xpander_backend):
    """Set ``XPANDER_*`` as a deployment would; returns a setter for changing them."""
    def apply(**extra):
        for name, value in xpander_settings(xpander_backend, **extra).items():
            monkeypatch.setenv(name, value)

    apply()
    return apply


def test_route_runs_the_agent_and_reports_the_run(flask_example, environ, xpander_backend):
    xpander_backend.script_llm([answer("Ada Lovelace, ada@example.com", usage=Usage(30, 8))])
    client = flask_example.create_app().test_client()

    response = client.post("/agent/run", json={"input": "Find Ada"})

    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["agent"] == "CRM Assistant" and data["result"] == "Ada Lovelace, ada@example.com"
    (report,) = xpander_backend.reports()
    body = report["body"]
    assert report["agent_id"] == "agt-openai" and body["id"] == data["task_id"]
    assert body["input"] == "Find Ada" and body["result"] == data["result"] and body["is_success"] is True
    assert (body["tokens"]["prompt_tokens"], body["tokens"]["completion_tokens"]) == (30, 8)


def test_agent_comes_from_the_environment(flask_example, environ, xpander_backend):
    environ(XPANDER_AGENT_ID="agt-anthropic")
    xpander_backend.script_llm(exhausted_text="Clause 4 is fine.")
    client = flask_example.create_app().test_client()

    first = client.post("/agent/run", json={"input": "Review clause 4"}).get_json()
    second = client.post("/agent/run", json={}).get_json()

    assert first["agent"] == "Contract Reviewer" and first["result"] == "Clause 4 is fine."
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


# -- the extension -----------------------------------------------------------------------------------------------


@pytest.fixture
def flask_app(monkeypatch, xpander_backend):
    """A bare app with the extension, configured through ``app.config`` only (no XPANDER_* environment)."""
    require("flask")
    from flask import Flask

    from xpander_sync.contrib.flask import XpanderSync

    for name in ("XPANDER_API_KEY", "XPANDER_ORGANIZATION_ID", "XPANDER_BASE_URL", "XPANDER_AGENT_ID"):
        monkeypatch.delenv(name, raising=False)
    app = Flask("t")
    app.config.update(xpander_settings(xpander_backend))
    XpanderSync(app)
    return app


def test_init_app_reads_every_configuration_field_from_app_config(monkeypatch, tmp_path):
    require("flask")
    from flask import Flask

    from xpander_sync import Backend, RetryPolicy
    from xpander_sync.contrib._config import FIELDS
    from xpander_sync.contrib.flask import XpanderSync, backend

    monkeypatch.setenv("XPANDER_API_KEY", "xpk-env")
    values = {
        "organization_id": "o", "base_url": "http://127.0.0.1:9", "agent_id": "agt-x", "connect_timeout": 2,
        "read_timeout": 3, "retry": {"max_retries": 4}, "agent_cache_ttl": 1, "metadata_cache_ttl": 2,
        "pool_maxsize": 3, "outbox": str(tmp_path / "o.sqlite3"), "background_reports": True,
        "agent_max_staleness": 5, "mcp_auth_timeout": 6, "mcp_auth_poll_interval": 0.5, "verify": False,
        "call_deadline": 30, "max_response_bytes": 1024, "proxies": {"https": "http://proxy:1"},
    }
    assert set(values) | {"api_key"} == set(FIELDS)
    app = Flask("t")
    app.config.update({f"XPANDER_{k.upper()}": v for k, v in values.items()})
    ext = XpanderSync()
    built = ext.init_app(app)

    assert app.extensions["xpander"] is built and isinstance(built, Backend)
    config = built.configuration
    assert config.api_key.reveal() == "xpk-env"  # the environment is the fallback
    assert config.retry == RetryPolicy(max_retries=4) and config.proxies_dict == {"https": "http://proxy:1"}
    for name in set(values) - {"retry", "proxies"}:
        assert getattr(config, name) == values[name], name
    with app.app_context():
        assert backend() is built


def test_a_bad_value_names_the_key():
    require("flask")
    from flask import Flask

    from xpander_sync.contrib.flask import XpanderSync
    from xpander_sync.errors import ConfigurationError

    app = Flask("t")
    app.config["XPANDER_READ_TIMEOUT"] = -1
    with pytest.raises(ConfigurationError, match="read_timeout"):
        XpanderSync(app)


def _cli(argv, configuration):
    out, err = io.StringIO(), io.StringIO()
    return cli.main(argv, out=out, err=err, configuration=configuration), out.getvalue(), err.getvalue()


def test_flask_xpander_args(flask_app):
    result = flask_app.test_cli_runner().invoke(args=["xpander", "args", "agt-openai", "--json"])

    assert result.exit_code == 0, result.output
    status, out, _ = _cli(["args", "agt-openai", "--json"], flask_app.extensions["xpander"].configuration)
    assert status == 0 and json.loads(result.output) == json.loads(out)
    assert json.loads(result.output)["name"] == "CRM Assistant"


@pytest.mark.parametrize("argv", [["args", "agt-missing"], ["worker", "no_such_module_xyz:handle"],
                                  ["worker", "x:y", "--dispatch", "celery"], ["outbox", "explode"]])
def test_exit_statuses_match_the_cli(flask_app, argv):
    result = flask_app.test_cli_runner().invoke(args=["xpander", *argv])
    try:
        status = _cli(argv, flask_app.extensions["xpander"].configuration)[0]
    except SystemExit as exc:  # argparse's usage error
        status = exc.code
    assert result.exit_code == status != 0


def test_flask_xpander_outbox_list_and_flush(monkeypatch, tmp_path):
    require("flask")
    from flask import Flask

    from xpander_sync.contrib.flask import XpanderSync
    from xpander_sync.local import LocalBackend

    outbox, key, url = str(tmp_path / "outbox.sqlite3"), "xpk-flask-outbox", closed_port_url()
    app = Flask("t")
    app.config.update(XPANDER_BASE_URL=url, XPANDER_API_KEY=key, XPANDER_ORGANIZATION_ID="o",
                      XPANDER_OUTBOX=outbox, XPANDER_RETRY={"max_retries": 0})
    XpanderSync(app)
    queued = app.extensions["xpander"].report_external_task(agent_id="agt-openai", input="q", result="a")
    runner = app.test_cli_runner()

    listed = runner.invoke(args=["xpander", "outbox", "list", "--json"])
    assert listed.exit_code == 0 and [r["task_id"] for r in json.loads(listed.output)] == [queued.task_id]
    with LocalBackend(port=int(url.rsplit(":", 1)[1]), api_key=key) as platform:
        flushed = runner.invoke(args=["xpander", "outbox", "flush"])
        assert flushed.exit_code == 0 and flushed.output.strip() == "delivered 1, remaining 0"
        assert [r["body"]["id"] for r in platform.reports()] == [queued.task_id]
    assert json.loads(runner.invoke(args=["xpander", "outbox", "list", "--json"]).output) == []

"""``xpander_sync.contrib.django`` and ``examples/django_app`` (docs/guides/django.md) under Django's own
test client, ``call_command``, ``run_checks`` and ``manage.py`` processes, against the local backend
and its scripted model.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from xpander_sync import Backend, RetryPolicy, cli
from xpander_sync.testing import Usage, answer

from .conftest import EXAMPLES, closed_port_url, require, xpander_settings

PROMPT = "What is our refund window?"
PROJECT = EXAMPLES / "django_app"


def xpander_for(url: str, api_key: str, **extra):
    """The project's ``XPANDER`` setting for one backend (Configuration keyword arguments)."""
    return {"base_url": url, "api_key": api_key, "organization_id": "local-org", "agent_id": "agt-openai", **extra}


@pytest.fixture
def site(django_project, xpander_backend):
    """The project's settings pointed at the local backend, as a deployment's settings would be."""
    from django.test import override_settings

    key = xpander_backend.configuration.api_key.reveal()
    with override_settings(XPANDER=xpander_for(xpander_backend.url, key)):
        yield xpander_backend


@pytest.fixture
def no_xpander_env(monkeypatch):
    for name in ("XPANDER_API_KEY", "XPANDER_ORGANIZATION_ID", "XPANDER_BASE_URL", "XPANDER_AGENT_ID"):
        monkeypatch.delenv(name, raising=False)


# -- views -------------------------------------------------------------------------------------------------


def test_sync_view_runs_the_agent_and_reports_the_run(site):
    from django.test import Client

    site.script_llm([answer("Refunds are processed within 5 business days.", usage=Usage(20, 6))])

    response = Client().post("/agent/run", {"input": PROMPT}, content_type="application/json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["agent"] == "CRM Assistant"
    assert data["result"] == "Refunds are processed within 5 business days." and data["tokens"] == 26
    (report,) = site.reports()
    body = report["body"]
    assert report["agent_id"] == "agt-openai" and body["id"] == data["task_id"]
    assert body["input"] == PROMPT and body["result"] == data["result"]
    assert body["tokens"]["prompt_tokens"] == 20 and body["tokens"]["completion_tokens"] == 6
    assert body["is_success"] is True and body["duration"] >= 0 and body["used_tools"] == []
    loads = [r for r in site.requests if r["path"] == "/agents/agt-openai"]
    assert loads and loads[0]["headers"]["x-api-key"] == "***"  # sent, and masked in the log


def test_async_view_serves_concurrent_requests(site, django_project):
    from asgiref.sync import iscoroutinefunction
    from django.test import AsyncClient

    assert iscoroutinefunction(django_project.arun_agent)  # Django runs it on the event loop
    site.script_llm(exhausted_text="Async answer.", usage=Usage(4, 2))

    async def three_requests():
        client = AsyncClient()
        return await asyncio.gather(*(
            client.post("/agent/arun", {"input": f"q{i}"}, content_type="application/json") for i in range(3)
        ))

    responses = asyncio.run(three_requests())

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert {r.json()["result"] for r in responses} == {"Async answer."}
    by_input = {r["body"]["input"]: r["body"] for r in site.reports()}
    assert {k: v["id"] for k, v in by_input.items()} == {f"q{i}": responses[i].json()["task_id"] for i in range(3)}
    assert all(b["tokens"]["prompt_tokens"] == 4 and b["is_success"] for b in by_input.values())


def test_a_failed_run_is_reported_as_a_failure(site):
    from django.test import Client

    # No LLM mounted: the model's requests fail, agno returns a run with an error status.
    response = Client().post("/agent/run", {"input": PROMPT}, content_type="application/json")

    (report,) = site.reports()
    assert report["body"]["is_success"] is False
    assert response.status_code == 200 and report["body"]["id"] == response.json()["task_id"]


def test_get_is_not_allowed(site):
    from django.test import Client

    assert Client().get("/agent/run").status_code == 405
    assert site.reports() == []


@pytest.mark.parametrize("path", ["/agent/run", "/agent/arun"])
def test_platform_unreachable_is_a_502(django_project, path):
    from django.test import Client, override_settings

    down = xpander_for(closed_port_url(), "xpk-DJANGO-SENTINEL", retry={"max_retries": 0})
    with override_settings(XPANDER=down):
        response = Client().post(path, {"input": "q"}, content_type="application/json")

    assert response.status_code == 502
    assert "error" in response.json() and b"xpk-DJANGO-SENTINEL" not in response.content


# -- settings and the shared backend ----------------------------------------------------------------------------


def test_every_configuration_field_can_be_set_and_env_is_the_fallback(django_project, monkeypatch, tmp_path):
    from django.test import override_settings

    from xpander_sync.contrib import django as xdjango
    from xpander_sync.contrib._config import FIELDS

    monkeypatch.setenv("XPANDER_API_KEY", "xpk-from-env")
    monkeypatch.setenv("XPANDER_ORGANIZATION_ID", "org-env")
    values = {
        "base_url": "http://127.0.0.1:9", "agent_id": "agt-x", "connect_timeout": 2, "read_timeout": 3,
        "retry": {"max_retries": 4}, "agent_cache_ttl": 1, "metadata_cache_ttl": 2, "pool_maxsize": 3,
        "outbox": str(tmp_path / "o.sqlite3"), "background_reports": True, "agent_max_staleness": 5,
        "mcp_auth_timeout": 6, "mcp_auth_poll_interval": 0.5, "verify": False, "call_deadline": 30,
        "max_response_bytes": 1024, "proxies": {"https": "http://proxy:1"},
    }
    assert set(values) | {"api_key", "organization_id"} == set(FIELDS)
    with override_settings(XPANDER=values):
        config = xdjango.backend().configuration
    assert config.api_key.reveal() == "xpk-from-env" and config.organization_id == "org-env"
    assert config.retry == RetryPolicy(max_retries=4) and config.proxies_dict == {"https": "http://proxy:1"}
    for name in set(values) - {"retry", "proxies"}:
        assert getattr(config, name) == values[name], name
    with override_settings(XPANDER={"api_key": "xpk-from-settings", "organization_id": None}):
        config = xdjango.backend().configuration
    assert config.api_key.reveal() == "xpk-from-settings" and config.organization_id == "org-env"


def test_backend_is_built_once_per_process_and_rebuilt_when_the_setting_changes(site):
    from django.test import override_settings

    from xpander_sync.contrib.django import backend

    seen = []
    barrier = threading.Barrier(8)

    def build():
        barrier.wait()
        seen.append(backend())

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in seen}) == 1 and isinstance(seen[0], Backend)
    assert backend() is seen[0]
    with override_settings(XPANDER={"api_key": "xpk-other", "organization_id": "o"}):
        assert backend() is not seen[0] and backend().configuration.api_key.reveal() == "xpk-other"


# -- system checks ----------------------------------------------------------------------------------------------


def _check_ids(**xpander):
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(XPANDER=xpander):
        messages = [m for m in run_checks() if m.id.startswith("xpander_sync.")]
    assert all(m.hint for m in messages), messages
    return {m.id: m for m in messages}


def test_checks_pass_for_a_usable_configuration(django_project, no_xpander_env, tmp_path):
    assert _check_ids(api_key="xpk-1", organization_id="o", outbox=str(tmp_path / "o.sqlite3")) == {}


def test_check_missing_api_key(django_project, no_xpander_env):
    found = _check_ids(organization_id="o")
    assert set(found) == {"xpander_sync.E001"}
    assert "XPANDER_API_KEY" in found["xpander_sync.E001"].hint


def test_check_bad_base_url(django_project, no_xpander_env):
    found = _check_ids(api_key="xpk-1", organization_id="o", base_url="ftp://")
    assert set(found) == {"xpander_sync.E002"} and "http" in found["xpander_sync.E002"].hint


def test_check_unwritable_outbox_folder(django_project, no_xpander_env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    try:
        # The folder cannot be created: the nearest existing path above it is a file.
        blocked = _check_ids(api_key="xpk-1", organization_id="o", outbox=str(a_file / "sub" / "o.sqlite3"))
        assert set(blocked) == {"xpander_sync.E003"} and "writable" in blocked["xpander_sync.E003"].hint
        assert str(a_file) in blocked["xpander_sync.E003"].msg  # names the nearest existing path
        if os.geteuid() != 0:  # root writes anywhere
            assert set(_check_ids(api_key="xpk-1", organization_id="o", outbox=str(locked / "o.sqlite3"))) == {
                "xpander_sync.E003"}
            assert set(_check_ids(api_key="xpk-1", organization_id="o",
                                  outbox=str(locked / "new" / "o.sqlite3"))) == {"xpander_sync.E003"}
    finally:
        locked.chmod(0o700)


def test_check_accepts_an_outbox_folder_the_outbox_will_create(django_project, no_xpander_env, tmp_path):
    """The outbox creates missing folders: a folder not made yet under a writable one is fine."""
    outbox = tmp_path / "not" / "yet" / "o.sqlite3"
    assert _check_ids(api_key="xpk-1", organization_id="o", outbox=str(outbox)) == {}
    from xpander_sync.reporting import outbox_at

    assert outbox_at(str(outbox)) is not None and outbox.parent.is_dir()  # and it does create them


def test_check_invalid_setting_and_missing_organization(django_project, no_xpander_env):
    unknown = _check_ids(api_key="xpk-1", organization_id="o", read_timout=3)
    assert set(unknown) == {"xpander_sync.E004"} and "read_timout" in unknown["xpander_sync.E004"].msg
    bad = _check_ids(api_key="xpk-1", organization_id="o", read_timeout=-1)
    assert set(bad) == {"xpander_sync.E004"} and "read_timeout" in bad["xpander_sync.E004"].msg
    assert set(_check_ids(api_key="xpk-1")) == {"xpander_sync.W001"}


def _manage(*args, env=None, timeout=60):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XPANDER_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env=environ)


def test_manage_py_check_reports_the_id_and_hint(xpander_backend):
    require("django", "agno")
    missing = _manage("check")
    assert missing.returncode == 1
    assert "xpander_sync.E001" in missing.stderr and "HINT: Set XPANDER" in missing.stderr

    ok = _manage("check", env=xpander_settings(xpander_backend))
    assert ok.returncode == 0, ok.stderr
    assert "no issues" in ok.stdout


# -- management commands ------------------------------------------------------------------------------------------


def _call(name, *args):
    """``call_command`` → (exit status, stdout, stderr), as ``manage.py`` would exit."""
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exc:
        status = exc.code
    return status, out.getvalue(), err.getvalue()


def _cli(argv, configuration):
    out, err = io.StringIO(), io.StringIO()
    return cli.main(argv, out=out, err=err, configuration=configuration), out.getvalue(), err.getvalue()


def test_xpander_args_prints_what_the_cli_prints(site):
    from xpander_sync.contrib.django import configuration

    status, out, _ = _call("xpander_args", "agt-openai", "--json")
    cli_status, cli_out, _ = _cli(["args", "agt-openai", "--json"], configuration())

    assert status == cli_status == 0 and json.loads(out) == json.loads(cli_out)
    assert json.loads(out)["name"] == "CRM Assistant"


@pytest.mark.parametrize("argv", [["args", "agt-missing"], ["args", "agt-openai", "--framework", "nope"],
                                  ["worker", "no_such_module_xyz:handle"], ["outbox", "explode"]])
def test_exit_statuses_match_the_cli(site, argv):
    from xpander_sync.contrib.django import configuration

    names = {"args": "xpander_args", "worker": "xpander_worker", "outbox": "xpander_outbox"}
    if argv == ["outbox", "explode"]:  # argparse's own usage error: status 2 from both
        with pytest.raises(SystemExit) as cli_exit:
            _cli(argv, configuration())
        assert _call(names[argv[0]], *argv[1:])[0] == cli_exit.value.code == 2
        return
    status, _, err = _call(names[argv[0]], *argv[1:])
    cli_status, _, cli_err = _cli(argv, configuration())
    assert status == cli_status != 0
    assert err.strip().splitlines()[-1] == cli_err.strip().splitlines()[-1]


def test_missing_key_gives_the_clis_statuses(django_project, no_xpander_env):
    from django.test import override_settings

    from xpander_sync.contrib.django import configuration

    no_key = {"organization_id": "o", "base_url": closed_port_url(), "retry": {"max_retries": 0}}
    with override_settings(XPANDER=no_key):
        worker = _call("xpander_worker", "agentsite.tasks:handle")
        cli_worker = _cli(["worker", "agentsite.tasks:handle"], configuration())
        args = _call("xpander_args", "agt-openai")
        cli_args = _cli(["args", "agt-openai"], configuration())
    assert worker[0] == cli_worker[0] == cli.EXIT_USAGE and "api_key missing" in worker[2]
    assert args[0] == cli_args[0] == cli.EXIT_FAILED  # the request is refused: the platform's answer


def test_xpander_outbox_lists_and_flushes_the_projects_outbox(django_project, tmp_path):
    from django.test import override_settings

    from xpander_sync.contrib.django import backend
    from xpander_sync.local import LocalBackend

    outbox, key, url = str(tmp_path / "outbox.sqlite3"), "xpk-outbox-test", closed_port_url()
    with override_settings(XPANDER=xpander_for(url, key, outbox=outbox, retry={"max_retries": 0})):
        queued = backend().report_external_task(agent_id="agt-openai", input="q", result="a")  # platform down
        status, out, _ = _call("xpander_outbox", "list", "--json")
        assert status == 0 and [row["task_id"] for row in json.loads(out)] == [queued.task_id]
        with LocalBackend(port=int(url.rsplit(":", 1)[1]), api_key=key) as platform:  # the platform is back
            status, out, _ = _call("xpander_outbox", "flush")
            assert status == 0 and out.strip() == "delivered 1, remaining 0"
            assert [r["body"]["id"] for r in platform.reports()] == [queued.task_id]
        status, out, _ = _call("xpander_outbox", "list", "--json")
    assert json.loads(out) == []


def test_manage_py_xpander_worker_runs_the_projects_handler(xpander_backend, tmp_path):
    require("django", "agno")
    xpander_backend.script_llm(exhausted_text="Handled by the Django worker.", usage=Usage(9, 3))
    env = xpander_settings(xpander_backend, XDG_STATE_HOME=str(tmp_path))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XPANDER_")}
    environ.update(env)
    proc = subprocess.Popen([sys.executable, "manage.py", "xpander_worker", "agentsite.tasks:handle",
                             "--concurrency", "2"], cwd=PROJECT, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not xpander_backend.local.workers(connected=True):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        client = Backend(xpander_backend.configuration)
        ids = [client.invoke_agent(agent_id="agt-openai", prompt=f"task {i}").id for i in range(3)]
        deadline = time.monotonic() + 30
        while True:
            stored = {t["id"]: t for t in xpander_backend.tasks() if t["id"] in ids}
            if all(stored[i]["status"] == "completed" for i in ids):
                break
            assert time.monotonic() < deadline, stored
            time.sleep(0.05)
        assert {stored[i]["result"] for i in ids} == {"Handled by the Django worker."}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "xpander-sync worker: handle for agent agt-openai" in out and "3 completed" in out

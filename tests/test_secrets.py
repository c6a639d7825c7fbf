"""Secret hygiene: sentinel secrets, every public flow at DEBUG, and nothing shows.

Four sentinels: the xpander API key, an LLM key stored on an agent
(``llm_credentials.value``), an LLM key in the environment (``ANTHROPIC_API_KEY``) and an
MCP OAuth token issued by the local backend's login flow. Each flow runs against a real
:class:`~xpander_sync.local.LocalBackend` (which requires the API key) with DEBUG logging
for ``xpander_sync`` and ``urllib3``, and the test asserts that no sentinel appears in a
log record, the ``repr``/``str`` of a returned object, an exception's text or formatted
traceback, the CLI's stdout/stderr, the outbox file, or the backend's request log, and
that no request carries the API key to a host other than the configured one.
Each flow also checks that its sentinel really was in play (the key was sent, the LLM
key reached the model object, the token reached the MCP headers), so a flow that
silently skipped the secret cannot pass.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable, List
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from xpander_sync import (
    Agents,
    APIError,
    AuthenticationError,
    Backend,
    Configuration,
    ModuleException,
    NotFoundError,
    PermissionDeniedError,
    ResponseDecodeError,
    RetryPolicy,
    Task,
    Tasks,
    TransportError,
    User,
    XpanderError,
)
from xpander_sync._converter import structure
from xpander_sync.local import LocalBackend
from xpander_sync.local.server import sample_agents_dir
from xpander_sync.models import Agent
from xpander_sync.reporting import QueuedReport
from xpander_sync.transport import Transport

from .conftest import BASE, SENTINEL_KEY, load_fixture
from .faults import FaultProxy, closed_port

API_KEY = "xpk-HYGIENE-API-6b1f93"
LLM_STORED = "sk-ant-HYGIENE-STORED-0c4e"
LLM_ENV = "sk-ant-HYGIENE-ENV-9a7d"
OAUTH = "mcp-HYGIENE-OAUTH-51e2"
SENTINELS = (API_KEY, LLM_STORED, LLM_ENV, OAUTH)
SAMPLE_AGENTS = ["agt-openai", "agt-anthropic", "agt-team", "agt-json", "agt-sub-b", "agt-secret"]
MCP_URL = "https://mcp.notion.example/mcp"
FAST = RetryPolicy(max_retries=1, backoff_base=0.0, backoff_max=0.0)


def assert_clean(texts: Iterable[str], where: str = "") -> None:
    text = "\n".join(texts)
    found = [s for s in SENTINELS if s in text]
    assert not found, f"{found} leaked {where}"


def shown(objects: Iterable[Any] = (), errors: Iterable[BaseException] = ()) -> List[str]:
    out = []
    for obj in objects:
        out += [repr(obj), str(obj)]
    for exc in errors:
        out += [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    return out


def logged(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [caplog.text] + [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]


def file_bytes(path: str) -> bytes:
    """A SQLite file and its journal files."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            data += Path(path + suffix).read_bytes()
    return data


@pytest.fixture
def debug(caplog):
    caplog.set_level(logging.DEBUG)  # the root: xpander_sync, urllib3 and everything else propagate here
    for name in ("xpander_sync", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def platform(tmp_path):
    """A local backend that requires the sentinel API key, with an agent holding a stored LLM key."""
    backend = LocalBackend(db_path=str(tmp_path / "platform.sqlite3"), api_key=API_KEY).start()
    agent = json.loads((sample_agents_dir() / "agt-anthropic.json").read_text())
    agent.update(id="agt-secret", unique_name="secret-keeper", name="Secret Keeper")
    agent["llm_credentials"] = {"name": "team-key", "value": LLM_STORED, "description": "stored on the platform"}
    backend.add_agent(agent)
    yield backend
    backend.stop()


def configuration(url: str, **extra: Any) -> Configuration:
    settings = dict(api_key=API_KEY, base_url=url, organization_id="local-org", agent_cache_ttl=0, retry=FAST,
                    connect_timeout=1.0, read_timeout=5.0, mcp_auth_poll_interval=0.05, mcp_auth_timeout=5)
    settings.update(extra)
    return Configuration(**settings)


def platform_log(platform: LocalBackend) -> str:
    return json.dumps(platform.requests_log, default=str)


# -- the library flows -----------------------------------------------------------------------------


def test_reports_tasks_agents_and_errors_at_debug(platform, debug, tmp_path):
    cfg = configuration(platform.url)
    backend = Backend(cfg)
    objects: List[Any] = [cfg, backend, Transport(cfg)]
    errors: List[BaseException] = []

    report = backend.report_external_task(agent_id="agt-openai", input="q", result="a",
                                          llm_response={"text": "hi"}, tokens={"prompt_tokens": 1})
    task = backend.invoke_agent("agt-openai", "hello", user_details=User(id="user-1", email="u@example.com"))
    loaded = Tasks(cfg).get(task.id)
    loaded.result = "done"
    loaded.save()
    agent = Agents(cfg).get("agt-secret")
    assert agent.llm_credentials.value.reveal() == LLM_STORED  # the stored key really came back
    objects += [report, task, loaded, agent, agent.llm_credentials, Agents(cfg).list()]

    # A report that cannot be delivered goes to the outbox (the key must not), then is flushed.
    outbox = str(tmp_path / "outbox.sqlite3")
    with FaultProxy(platform.url, default="rst") as proxy:
        queued_cfg = configuration(proxy.url, outbox=outbox)
        queued = Backend(queued_cfg).report_external_task(agent_id="agt-openai", input="later", result="r")
        assert isinstance(queued, QueuedReport)
        assert_clean([file_bytes(outbox).decode("latin-1")], "into the outbox file")
        proxy.set_default("pass")
        flushed = Backend(queued_cfg).flush_outbox()
        assert flushed.delivered == [queued.task_id]
        assert all(s.headers.get("x-api-key") == API_KEY for s in proxy.seen)  # the key was sent (to its host)
        objects += [queued, flushed]
    assert_clean([file_bytes(outbox).decode("latin-1")], "into the outbox file")

    # Failures: a wrong key, a missing task, a server echoing the request, an HTML page, no server.
    with pytest.raises(PermissionDeniedError) as wrong:
        Tasks(configuration(platform.url, api_key="xpk-wrong")).get(task.id)
    with pytest.raises(NotFoundError) as missing:
        Tasks(cfg).get("no-such-task")
    with FaultProxy(None, default="echo") as echo:
        with pytest.raises(AuthenticationError) as echoed:
            Backend(configuration(echo.url)).report_external_task(agent_id="agt-openai")
        assert echo.seen[0].headers["x-api-key"] == API_KEY  # the server did get (and echo) the key
    with FaultProxy(None, default="html") as html:
        with pytest.raises(ResponseDecodeError) as page:
            Agents(configuration(html.url)).get("agt-secret")
    with pytest.raises(TransportError) as refused:
        Backend(configuration(f"http://127.0.0.1:{closed_port()}")).invoke_agent("agt-openai", "x")
    errors += [wrong.value, missing.value, echoed.value, page.value, refused.value]

    assert len([r for r in debug.records if r.levelno == logging.DEBUG and r.name.startswith("urllib3")]) > 5
    assert len([r for r in debug.records if r.levelno == logging.DEBUG and r.name.startswith("xpander_sync")]) > 5
    assert_clean(logged(debug), "into the logs")
    assert_clean(shown(objects, errors), "into a repr, str or traceback")
    assert_clean([platform_log(platform)], "into the local backend's request log")


def test_get_args_for_every_sample_agent_and_the_oauth_flow(platform, debug, monkeypatch):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    from agno.tools.mcp import MCPTools

    cfg = configuration(platform.url)
    backend = Backend(cfg)
    visible: List[Any] = []
    for agent_id in SAMPLE_AGENTS:
        args = backend.get_args(agent_id=agent_id)
        visible.append(without_models(args))
    secret_args = backend.get_args(agent_id="agt-secret")
    assert secret_args["model"].api_key == LLM_STORED  # no environment key: the stored one is used

    monkeypatch.setenv("ANTHROPIC_API_KEY", LLM_ENV)
    env_args = backend.get_args(agent_id="agt-secret")
    assert env_args["model"].api_key == LLM_ENV  # locally the environment wins
    visible += [without_models(secret_args), without_models(env_args)]

    # MCP OAuth: the user "logs in" when the login_required event arrives; the token is the sentinel.
    events = []

    def log_in(agent, task, event):
        events.append(event)
        if event.data["type"] == "login_required":
            state = parse_qs(urlsplit(event.data["data"]["url"]).query)["state"][0]
            platform.complete_login(state, token=OAUTH)

    task = backend.invoke_agent("agt-mcp", "q", user_details=User(id="user-1", email="u@example.com"))
    args = backend.get_args(agent_id="agt-mcp", task=task, auth_events_callback=log_in)
    (mcp,) = [t for t in args["tools"] if isinstance(t, MCPTools)]
    assert mcp.server_params.headers["Authorization"] == f"Bearer {OAUTH}"  # the token was used
    assert [e.data["type"] for e in events] == ["login_required", "token_ready"]
    visible += [args, events, [e.data for e in events], platform.events(task.id), task]

    assert_clean(logged(debug), "into the logs")
    assert_clean(shown(visible), "into a repr or str")
    assert_clean([platform_log(platform)], "into the local backend's request log")


def without_models(args: dict) -> dict:
    """The built arguments minus agno's model objects: agno's ``Model`` dataclasses show their
    ``api_key`` in ``repr`` (agno's choice, not ours; see docs/reliability.md)."""
    out = {k: v for k, v in args.items() if k not in ("model", "members")}
    out["members"] = [getattr(m, "name", None) for m in args.get("members", [])]
    return out


# -- the command line -------------------------------------------------------------------------------


def start_cli(*argv: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xpander_sync", "-v", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_at_debug(platform, tmp_path):
    pytest.importorskip("agno")  # builds real agno objects (the agno extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XPANDER_", "IS_")) and not k.endswith("_API_KEY")}
    env.update(XPANDER_API_KEY=API_KEY, XPANDER_BASE_URL=platform.url, ANTHROPIC_API_KEY=LLM_ENV,
               HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"), XPANDER_ORGANIZATION_ID="local-org")
    outbox = str(tmp_path / "cli-outbox.sqlite3")
    down = f"http://127.0.0.1:{closed_port()}"
    task_id = "3f7c2a9e-0000-4c1b-9e0a-6b5d2f1e7a44"
    report = start_cli("report", "--agent-id", "agt-openai", "--id", task_id, "--input", "q", "--result", "a",
                       "--json", env=env)
    report_out, report_err = report.communicate(timeout=60)
    with FaultProxy(None, default="echo") as echo:
        started = {  # independent commands, run side by side to keep the test short
            "args": start_cli("args", "agt-secret", "--json", env=env),
            "agents": start_cli("agents", "list", env=env),
            "tasks": start_cli("tasks", "show", task_id, "--json", env=env),
            "queued": start_cli("--base-url", down, "report", "--agent-id", "agt-openai", "--input", "q",
                                "--result", "a", "--outbox", outbox, env=env),
            "echo": start_cli("--base-url", echo.url, "--api-key", API_KEY, "agents", "list", env=env),
        }
        outputs = {name: proc.communicate(timeout=60) for name, proc in started.items()}
        assert echo.seen and echo.seen[0].headers["x-api-key"] == API_KEY  # the key was sent, then echoed
    listing = start_cli("outbox", "list", "--outbox", outbox, env=env)
    outputs["outbox list"] = listing.communicate(timeout=60)
    outputs["report"] = (report_out, report_err)
    codes = {name: proc.returncode for name, proc in {**started, "outbox list": listing, "report": report}.items()}

    assert codes == {"report": 0, "args": 0, "agents": 0, "tasks": 0, "queued": 3, "echo": 1, "outbox list": 0}
    assert json.loads(report_out)["id"] == task_id and task_id in outputs["tasks"][0]
    assert "DEBUG" in report_err and "DEBUG" in outputs["args"][1]  # -v really logged
    for name, (out, err) in outputs.items():
        assert_clean([out, err], f"into the output of {name!r}")
    assert_clean([file_bytes(outbox).decode("latin-1")], "into the CLI's outbox")
    assert_clean([platform_log(platform)], "into the local backend's request log")


# -- no request to another host -----------------------------------------------------------------------


@pytest.mark.parametrize("call", ["get", "report"])
def test_a_redirect_to_another_server_gets_nothing(call):
    with FaultProxy(None, default="500") as sink, \
            FaultProxy(None, default="redirect", redirect_to=sink.url + "/steal") as redirector:
        cfg = configuration(redirector.url)
        with pytest.raises(APIError) as info:
            if call == "get":
                Tasks(cfg).get("t-1")
            else:
                Backend(cfg).report_external_task(agent_id="agt-openai")
        assert type(info.value) is APIError and info.value.status_code == 302
        assert len(redirector.seen) == 1 and redirector.seen[0].headers["x-api-key"] == API_KEY
        assert sink.connections == 0 and sink.seen == []
        assert_clean(shown(errors=[info.value]))

        # The control: a client that follows redirects hands the key to the other server.
        requests.get(redirector.url + "/x", headers={"x-api-key": API_KEY}, timeout=5)
        assert sink.seen[0].path == "/steal" and sink.seen[0].headers["x-api-key"] == API_KEY


def test_task_files_are_downloaded_without_the_key(platform):
    with FaultProxy(None, default="html") as files:
        task = Backend(configuration(platform.url)).invoke_agent(
            "agt-openai", "read this", file_urls=[files.url + "/notes.txt"])
        message = task.to_message(download_timeout=5)
    assert "502 Bad Gateway" in message  # the file was fetched
    (seen,) = files.seen
    assert "x-api-key" not in seen.headers and "authorization" not in seen.headers


# -- TLS and proxies ------------------------------------------------------------------------------------


def test_tls_verification_is_on_by_default_and_settings_reach_the_session(tmp_path):
    assert Configuration(api_key="k").verify is True
    assert Transport(Configuration(api_key="k", base_url="https://api.example")).session.verify is True
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = Configuration(api_key="k", base_url="https://api.example", verify=str(bundle),
                        proxies={"https": "http://127.0.0.1:3128"})
    session = Transport(cfg).session
    assert session.verify == str(bundle)
    assert session.proxies["https"] == "http://127.0.0.1:3128"
    assert Transport(Configuration(api_key="k", verify=False)).session.verify is False


def test_explicit_verify_and_proxies_win_over_the_environment(platform, monkeypatch, tmp_path):
    """``Configuration(proxies=..., verify=...)`` is explicit; ``HTTP(S)_PROXY`` and
    ``REQUESTS_CA_BUNDLE`` must not override it (requests merges the environment *over*
    session settings when they are not passed per request). Otherwise the API key goes to
    a proxy the configuration did not name."""
    import requests.adapters

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    seen_verify = []
    original_send = requests.adapters.HTTPAdapter.send

    def recording_send(self, request, **kwargs):
        seen_verify.append(kwargs.get("verify"))
        return original_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    with FaultProxy(platform.url) as configured, FaultProxy(platform.url) as from_env:
        monkeypatch.setenv("HTTP_PROXY", from_env.url)
        monkeypatch.setenv("http_proxy", from_env.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "env-ca.pem"))
        (tmp_path / "cfg-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        cfg = configuration(platform.url, proxies={"http": configured.url}, verify=str(tmp_path / "cfg-ca.pem"))
        with pytest.raises(ModuleException):  # a proxy gets an absolute URL the backend does not route
            Tasks(cfg).get("t-1")
        routed = {"configured": len(configured.seen), "environment": len(from_env.seen)}
        env_got_key = any(s.headers.get("x-api-key") == API_KEY for s in from_env.seen)
    assert (routed, seen_verify) == ({"configured": 1, "environment": 0}, [str(tmp_path / "cfg-ca.pem")]), (
        f"environment proxy got the key: {env_got_key}")


def test_a_task_from_the_oauth_flow_keeps_user_tokens_out_of_repr():
    task_json = copy.deepcopy(json.loads((Path(__file__).parent / "fixtures" / "task_status.json").read_text()))
    task_json["user_tokens"] = {"gi-mcp-1": OAUTH}
    task_json["user_oidc_token"] = OAUTH
    from xpander_sync._converter import structure

    task = structure(task_json, Task)
    assert task.user_tokens["gi-mcp-1"] == OAUTH
    assert_clean([repr(task), str(task)])


# -- the same promise with responses at the HTTP boundary (no backend) ----------------------------

LLM_SENTINEL = "sk-ant-SENTINEL-LLM-42"


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

    printed = "\n".join(shown([config, transport, backend, tasks, agent, agent.llm_credentials], errors)
                         + logged(debug_logs))
    assert SENTINEL_KEY not in printed
    assert LLM_SENTINEL not in printed
    assert len([r for r in debug_logs.records if r.levelname == "DEBUG"]) >= 5  # DEBUG logging was on


# -- issue 16, finding 7: the redaction policy of models and settings ---------------------------------

def test_models_and_settings_never_show_header_values_tokens_env_vars_or_url_passwords():
    from xpander_sync import Agent, MCPServerDetails

    secrets = ["Bearer hdr-SECRET-1", "env-SECRET-2", "sso-SECRET-3", "portkey-SECRET-4", "userinfo-SECRET-5",
               "proxy-SECRET-6", "gateway-SECRET-7", "query-SECRET-8"]
    server = MCPServerDetails(url="https://mcp.example/x?token=query-SECRET-8",
                              headers={"Authorization": secrets[0]}, env_vars={"API_KEY": secrets[1]},
                              sso_token=secrets[2])
    agent_json = copy.deepcopy(json.loads((Path(__file__).parent / "fixtures" / "agent_mcp.json").read_text()))
    agent_json["llm_extra_headers"] = {"x-portkey-api-key": secrets[3]}
    agent = structure(agent_json, Agent)
    task_json = json.loads((Path(__file__).parent / "fixtures" / "task_status.json").read_text())
    task_json["payload_extension"] = {"llm_gateway": {"base_url": "https://gw.example", "token": secrets[6]}}
    task_json["mcp_servers"] = [{"url": "https://m.example", "headers": {"Authorization": secrets[0]}}]
    task = structure(task_json, Task)
    config = Configuration(api_key="k", base_url=f"https://user:{secrets[4]}@api.example",
                           proxies={"https": f"http://u:{secrets[5]}@proxy.example:3128"})
    shown_text = "\n".join(shown([server, agent, task, config, Backend(config), Tasks(config)]))
    assert not [s for s in secrets if s in shown_text]
    # ...while the names stay visible, so a repr still says what is configured.
    assert "Authorization" in shown_text and "x-portkey-api-key" in shown_text and "llm_gateway" in shown_text
    assert server.headers["Authorization"] == secrets[0]  # the values themselves are intact

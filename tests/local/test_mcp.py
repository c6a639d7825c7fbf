"""The MCP-auth emulation: get_token, the simulated login page and complete_login, per user and server."""

from __future__ import annotations

import pytest
import requests

from xpander_sync.local import LocalBackend

from .conftest import MCP_SERVER, assert_json_error

# -- MCP OAuth ----------------------------------------------------------------------------------------------


def test_mcp_login_flow_per_user(backend: LocalBackend, session: requests.Session) -> None:
    get_token = backend.url + "/mcp_auth/agt-mcp/{user}/get_token"
    first = session.post(
        get_token.format(user="user-42"),
        json=MCP_SERVER,
        params={"generate_login_url": "true", "execution_id": "task-1"},
    ).json()
    assert first["type"] == "login_required"
    data = first["data"]
    assert data["server_url"] == MCP_SERVER["url"] and data["server_name"] == "Notion"
    assert data["url"].startswith(backend.url + "/mcp_auth/login?state=")

    polled = session.post(
        get_token.format(user="user-42"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert polled == first  # polling keeps the same pending login

    # The user "clicks" the login URL: no API key involved.
    click = requests.get(data["url"], timeout=5)
    assert click.status_code == 200 and click.headers["Content-Type"] == "application/json"
    assert click.json()["status"] == "ok" and "access_token" not in click.text

    ready = session.post(
        get_token.format(user="user-42"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert ready["type"] == "token_ready" and ready["data"]["access_token"].startswith("mcp-local-")
    assert requests.get(data["url"], timeout=5).status_code == 200  # clicking twice is harmless

    # Tokens are per user: another user has to log in separately.
    other = session.post(
        get_token.format(user="user-7"), json=MCP_SERVER, params={"generate_login_url": "true"}
    ).json()
    assert other["type"] == "login_required" and other["data"]["url"] != data["url"]
    token = backend.complete_login(other["data"]["url"].split("state=")[1])
    again = session.post(
        get_token.format(user="user-7"), json=MCP_SERVER, params={"generate_login_url": "false"}
    ).json()
    assert again == {"type": "token_ready", "data": {"access_token": token}}
    assert token != ready["data"]["access_token"]

    # force_refresh drops the token and asks for a new login.
    refreshed = session.post(
        get_token.format(user="user-7"),
        json=MCP_SERVER,
        params={"generate_login_url": "true", "force_refresh": "true"},
    ).json()
    assert refreshed["type"] == "login_required"


def test_mcp_complete_login_directly_and_errors(backend: LocalBackend, session: requests.Session) -> None:
    backend.complete_login(user_id="u-1", server_url=MCP_SERVER["url"], token="tok-fixed")
    resp = session.post(
        backend.url + "/mcp_auth/agt-mcp/u-1/get_token",
        json=MCP_SERVER,
        params={"generate_login_url": "true"},
    ).json()
    assert resp == {"type": "token_ready", "data": {"access_token": "tok-fixed"}}
    with pytest.raises(KeyError):
        backend.complete_login("no-such-state")
    with pytest.raises(ValueError):
        backend.complete_login(user_id="u-1")
    assert_json_error(requests.get(backend.url + "/mcp_auth/login?state=no-such-state", timeout=5), 404)
    assert_json_error(requests.get(backend.url + "/mcp_auth/login", timeout=5), 400)
    assert_json_error(session.post(backend.url + "/mcp_auth/agt-mcp/u-1/get_token", json=[1]), 400)
    assert_json_error(session.post(backend.url + "/mcp_auth/agt-nope/u-1/get_token", json=MCP_SERVER), 404)
    local = session.post(
        backend.url + "/mcp_auth/agt-mcp/u-1/get_token",
        json=dict(MCP_SERVER, type="local", url=None, command="npx srv"),
    ).json()
    assert local["type"] == "not_supported" and local["data"]["message"]

"""resources._base: every id is confined to its route (issue 16, finding 3)."""

from __future__ import annotations

import pytest

from xpander_sync import Agents, Backend, InvalidInputError, MCPServerDetails, Reports, Tasks
from xpander_sync.resources import Events, MCPAuth, Tools
from xpander_sync.resources._base import route

from ..conftest import BASE, load_fixture


@pytest.mark.parametrize("bad", [".", "..", "", "  ", "a/b", "a?b", "a#b", "a\nb", "a\rb", "a\x00b", "\ud800",
                                 None, 5])
def test_an_id_that_could_leave_its_route_is_refused(bad):
    with pytest.raises(InvalidInputError, match="task_id"):
        route("/agent-execution/{task_id}/status", task_id=bad)


def test_every_id_is_one_percent_encoded_segment():
    assert route("/agents/{agent_id}/db", agent_id="..%2F..%2Fadmin") == "/agents/..%252F..%252Fadmin/db"
    assert route("/agents/{agent_id}", agent_id="a b+c;d@e") == "/agents/a%20b%2Bc%3Bd%40e"
    assert route("/agents/{agent_id}", agent_id="agt-é") == "/agents/agt-%C3%A9"


@pytest.mark.parametrize("call", [
    lambda c: Tasks(c).stop(".."),
    lambda c: Tasks(c).get("."),
    lambda c: Tasks(c).update("..", result="x"),
    lambda c: Agents(c).get(".."),
    lambda c: Reports(c).send("..", {"id": "r1"}),
    lambda c: Backend(c).report_external_task(agent_id=".."),
    lambda c: Backend(c).invoke_agent(agent_id="agt-1", prompt='{"xpander_task_id": ".."}'),
    lambda c: Tools(c).invoke("agt-1", "..", {}),
    lambda c: Tools(c).invoke("agt-1", "op", {}, agent_version="1\r\n"),
    lambda c: MCPAuth(c).get_token("..", "u1", MCPServerDetails(url="https://m"), execution_id="t",
                                   generate_login_url=False),
    lambda c: Events(c).push("..", []),
])
def test_dot_ids_send_nothing(mocked, config, call):
    with pytest.raises(InvalidInputError):
        call(config)
    assert len(mocked.calls) == 0


def test_the_build_resources_encode_ids_too(mocked, config):
    mocked.post(f"{BASE}/agents/a%252Fb/operations/op%20x", json={"ok": True})
    Tools(config).invoke("a%2Fb", "op x", {})
    assert mocked.calls[0].request.path_url == "/agents/a%252Fb/operations/op%20x"


def test_an_encoded_slash_reaches_the_platform_still_encoded(mocked, config):
    mocked.get(f"{BASE}/agent-execution/..%252F..%252Fadmin/status", json=load_fixture("task_status"))
    Tasks(config).get("..%2F..%2Fadmin")
    assert mocked.calls[0].request.path_url == "/agent-execution/..%252F..%252Fadmin/status"

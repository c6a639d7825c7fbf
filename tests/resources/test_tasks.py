"""resources.tasks: routes, headers and bodies of Tasks as the reference lists them."""

from __future__ import annotations

import json

import pytest
import responses

from xpander_sync import (
    AgentExecutionStatus,
    Configuration,
    InvalidInputError,
    NotFoundError,
    Task,
    Tasks,
)

from ..conftest import BASE, body_of, load_fixture


def test_organization_segment_in_paths(mocked):
    cfg = Configuration(api_key="k", base_url="http://localhost:9016", organization_id="org1")
    mocked.get("http://localhost:9016/org1/agent-execution/t1/status", json=load_fixture("task_status"))
    assert Tasks(cfg).get("t1").configuration is cfg


def test_tasks_get_and_reload(mocked, config):
    data = load_fixture("task_status")
    mocked.get(f"{BASE}/agent-execution/{data['id']}/status", json=data)
    task = Tasks(config).get(data["id"])
    assert task.status is AgentExecutionStatus.COMPLETED
    updated = dict(data, result="new result")
    mocked.get(f"{BASE}/agent-execution/{data['id']}/status", json=updated)
    assert task.reload() is task and task.result == "new result" and task.configuration is config


def test_tasks_get_not_found(mocked, config):
    mocked.get(f"{BASE}/agent-execution/missing/status", json={"detail": "task not found"}, status=404)
    with pytest.raises(NotFoundError, match="task not found"):
        Tasks(config).get("missing")


def test_tasks_create_defaults(mocked, config):
    mocked.post(f"{BASE}/agent-execution/a1", json=load_fixture("create_task_response"))
    Tasks(config).create("a1", "hi", think_mode=None)  # None is not a crash (upstream AttributeError)
    body = body_of(mocked.calls[0])
    assert body["source"] is None and body["input"] == {"text": "hi", "files": [], "user": None}
    assert body["think_mode"] == "default" and body["mcp_servers"] == []
    assert "x-agent-version" not in mocked.calls[0].request.headers


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"output_format": "pdf"}, "output_format"),
        ({"think_mode": "hardest"}, "think_mode"),
        ({"file_urls": "https://one"}, "file_urls"),
        ({"tool_call_limit": 0}, "tool_call_limit"),
        ({"output_schema": "not a dict"}, "output_schema"),
        ({"user_details": 5}, "user_details"),
        ({"user_details": {"email": 5}}, "user_details"),
        ({"mcp_servers": [{"type": 3}]}, r"mcp_servers\[0\]"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_create_task_bad_input_names_the_field(config, kwargs, field):
    with pytest.raises(InvalidInputError, match=field):
        Tasks(config).create("a1", "hi", **kwargs)


def test_task_save_sends_the_whole_task_without_deep_planning(mocked, config):
    data = load_fixture("task_status")
    mocked.get(f"{BASE}/agent-execution/{data['id']}/status", json=data)
    mocked.patch(f"{BASE}/agent-execution/{data['id']}/update", json=dict(data, status="completed"))
    task = Tasks(config).get(data["id"])
    task.result = "done"
    task.used_tools.append("extra")
    assert task.save() is task
    body = body_of(mocked.calls[1])
    assert "deep_planning" not in body and "configuration" not in body
    assert body["result"] == "done" and body["used_tools"][-1] == "extra"
    assert body["tokens"]["total_tokens"] == 2042 and body["created_at"].endswith("Z")
    assert body["user_tokens"] == data["user_tokens"]
    mocked.patch(f"{BASE}/agent-execution/{data['id']}/update", json=data)
    task.save(with_deep_plan_update=True)
    assert body_of(mocked.calls[2])["deep_planning"]["enabled"] is True


def test_set_status_and_stop(mocked, config):
    data = load_fixture("create_task_response")
    mocked.patch(f"{BASE}/agent-execution/{data['id']}/update", json=dict(data, status="executing"))
    mocked.delete(f"{BASE}/agent-execution/{data['id']}", json=dict(data, status="stopped"))
    from xpander_sync._converter import structure

    task = structure(data, Task)
    Tasks(config).bind(task)
    task.set_status("executing")
    assert body_of(mocked.calls[0])["status"] == "executing" and body_of(mocked.calls[0])["result"] is None
    assert task.status is AgentExecutionStatus.EXECUTING
    task.stop()
    assert task.status is AgentExecutionStatus.STOPPED and mocked.calls[1].request.body is None


def test_tasks_partial_update_sends_only_given_keys(mocked, config):
    mocked.patch(f"{BASE}/agent-execution/t1/update", json=load_fixture("task_status"))
    Tasks(config).update("t1", status="failed", result="boom")
    assert body_of(mocked.calls[0]) == {"status": "failed", "result": "boom"}
    with pytest.raises(InvalidInputError, match="status"):
        Tasks(config).update("t1", status="exploded")


def test_to_message_downloads_text_files_without_the_api_key(mocked, config):
    from xpander_sync._converter import structure

    data = load_fixture("task_status")
    data["input"]["files"] = ["https://files.example/a.txt", "https://files.example/b.png",
                              "https://files.example/c.csv"]
    with pytest.raises(InvalidInputError, match=r"Task.to_message\(\) needs the platform client.*bind"):
        structure(data, Task).to_message()  # built by hand: no client to download with
    task = Tasks(config).bind(structure(data, Task))
    mocked.get("https://files.example/a.txt", body="hello")
    mocked.get("https://files.example/c.csv", status=404)
    message = task.to_message()
    lines = message.split("\n")
    assert lines[0] == data["input"]["text"]
    assert lines[1] == "Files: https://files.example/a.txt, https://files.example/b.png, https://files.example/c.csv"
    assert lines[2] == "Files contents:"
    assert json.loads(lines[3]) == {"url": "https://files.example/a.txt", "content": "hello"}
    assert json.loads(lines[4])["content"].startswith("Error: ")
    assert all("x-api-key" not in c.request.headers for c in mocked.calls)


def test_to_message_without_injection_and_without_files():
    from xpander_sync._converter import structure

    data = load_fixture("task_status")
    data["disable_attachment_injection"] = True
    with responses.RequestsMock():  # no HTTP at all
        message = structure(data, Task).to_message()
    assert message.endswith('{"url": "https://files.example.com/uploads/meeting-notes.txt"}')
    data["input"]["files"] = []
    assert structure(data, Task).to_message() == data["input"]["text"]


# -- issue 16, finding 15: input files are fetched safely ---------------------------------------------

def test_a_redirect_from_a_public_file_host_to_an_internal_address_is_not_followed(mocked, config):
    from xpander_sync._converter import structure

    data = load_fixture("task_status")
    data["input"]["files"] = ["https://93.184.215.14/notes.txt"]  # a public address
    mocked.get("https://93.184.215.14/notes.txt", status=302, headers={"Location": "http://169.254.169.254/latest"})
    task = Tasks(config).bind(structure(data, Task))
    message = task.to_message()
    assert '"content": "Error: _RedirectRefused"' in message  # the metadata service was never asked
    assert len(mocked.calls) == 1


def test_a_public_redirect_is_followed_and_a_long_file_is_cut(mocked, config):
    from xpander_sync._converter import structure
    from xpander_sync.resources.tasks import MAX_FILE_BYTES

    data = load_fixture("task_status")
    data["input"]["files"] = ["https://93.184.215.14/big.txt"]
    mocked.get("https://93.184.215.14/big.txt", status=301, headers={"Location": "https://93.184.215.15/big.txt"})
    mocked.get("https://93.184.215.15/big.txt", body=b"a" * (MAX_FILE_BYTES + 10))
    content = json.loads(Tasks(config).bind(structure(data, Task)).to_message().split("\n")[-1])["content"]
    assert content.startswith("a" * 100) and content.endswith(f"[cut: the file is longer than {MAX_FILE_BYTES} bytes]")
    assert len(content) < MAX_FILE_BYTES + 100


def test_a_file_with_a_charset_python_does_not_know_is_read_as_utf8(mocked, config):
    from xpander_sync._converter import structure

    data = load_fixture("task_status")
    data["input"]["files"] = ["https://93.184.215.14/notes.txt"]
    mocked.get("https://93.184.215.14/notes.txt", body="héllo".encode(),
               headers={"Content-Type": "text/plain; charset=x-no-such-charset"})
    content = json.loads(Tasks(config).bind(structure(data, Task)).to_message().split("\n")[-1])["content"]
    assert content == "héllo"

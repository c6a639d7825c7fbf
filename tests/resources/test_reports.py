"""resources.reports: the report body (pure) and its one route."""

from __future__ import annotations

import pytest

from xpander_sync import Configuration, InvalidInputError, RetryPolicy, Task, Tokens
from xpander_sync.resources.reports import REPORT_KEYS, Reports
from xpander_sync.transport import Transport

from ..conftest import BASE, body_of, load_fixture

REPORT_URL = f"{BASE}/agent-execution/agt-openai/report_task"


def test_body_is_pure_and_has_the_eight_keys():
    body = Reports.body(id="r1", input="hi", llm_response=None, tokens={"prompt_tokens": 3, "completion_tokens": 4},
                        is_success=True, result="ok", duration=1, used_tools=None)
    assert tuple(body) == REPORT_KEYS
    assert body["tokens"] == {"completion_tokens": 4, "prompt_tokens": 3, "cache_read_tokens": 0,
                              "cache_write_tokens": 0, "total_tokens": 7}
    assert (body["duration"], body["used_tools"]) == (1.0, [])


@pytest.mark.parametrize("tokens", [Tokens(completion_tokens=150, prompt_tokens=50, total_tokens=210),
                                    {"completion_tokens": 150, "prompt_tokens": 50, "total_tokens": 210}])
def test_a_given_total_reaches_the_body(tokens):
    body = Reports.body(id=None, input=None, llm_response=None, tokens=tokens, is_success=True, result=None,
                        duration=0, used_tools=None)
    assert body["tokens"]["total_tokens"] == 210 and body["tokens"]["prompt_tokens"] == 50


def test_send_posts_the_body_as_is_and_returns_the_answer_undecoded(mocked, config):
    mocked.post(REPORT_URL, json={"not": "a task"})  # delivered is delivered, whatever the answer
    body = Reports.body(id="r1", input=None, llm_response=None, tokens=None, is_success=False, result=None,
                        duration=0, used_tools=["a"])
    assert Reports(config).send("agt-openai", body) == {"not": "a task"}
    assert body_of(mocked.calls[0]) == body


def test_send_is_retried_like_a_get_because_the_body_carries_its_id(mocked, sleeps):
    config = Configuration(api_key="k", base_url=BASE, retry=RetryPolicy(max_retries=1))
    mocked.post(REPORT_URL, status=503)
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    reports = Reports(config, transport=Transport(config, sleep=sleeps, rand=lambda: 1.0))
    answer = reports.send("agt-openai", {"id": "r1"})
    assert len(mocked.calls) == 2 and len(sleeps.delays) == 1
    task = reports.task(answer)
    assert isinstance(task, Task) and task.configuration is config  # bound: task.reload() works


@pytest.mark.parametrize("agent_id", ["", "a/b", None])
def test_send_refuses_an_agent_id_that_leaves_the_route(config, agent_id):
    with pytest.raises(InvalidInputError, match="agent_id"):
        Reports(config).send(agent_id, {"id": "r1"})

"""``Backend.track``: a context manager (sync and async) and a decorator that time a run and report it once.

Against the local backend (the ``xpander_backend`` fixture): every test reads the reports the
platform stored. A run result is an agno-shaped object (its class's module is ``agno.run.agent``,
which is how results are recognised); real framework runs are in tests/frameworks/test_report_run.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict, List, Optional

import pytest

from xpander_sync import Backend, Configuration, QueuedReport
from xpander_sync._redact import reveal

AGENT = "agt-openai"


class RunOutput:
    """The shape of agno's ``RunOutput`` (what the agno reader reads)."""

    def __init__(self, content: str, status: str = "COMPLETED", tools: Optional[List[str]] = None) -> None:
        self.content = content
        self.status = status
        self.model = "gpt-4.1"
        self.metrics = {"input_tokens": 30, "output_tokens": 12, "cache_read_tokens": 4, "cache_write_tokens": 0}
        self.tools = [{"tool_name": name} for name in (tools or [])]
        self.member_responses: List[Any] = []


RunOutput.__module__ = "agno.run.agent"


def _reports(xpander_backend: Any) -> List[Dict[str, Any]]:
    return [r["body"] for r in xpander_backend.local.reports()]


@pytest.fixture
def backend(xpander_backend: Any) -> Backend:
    return Backend(xpander_backend.configuration)


def test_a_block_is_timed_and_reported_once(backend: Backend, xpander_backend: Any) -> None:
    with backend.track(agent_id=AGENT, input="hi") as tracked:
        time.sleep(0.05)
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is True and body["input"] == "hi"
    assert body["duration"] >= 0.05 and tracked.duration == body["duration"]
    assert tracked.report.id == body["id"]


def test_set_run_reports_the_run_and_fields_win(backend: Backend, xpander_backend: Any) -> None:
    with backend.track(agent_id=AGENT, input="hi") as tracked:
        tracked.set_run(RunOutput("the answer", tools=["Search", "Fetch"]), used_tools=["Mine"])
    (body,) = _reports(xpander_backend)
    assert body["result"] == "the answer" and body["used_tools"] == ["Mine"]
    assert body["tokens"]["prompt_tokens"] == 30 and body["tokens"]["cache_read_tokens"] == 4
    assert body["is_success"] is True


def test_an_llm_key_a_build_resolved_is_scrubbed_from_a_failed_run(backend: Backend, xpander_backend: Any) -> None:
    pytest.importorskip("agno")
    args = backend.get_args(agent_id="agt-anthropic")  # its stored (custom) Anthropic key
    llm_key = str(args["model"].api_key)
    assert llm_key and len(llm_key) >= 8 and llm_key != "EMPTY"
    with pytest.raises(RuntimeError), backend.track(agent_id="agt-anthropic", input="hi"):
        raise RuntimeError(f"401 from the provider: invalid x-api-key {llm_key}")
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is False and "401 from the provider" in body["result"]
    assert llm_key not in json.dumps(body)


def test_an_error_status_is_a_failure(backend: Backend, xpander_backend: Any) -> None:
    with backend.track(agent_id=AGENT) as tracked:
        tracked.set_run(RunOutput("model error", status="ERROR"))
    assert _reports(xpander_backend)[0]["is_success"] is False


def test_an_exception_is_reported_scrubbed_and_reraised(backend: Backend, xpander_backend: Any) -> None:
    key = reveal(xpander_backend.configuration.api_key)
    assert key
    with pytest.raises(RuntimeError, match="boom"), backend.track(agent_id=AGENT, input="hi"):
        raise RuntimeError(f"boom with {key}")
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is False and "RuntimeError: boom" in body["result"]
    assert key not in str(body)


def test_the_decorator_reports_each_call_with_its_return_value(backend: Backend, xpander_backend: Any) -> None:
    @backend.track(agent_id=AGENT, input="q")
    def run(text: str) -> Any:
        return RunOutput(text, tools=["Search"])

    @backend.track(agent_id=AGENT)
    def plain() -> str:
        return "just text"

    assert run("one").content == "one" and run("two").content == "two" and plain() == "just text"
    bodies = _reports(xpander_backend)
    assert [b["result"] for b in bodies] == ["one", "two", "just text"]
    assert bodies[0]["used_tools"] == ["Search"] and len({b["id"] for b in bodies}) == 3


def test_the_decorator_reraises_and_reports_once(backend: Backend, xpander_backend: Any) -> None:
    @backend.track(agent_id=AGENT)
    def fail() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        fail()
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is False and "bad input" in body["result"]


def test_async_context_manager_and_decorator(backend: Backend, xpander_backend: Any) -> None:
    @backend.track(agent_id=AGENT, input="a")
    async def run() -> Any:
        await asyncio.sleep(0.01)
        return RunOutput("async answer")

    @backend.track(agent_id=AGENT)
    async def fail() -> None:
        raise KeyError("missing")

    async def main() -> None:
        async with backend.track(agent_id=AGENT, input="b") as tracked:
            tracked.set_run(RunOutput("in block"))
        assert (await run()).content == "async answer"
        with pytest.raises(KeyError):
            await fail()
        with pytest.raises(LookupError):
            async with backend.track(agent_id=AGENT):
                raise LookupError("gone")

    asyncio.run(main())
    bodies = _reports(xpander_backend)
    assert [(b["result"], b["is_success"]) for b in bodies[:2]] == [("in block", True), ("async answer", True)]
    assert [b["is_success"] for b in bodies[2:]] == [False, False]
    assert "missing" in bodies[2]["result"] and "gone" in bodies[3]["result"]


def test_nested_tracks_report_separately(backend: Backend, xpander_backend: Any) -> None:
    with pytest.raises(RuntimeError):
        with backend.track(agent_id=AGENT, input="outer") as outer:
            with backend.track(agent_id=AGENT, input="inner") as inner:
                inner.set_run(RunOutput("inner answer"))
            raise RuntimeError("outer failed")
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert set(bodies) == {"outer", "inner"}
    assert bodies["inner"]["is_success"] is True and bodies["outer"]["is_success"] is False
    assert outer.duration is not None and inner.duration is not None and outer.duration >= inner.duration


def test_a_tracked_run_is_entered_once(backend: Backend) -> None:
    from xpander_sync.errors import InvalidInputError

    tracked = backend.track(agent_id=AGENT)
    with tracked:
        pass
    with pytest.raises(InvalidInputError):
        tracked.__enter__()


def test_background_mode_delivers_through_the_outbox_path(xpander_backend: Any, tmp_path: Any) -> None:
    configuration = Configuration(
        api_key=xpander_backend.configuration.api_key, base_url=xpander_backend.configuration.base_url,
        organization_id="local-org", background_reports=True, outbox=str(tmp_path / "outbox.sqlite3"),
    )
    backend = Backend(configuration)
    with backend.track(agent_id=AGENT, input="bg") as tracked:
        tracked.set_run(RunOutput("background answer"))
    with pytest.raises(ValueError), backend.track(agent_id=AGENT, input="bg-fail"):
        raise ValueError("no")
    assert isinstance(tracked.report, QueuedReport)
    assert backend.flush(timeout=10)
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert bodies["bg"]["result"] == "background answer" and bodies["bg"]["id"] == tracked.report.task_id
    assert bodies["bg-fail"]["is_success"] is False


# -- set_result: a result that is no framework run result -----------------------------------------


def test_set_result_reports_the_text_and_fields(backend: Backend, xpander_backend: Any) -> None:
    with backend.track(agent_id=AGENT, input="hi") as tracked:
        tracked.set_result("my answer", tokens={"prompt_tokens": 12, "completion_tokens": 40},
                           used_tools=["Search", "Fetch"], llm_response={"model": "mine"})
    (body,) = _reports(xpander_backend)
    assert body["result"] == "my answer" and body["used_tools"] == ["Search", "Fetch"]
    assert (body["tokens"]["prompt_tokens"], body["tokens"]["completion_tokens"]) == (12, 40)
    assert body["llm_response"] == {"model": "mine"} and body["is_success"] is True
    assert body["input"] == "hi" and body["duration"] == tracked.duration


def test_set_result_can_say_the_run_failed_and_the_last_setter_wins(backend: Backend,
                                                                      xpander_backend: Any) -> None:
    with backend.track(agent_id=AGENT, input="a") as tracked:
        tracked.set_run(RunOutput("from the run", tools=["Search"]))
        tracked.set_result("refused", is_success=False)
    with backend.track(agent_id=AGENT, input="b") as tracked:
        tracked.set_result("overwritten", used_tools=["Mine"])
        tracked.set_run(RunOutput("from the run", tools=["Search"]))
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert (bodies["a"]["result"], bodies["a"]["is_success"], bodies["a"]["used_tools"]) == ("refused", False, [])
    assert bodies["a"]["tokens"] is None  # nothing of the run is kept
    assert (bodies["b"]["result"], bodies["b"]["used_tools"]) == ("from the run", ["Search"])
    assert bodies["b"]["tokens"]["prompt_tokens"] == 30


@pytest.mark.parametrize("call,named", [
    (lambda t: t.set_result("x", duration=3), "'duration'"),
    (lambda t: t.set_result("x", input="again"), "'input'"),
    (lambda t: t.set_result("x", tokenz={}), "'tokenz'"),
    (lambda t: t.set_result("x", tokens={"prompt": 1}), "tokens"),
    (lambda t: t.set_result("x", tokens={"prompt_tokens": -1}), "tokens.prompt_tokens"),
    (lambda t: t.set_result("x", used_tools="Search"), "used_tools"),
    (lambda t: t.set_result("x", is_success="yes"), "is_success"),
    (lambda t: t.set_result("x", llm_response=object()), "llm_response"),
    (lambda t: t.set_result("x", id=""), "id"),
    (lambda t: t.set_result({"not": "text"}), "result"),
    (lambda t: t.set_run(RunOutput("r"), used_tools=[1]), "used_tools"),
    (lambda t: t.set_run(RunOutput("r"), duration=1), "'duration'"),
])
def test_bad_fields_are_refused_at_once_naming_the_field(backend: Backend, xpander_backend: Any, call: Any,
                                                         named: str) -> None:
    from xpander_sync.errors import InvalidInputError

    tracked = backend.track(agent_id=AGENT, input="bad")
    with pytest.raises(InvalidInputError, match=named.replace(".", r"\.")):
        call(tracked)
    with pytest.raises(InvalidInputError), tracked:  # inside the block: the block failed, and is reported so
        call(tracked)
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is False and "InvalidInputError" in body["result"]


def test_a_failure_after_set_result_is_reported_as_the_failure(backend: Backend, xpander_backend: Any) -> None:
    with pytest.raises(RuntimeError), backend.track(agent_id=AGENT) as tracked:
        tracked.set_result("half done", id="task-kept-1", used_tools=["Search"])
        raise RuntimeError("then it broke")
    (body,) = _reports(xpander_backend)
    assert body["is_success"] is False and "then it broke" in body["result"]
    assert body["id"] == "task-kept-1" and body["used_tools"] == []


def test_set_result_in_async_with(backend: Backend, xpander_backend: Any) -> None:
    async def main() -> None:
        async with backend.track(agent_id=AGENT, input="async") as tracked:
            await asyncio.sleep(0.01)
            tracked.set_result("async text", tokens={"prompt_tokens": 3, "completion_tokens": 4})

    asyncio.run(main())
    (body,) = _reports(xpander_backend)
    assert body["result"] == "async text" and body["tokens"]["completion_tokens"] == 4 and body["duration"] > 0


def test_a_decorated_functions_returned_text_or_data_is_the_result(backend: Backend, xpander_backend: Any) -> None:
    @backend.track(agent_id=AGENT, input="str")
    def text() -> str:
        return "plain text"

    @backend.track(agent_id=AGENT, input="async-str")
    async def async_text() -> str:
        return "async plain text"

    @backend.track(agent_id=AGENT, input="dict")
    def data() -> Dict[str, Any]:
        return {"answer": 42, "items": ["a"]}

    @backend.track(agent_id=AGENT, input="other")
    def number() -> int:
        return 7

    assert text() == "plain text" and asyncio.run(async_text()) == "async plain text"
    assert data() == {"answer": 42, "items": ["a"]} and number() == 7
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert bodies["str"]["result"] == "plain text" and bodies["async-str"]["result"] == "async plain text"
    assert bodies["dict"]["result"] == '{"answer": 42, "items": ["a"]}'
    assert bodies["other"]["result"] is None  # neither text, data nor a run result: a timed run
    assert all(b["is_success"] is True and b["tokens"] is None for b in bodies.values())


def test_a_returned_task_is_not_sent_as_the_result_so_its_tokens_stay_home(backend: Backend,
                                                                           xpander_backend: Any) -> None:
    import datetime

    from xpander_sync import Task
    from xpander_sync.models.task import AgentExecutionInput

    task = Task(id="t-1", agent_id=AGENT, organization_id="org", input=AgentExecutionInput(text="hi"),
                created_at=datetime.datetime.now(datetime.timezone.utc), user_oidc_token="oidc-SECRET-1",
                user_tokens={"mcp-1": "mcp-SECRET-2"},
                payload_extension={"llm_gateway": {"base_url": "https://gw.example", "token": "gw-SECRET-3"}})

    @backend.track(agent_id=AGENT, input="returns a task")
    def handler() -> Task:
        return task

    assert handler() is task
    body = next(b for b in _reports(xpander_backend) if b["input"] == "returns a task")
    assert body["result"] is None
    assert "SECRET" not in json.dumps(body)


def test_a_decorated_function_gives_its_result_through_tracked_current(backend: Backend,
                                                                        xpander_backend: Any) -> None:
    from xpander_sync.tracking import Tracked

    @backend.track(agent_id=AGENT, input="sync")
    def nightly() -> str:
        current = Tracked.current()
        assert current is not None
        current.set_result("exported 3 rows", used_tools=["export"], tokens={"prompt_tokens": 5})
        return "what set_result gave wins"

    @backend.track(agent_id=AGENT, input="async")
    async def nightly_async() -> Any:
        await asyncio.sleep(0.01)
        current = Tracked.current()
        assert current is not None
        current.set_result("async rows", is_success=False)
        return RunOutput("a returned run loses too")

    assert Tracked.current() is None
    assert nightly() == "what set_result gave wins"
    asyncio.run(nightly_async())
    assert Tracked.current() is None
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert (bodies["sync"]["result"], bodies["sync"]["used_tools"]) == ("exported 3 rows", ["export"])
    assert bodies["sync"]["tokens"]["prompt_tokens"] == 5
    assert (bodies["async"]["result"], bodies["async"]["is_success"]) == ("async rows", False)


def test_tracked_current_is_the_innermost_run_of_this_context(backend: Backend, xpander_backend: Any) -> None:
    from xpander_sync.tracking import Tracked

    with backend.track(agent_id=AGENT, input="outer") as outer:
        assert Tracked.current() is outer
        with backend.track(agent_id=AGENT, input="inner") as inner:
            assert Tracked.current() is inner
        assert Tracked.current() is outer

    async def two_tasks() -> None:
        async def one(name: str) -> None:
            async with backend.track(agent_id=AGENT, input=name) as tracked:
                await asyncio.sleep(0.02)
                assert Tracked.current() is tracked  # each task sees its own run
                tracked.set_result(name)

        await asyncio.gather(one("task-a"), one("task-b"))

    asyncio.run(two_tasks())
    assert Tracked.current() is None
    bodies = {b["input"]: b for b in _reports(xpander_backend)}
    assert bodies["task-a"]["result"] == "task-a" and bodies["task-b"]["result"] == "task-b"

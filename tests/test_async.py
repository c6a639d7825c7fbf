"""Async twins: one for every public blocking method, same signature, run in a worker thread."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading

import pytest
import responses

from xpander_sync import Agent, Agents, Backend, Task, Tasks

from .conftest import BASE, load_fixture

PUBLIC_CLASSES = [Backend, Agents, Tasks, Task, Agent]
NOT_IO = {"graph_item_for", "bind", "track"}  # no twin: pure helpers; track serves `with` and `async with`


def public_blocking_methods(cls):
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or getattr(member, "__xpander_twin_of__", None) or name in NOT_IO:
            continue
        if inspect.iscoroutinefunction(member):
            continue
        yield name, member


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_every_public_blocking_method_has_a_twin_with_the_same_signature(cls):
    methods = list(public_blocking_methods(cls))
    assert methods, f"{cls.__name__} has no public methods?"
    for name, method in methods:
        twin = getattr(cls, "a" + name, None)
        assert twin is not None, f"{cls.__name__}.{name} has no async twin"
        assert inspect.iscoroutinefunction(twin)
        assert twin.__xpander_twin_of__ == name
        assert inspect.signature(twin) == inspect.signature(method)


def test_twin_runs_the_blocking_method_in_another_thread_and_honours_overrides(config):
    seen = {}

    class Recording(Backend):
        def report_external_task(self, *args, **kwargs):
            seen["thread"] = threading.get_ident()
            seen["args"] = (args, kwargs)
            return "overridden"

    async def main():
        return await Recording(config).areport_external_task("agt-1", input="x")

    assert asyncio.run(main()) == "overridden"
    assert seen["thread"] != threading.get_ident()
    assert seen["args"] == (("agt-1",), {"input": "x"})


def test_blocking_calls_work_inside_a_running_loop(mocked, config):
    mocked.post(f"{BASE}/agent-execution/agt-openai/report_task", json=load_fixture("report_response"))

    async def notebook_cell():
        # a Jupyter cell or a Django async view calling the blocking API directly
        return Backend(config).report_external_task(agent_id="agt-openai", input="q")

    assert asyncio.run(notebook_cell()).id == "ext-2026-0001"


def test_100_concurrent_areport_external_task_calls_all_complete(config):
    seen_ids = set()
    lock = threading.Lock()

    def reply(request):
        body = json.loads(request.body)
        with lock:
            seen_ids.add(body["id"])
        return 200, {}, json.dumps(dict(load_fixture("report_response"), id=body["id"]))

    async def main():
        backend = Backend(config)
        return await asyncio.gather(
            *(backend.areport_external_task(agent_id="agt-openai", input=f"run {i}") for i in range(100))
        )

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, f"{BASE}/agent-execution/agt-openai/report_task", callback=reply)
        tasks = asyncio.run(main())
        assert len(rsps.calls) == 100
    assert len(tasks) == 100 and len({t.id for t in tasks}) == 100 and {t.id for t in tasks} == seen_ids


def test_twin_errors_propagate(config):
    from xpander_sync import MissingAgentError

    async def main():
        await Backend(config.__class__(base_url=BASE)).areport_external_task()

    with pytest.raises(MissingAgentError):
        asyncio.run(main())

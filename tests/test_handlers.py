"""The decorators of :mod:`xpander_sync.handlers`: ``@on_task``, ``@on_boot``, ``@on_shutdown``, ``@on_auth_event``."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

from xpander_sync import Configuration, Task
from xpander_sync.handlers import (
    boot_hooks,
    clear_worker_handlers,
    on_auth_event,
    on_boot,
    on_shutdown,
    on_task,
    shutdown_hooks,
    task_handler_configuration,
    task_handlers,
)


@pytest.fixture(autouse=True)
def clean_registries() -> Iterator[None]:
    clear_worker_handlers()
    yield
    clear_worker_handlers()


def test_on_task_returns_the_function_unchanged_bare_and_called() -> None:
    threads = threading.active_count()

    def plain(task: Task) -> Task:
        return task

    async def coroutine(task: Task) -> Task:
        return task

    assert on_task(plain) is plain
    assert on_task()(coroutine) is coroutine
    config = Configuration(api_key="k", base_url="https://x.test", organization_id="o")

    def configured(task: Task) -> Task:
        return task

    assert on_task(configuration=config)(configured) is configured
    assert task_handlers.handlers() == [plain, coroutine, configured]
    assert task_handler_configuration(configured) is config and task_handler_configuration(plain) is None
    assert threading.active_count() == threads  # decorating started nothing
    sentinel = object()
    assert plain(sentinel) is sentinel  # type: ignore[arg-type]  # still a plain function


@pytest.mark.parametrize(
    "handler",
    [lambda: None, lambda payload: payload, lambda task, extra: task, "not callable"],
    ids=["no-args", "wrong-name", "extra-required", "not-callable"],
)
def test_on_task_rejects_handlers_it_could_not_call(handler: Any) -> None:
    with pytest.raises(TypeError, match="on_task"):
        on_task(handler)
    assert task_handlers.handlers() == []


def test_on_task_accepts_keyword_only_task_and_defaults() -> None:
    def keyword(*, task: Task, verbose: bool = False) -> Task:
        return task

    assert on_task(keyword) is keyword
    with pytest.raises(TypeError, match="Configuration"):
        on_task(configuration={"api_key": "k"})  # type: ignore[arg-type]


def test_boot_and_shutdown_hooks_register_in_order() -> None:
    def first() -> None: ...

    async def second() -> None: ...

    assert on_boot(first) is first and on_boot()(second) is second
    assert on_shutdown(second) is second and on_shutdown()(first) is first
    assert boot_hooks.handlers() == [first, second]
    assert shutdown_hooks.handlers() == [second, first]
    with pytest.raises(TypeError, match="no arguments"):
        on_boot(lambda task: None)
    with pytest.raises(TypeError, match="no arguments"):
        on_shutdown(lambda x: None)


def test_on_auth_event_is_unchanged() -> None:
    from xpander_sync.handlers import auth_event_handlers, clear_handlers

    def handler(agent: Any, task: Any, event: Any) -> None: ...

    try:
        assert on_auth_event(handler) is handler and on_auth_event()(handler) is handler
        assert auth_event_handlers.handlers() == [handler]
        with pytest.raises(TypeError, match=r"must accept \(agent, task, event\)"):
            on_auth_event(lambda task: None)
    finally:
        clear_handlers()

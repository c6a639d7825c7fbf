"""_cache: single-flight TTL caches; no residue from failing keys; fresh locks after fork (issue 16)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from xpander_sync._cache import TTLCache


def test_one_caller_loads_while_the_others_wait():
    cache = TTLCache(60)
    calls = []
    gate = threading.Event()

    def loader():
        calls.append(1)
        gate.wait(5)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", loader))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == ["value"] * 8 and len(calls) == 1


def test_failing_keys_leave_nothing_behind():
    cache = TTLCache(60)

    def fail():
        raise LookupError("404")

    for n in range(20_000):
        with pytest.raises(LookupError):
            cache.get_or_load(f"agt-{n}", fail)
    assert cache._loading == {} and len(cache) == 0


def test_loaded_keys_leave_no_lock_either():
    cache = TTLCache(60, maxsize=10)
    for n in range(100):
        assert cache.get_or_load(n, lambda n=n: n + 1) == n + 1
    assert cache._loading == {} and len(cache) == 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_child_forked_during_a_load_can_load_that_key():
    cache = TTLCache(60)
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "parent"

    loader = threading.Thread(target=lambda: cache.get_or_load("agt-1", slow))
    loader.start()
    started.wait(5)  # a parent thread holds the key's lock right now
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            done = []
            t = threading.Thread(target=lambda: done.append(cache.get_or_load("agt-1", lambda: "child")), daemon=True)
            t.start()
            t.join(5)
            code = 0 if done == ["child"] else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    loader.join(5)
    assert os.waitstatus_to_exitcode(status) == 0  # the child did not hang on the parent's lock

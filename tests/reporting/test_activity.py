"""Activity events (``reporting/activity.py``): written ahead to the outbox's events table, sent in order."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

from xpander_sync.errors import NotFoundError, ServerError
from xpander_sync.reporting import Outbox, activity


class Platform:
    """A fake ``send``: records pushes; fails while ``down``."""

    def __init__(self) -> None:
        self.pushed: List[Any] = []
        self.down = False
        self.refuse = False
        self.lock = threading.Lock()

    def __call__(self, task_id: str, body: Dict[str, Any]) -> None:
        with self.lock:
            if self.down:
                raise ServerError(503, "down")
            if self.refuse:
                raise NotFoundError(404, "no such task")
            self.pushed.append((task_id, [e["type"] for e in body["events"]]))


def _wait(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_events_are_delivered_in_order_and_wait_out_an_outage(tmp_path) -> None:
    platform, owner = Platform(), object()
    platform.down = True
    scope = activity.scope_of("https://p", "org", "key")
    for kind in ("tool_call_request", "tool_call_result"):
        assert activity.submit("t-1", [{"type": kind}], send=platform, scope=scope, owner=owner,
                               outbox_path=str(tmp_path / "o.sqlite3"))
    assert activity.flush(owner, timeout=5)
    assert platform.pushed == []  # down: kept, in order
    events = Outbox(str(tmp_path / "o.sqlite3"), table="events")
    # handed over within the quiet period: one row, one push, both events in order
    assert [[e["type"] for e in r["body"]["events"]] for r in events.pending()] == [
        ["tool_call_request", "tool_call_result"]]
    assert Outbox(str(tmp_path / "o.sqlite3")).pending() == []  # the reports table is untouched
    platform.down = False
    _wait(lambda: len(platform.pushed) == 1)
    assert platform.pushed == [("t-1", ["tool_call_request", "tool_call_result"])]
    _wait(lambda: events.pending() == [])
    assert events.pending() == []


def test_rows_of_different_tasks_stay_apart_and_in_order(tmp_path) -> None:
    platform, owner = Platform(), object()
    path = str(tmp_path / "o.sqlite3")
    for task_id in ("t-1", "t-2", "t-1"):
        activity.submit(task_id, [{"type": f"e-{task_id}"}], send=platform, scope="s", owner=owner, outbox_path=path)
    assert activity.flush(owner, timeout=5)
    _wait(lambda: len(platform.pushed) == 3)
    assert platform.pushed == [("t-1", ["e-t-1"]), ("t-2", ["e-t-2"]), ("t-1", ["e-t-1"])]


def test_a_refused_event_is_dropped_not_parked(tmp_path) -> None:
    platform, owner = Platform(), object()
    platform.refuse = True
    path = str(tmp_path / "o.sqlite3")
    activity.submit("t-1", [{"type": "tool_call_request"}], send=platform, scope="s", owner=owner, outbox_path=path)
    assert activity.flush(owner, timeout=5)
    _wait(lambda: Outbox(path, table="events").pending() == [])
    assert Outbox(path, table="events").pending() == []


def test_the_scope_hides_the_key_and_separates_identities() -> None:
    one = activity.scope_of("https://p", "org", "key-1")
    assert one.startswith("https://p#") and "key-1" not in one
    assert one != activity.scope_of("https://p", "org", "key-2")


def test_without_a_configured_outbox_a_private_file_is_used() -> None:
    outbox = activity.events_outbox(None)
    assert outbox is activity.events_outbox(None) and "xpander-sync-events-" in outbox.path
    assert repr(outbox).endswith("table='events')")


def test_no_writable_temporary_folder_drops_events_with_a_warning_never_raises(monkeypatch, caplog) -> None:
    import tempfile

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(activity, "_private", {})
    sent: List[Any] = []
    owner = object()
    assert activity.submit("t-ro", [{"type": "tool_call_request"}], send=lambda *a: sent.append(a),
                           scope="s", owner=owner) is False
    assert activity.dispatcher(owner, send=lambda *a: None, scope="s") is None
    assert "Configuration(outbox=...)" in caplog.text and sent == []


def test_discard_pending_drops_queued_events(tmp_path) -> None:
    platform, owner = Platform(), object()
    platform.down = True
    path = str(tmp_path / "d.sqlite3")
    activity.submit("t-1", [{"type": "x"}], send=platform, scope="s", owner=owner, outbox_path=path)
    assert activity.flush(owner, timeout=5)
    assert activity.discard_pending() >= 1
    assert Outbox(path, table="events").pending() == []


def test_outbox_tables_and_modes_are_checked(tmp_path) -> None:
    import pytest

    from xpander_sync.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="table"):
        Outbox(str(tmp_path / "x.sqlite3"), table="secrets")
    with pytest.raises(InvalidInputError, match="synchronous"):
        Outbox(str(tmp_path / "x.sqlite3"), synchronous="OFF")


EXIT_SCRIPT = """
import sys
from xpander_sync import Configuration
from xpander_sync._converter import structure
from xpander_sync.models.events import TaskUpdateEvent
from xpander_sync.reporting import activity
from xpander_sync.resources import Events

events = Events(Configuration(api_key=sys.argv[2], base_url=sys.argv[1], organization_id="local-org"))

def send(task_id, body):
    events.push(task_id, [structure(e, TaskUpdateEvent) for e in body["events"]])

event = {"type": "tool_call_request", "task_id": "t-exit", "organization_id": "local-org",
         "time": "2026-01-01T00:00:00Z", "data": {"request_id": "r-1"}}
assert activity.submit("t-exit", [event], send=send, scope="s", owner=object())
"""  # and the process ends at once


def test_events_queued_just_before_the_process_exits_are_still_delivered(tmp_path) -> None:
    import subprocess
    import sys

    from xpander_sync.local import LocalBackend

    with LocalBackend(db_path=str(tmp_path / "l.sqlite3"), api_key="xpk-exit") as local:
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, local.url, "xpk-exit"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [e["event"]["data"] for e in local.events("t-exit")] == [{"request_id": "r-1"}]


# -- when the thread delivers: once the client is quiet, or when the oldest event is max_delay old ----------


class _Still(activity.EventDispatcher):
    """The rule alone: a dispatcher whose thread does nothing."""

    def _run(self) -> None:
        return None


def test_the_handoff_is_due_when_the_client_is_quiet_or_the_oldest_event_is_max_delay_old(tmp_path) -> None:
    import pytest

    now = [0.0]
    outbox = activity.events_outbox(str(tmp_path / "r.sqlite3"))
    dispatcher = _Still(Platform(), "s", outbox, quiet=0.02, max_delay=1.0, clock=lambda: now[0])
    with dispatcher._cond:
        assert dispatcher.wait_time(0.0) is None  # nothing waits: no timed wake-up at all
    dispatcher.hand_over("t-1", None, [{"type": "e"}])
    with dispatcher._cond:
        assert dispatcher.wait_time(0.0) == pytest.approx(0.02)
        assert dispatcher.wait_time(0.015) == pytest.approx(0.005)
        assert dispatcher.wait_time(0.02) == 0.0  # quiet for 20 ms: due
    # a call every 10 ms keeps the client busy: each event restarts the quiet period...
    for step in range(1, 99):
        now[0] = step * 0.01
        dispatcher.hand_over("t-1", None, [{"type": "e"}])
        with dispatcher._cond:
            assert dispatcher.wait_time(now[0]) == pytest.approx(0.02)
    # ...until the oldest event is max_delay (1 s) old
    now[0] = 0.99
    dispatcher.hand_over("t-1", None, [{"type": "e"}])
    with dispatcher._cond:
        assert dispatcher.wait_time(0.99) == pytest.approx(0.01)
        assert dispatcher.wait_time(1.0) == 0.0


def test_a_flush_makes_the_handoff_due_at_once_and_discard_drops_it(tmp_path) -> None:
    outbox = activity.events_outbox(str(tmp_path / "f.sqlite3"))
    dispatcher = _Still(Platform(), "s", outbox, quiet=30.0, max_delay=60.0, clock=lambda: 0.0)
    dispatcher.hand_over("t-1", None, [{"type": "e"}])
    with dispatcher._cond:
        assert dispatcher.wait_time(0.0) == 30.0
    assert dispatcher.flush(timeout=0) is False  # no thread here: not tried, but asked for now
    with dispatcher._cond:
        assert dispatcher.wait_time(0.0) == 0.0
    assert dispatcher.discard() == 1
    with dispatcher._cond:
        assert dispatcher._handoff == [] and dispatcher.wait_time(0.0) == 0.0  # the thread settles them


def test_a_run_of_events_goes_out_once_the_client_is_quiet_in_one_push(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "q.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=1.0, max_delay=30.0)
    for n in range(5):
        dispatcher.hand_over("t-1", None, [{"type": f"e{n}"}])
        time.sleep(0.02)
    assert platform.pushed == []  # still within a second of the last event
    _wait(lambda: len(platform.pushed) == 1)
    assert platform.pushed == [("t-1", ["e0", "e1", "e2", "e3", "e4"])]
    assert outbox.pending() == []


def test_a_client_that_never_goes_quiet_still_gets_its_events_after_max_delay(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "m.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=30.0, max_delay=0.2)
    start, sent = time.monotonic(), 0
    while not platform.pushed and time.monotonic() - start < 10:
        dispatcher.hand_over("t-1", None, [{"type": f"e{sent}"}])
        sent += 1
        time.sleep(0.01)
    assert platform.pushed, "nothing delivered while events kept coming"
    assert platform.pushed[0][1] == [f"e{n}" for n in range(len(platform.pushed[0][1]))]  # the oldest first
    assert dispatcher.flush(timeout=5)
    assert [t for _, types in platform.pushed for t in types] == [f"e{n}" for n in range(sent)]


def test_a_flush_delivers_at_once_without_waiting_for_the_quiet_period(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "n.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=30.0, max_delay=60.0)
    dispatcher.hand_over("t-1", None, [{"type": "tool_call_request"}])
    dispatcher.hand_over("t-1", None, [{"type": "tool_call_result"}])
    start = time.monotonic()
    assert dispatcher.flush(timeout=10)
    assert time.monotonic() - start < 10
    assert platform.pushed == [("t-1", ["tool_call_request", "tool_call_result"])]


def test_an_event_that_cannot_be_built_is_dropped_and_the_others_go_out(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "b.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=30.0)

    def build(raw: Any) -> Dict[str, Any]:
        if raw == "bad":
            raise ValueError("cannot render")
        return {"type": raw}

    for raw in ("first", "bad", "last"):
        dispatcher.hand_over("t-1", build, raw)
    assert dispatcher.flush(timeout=10)
    assert platform.pushed == [("t-1", ["first", "last"])]


def test_a_sleeping_thread_is_woken_by_a_result_event_not_by_a_request_event(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "w.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=0.01, max_delay=5.0, sleep_after=0.0)
    _wait(lambda: dispatcher._asleep)  # no event for sleep_after: it sleeps (looking again in 5 s)
    dispatcher.hand_over("t-1", None, [{"type": "tool_call_request"}], wake=False)  # a call is under way
    time.sleep(0.3)
    assert platform.pushed == [] and dispatcher._asleep
    dispatcher.hand_over("t-1", None, [{"type": "tool_call_result"}])  # the call returned: wakes it
    _wait(lambda: len(platform.pushed) == 1)
    assert platform.pushed == [("t-1", ["tool_call_request", "tool_call_result"])]
    _wait(lambda: dispatcher._asleep)
    dispatcher.hand_over("t-2", None, [{"type": "tool_call_request"}], wake=False)
    dispatcher.wake()  # what the layer does when the call raised
    _wait(lambda: len(platform.pushed) == 2)
    assert platform.pushed[1] == ("t-2", ["tool_call_request"])


def test_a_sleeping_thread_still_finds_an_event_within_max_delay(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "l.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=0.01, max_delay=0.3, sleep_after=0.0)
    _wait(lambda: dispatcher._asleep)
    dispatcher.hand_over("t-1", None, [{"type": "tool_call_request"}], wake=False)  # a long call: no result yet
    _wait(lambda: len(platform.pushed) == 1)
    assert platform.pushed == [("t-1", ["tool_call_request"])]


def test_while_events_keep_coming_the_thread_finds_them_unwoken_within_quiet_plus_poll(tmp_path) -> None:
    platform = Platform()
    outbox = activity.events_outbox(str(tmp_path / "p.sqlite3"))
    dispatcher = activity.EventDispatcher(platform, "s", outbox, quiet=0.01, max_delay=30.0, poll=0.05,
                                          sleep_after=30.0)
    dispatcher.hand_over("t-1", None, [{"type": "first"}])  # the first event wakes the sleeping thread
    _wait(lambda: len(platform.pushed) == 1)
    for n in range(3):  # then no event wakes it: it looks every 50 ms while events come
        dispatcher.hand_over("t-1", None, [{"type": f"e{n}"}], wake=False)
        _wait(lambda n=n: len(platform.pushed) == n + 2, 5)
        assert not dispatcher._asleep
    assert platform.pushed == [("t-1", ["first"]), ("t-1", ["e0"]), ("t-1", ["e1"]), ("t-1", ["e2"])]

"""Every fault on the wire ends in success after bounded retries or in exactly one typed error, in bounded time.

A :class:`tests.faults.FaultProxy` sits between the client and a real
:class:`~xpander_sync.local.LocalBackend` on loopback. For each fault the test makes
a GET (``Tasks.get``, ``Agents.get``), the repeatable POST ``report_external_task``
(it carries its own id) and the non-repeatable POST ``invoke_agent`` (task creation),
and checks: the exact error class, that nothing from requests/urllib3/json escapes,
how many attempts reached the proxy, and that the time taken is within a bound
computed from the configuration (see :func:`bound`).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
import requests
import urllib3

from xpander_sync import (
    Agents,
    Backend,
    Configuration,
    ConfigurationError,
    InvalidInputError,
    ModuleException,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    Task,
    Tasks,
    TransportError,
)
from xpander_sync.frameworks._context import BuildContext
from xpander_sync.local import LocalBackend
from xpander_sync.reporting import Outbox, QueuedReport
from xpander_sync.transport import Transport

from .faults import FaultProxy, FullBacklog, closed_port

CONNECT_TIMEOUT = 0.2
READ_TIMEOUT = 0.2
POLICY = RetryPolicy(max_retries=2, backoff_base=0.05, backoff_max=0.1, max_retry_after=2.0)
RETRY_AFTER = 1.0  # what the proxy's 503 sends
DRIP_GAP = 0.5  # > READ_TIMEOUT: a stall between two bytes
FAST_PIECES, FAST_GAP = 8, 0.05  # < READ_TIMEOUT between pieces, 0.35 s in total
SLACK = 0.75  # scheduling, loopback transfer of 20 MB, JSON decoding


def bound(attempts: int, *, retry_after: float = 0.0, slack: float = SLACK) -> float:
    """The longest a call may take: every attempt may use its whole connect and read timeout
    (one read-timeout gap ends it), plus the largest backoff before each retry, plus any
    Retry-After the server asked for."""
    backoffs = sum(min(POLICY.backoff_max, POLICY.backoff_base * 2 ** (n - 1)) for n in range(1, attempts))
    return attempts * (CONNECT_TIMEOUT + READ_TIMEOUT) + backoffs + (attempts - 1) * retry_after + slack


def config(base_url: str, **extra: Any) -> Configuration:
    settings: Dict[str, Any] = dict(
        api_key="xpk-faults", base_url=base_url, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
        retry=POLICY, agent_cache_ttl=0,
    )
    settings.update(extra)
    return Configuration(**settings)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """One backend for the module: tests tell their reports apart by their unique ids."""
    backend = LocalBackend(db_path=str(tmp_path_factory.mktemp("faults") / "backend.sqlite3")).start()
    yield backend
    backend.stop()


@pytest.fixture
def proxy(local):
    with FaultProxy(local.url, drip_gap=DRIP_GAP, fast_pieces=FAST_PIECES, fast_gap=FAST_GAP, hang_limit=5) as p:
        yield p


@pytest.fixture(scope="module")
def seeded_task(local) -> str:
    """A task that exists on the backend (for the GET)."""
    return Backend(Configuration(base_url=local.url)).report_external_task(agent_id="agt-openai", input="seed").id


class Call:
    """One client call: how to make it, whether policy lets it be repeated, and the route the proxy sees."""

    def __init__(self, name: str, method: str, suffix: str, repeatable: bool,
                 run: Callable[[Configuration, str, str], Any]):
        self.name, self.method, self.suffix, self.repeatable, self.run = name, method, suffix, repeatable, run

    def __repr__(self) -> str:
        return self.name


CALLS = {
    "get_task": Call("get_task", "GET", "/status", True, lambda cfg, task_id, rid: Tasks(cfg).get(task_id)),
    "get_agent": Call(
        "get_agent", "GET", "/agents/agt-openai", True, lambda cfg, task_id, rid: Agents(cfg).get("agt-openai")
    ),
    "report": Call(
        "report", "POST", "/report_task", True,
        lambda cfg, task_id, rid: Backend(cfg).report_external_task(agent_id="agt-openai", id=rid, input="x"),
    ),
    "invoke": Call(
        "invoke", "POST", "/agent-execution/agt-openai", False,
        lambda cfg, task_id, rid: Backend(cfg).invoke_agent("agt-openai", "hello"),
    ),
}


def run_call(call: Call, cfg: Configuration, task_id: str, rid: str) -> Tuple[Any, Optional[BaseException], float]:
    started = time.monotonic()
    try:
        result, error = call.run(cfg, task_id, rid), None
    except BaseException as exc:  # we want to see exactly what escapes
        result, error = None, exc
    return result, error, time.monotonic() - started


def assert_one_typed_error(error: Optional[BaseException], expected: type) -> None:
    assert error is not None, f"expected {expected.__name__}, the call succeeded"
    assert type(error) is expected, f"expected {expected.__name__}, got {type(error).__name__}: {error}"
    assert isinstance(error, ModuleException)
    raw = (requests.RequestException, urllib3.exceptions.HTTPError, json.JSONDecodeError, OSError)
    assert not isinstance(error, raw)
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__  # one exception in the traceback
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert "During handling of the above exception" not in printed
    assert len(str(error)) < 1200  # a 20 MB body never ends up in the message


# fault -> (error class, attempts when the call may be repeated, attempts when it may not)
FAULT_TABLE: Dict[str, Tuple[type, int, int]] = {
    "500": (ServerError, 1, 1),  # 500 is not retried: the platform's own failure, not a gateway's
    "503": (ServerError, 3, 1),  # 503 + Retry-After: honoured for repeatable calls only
    "close": (TransportError, 3, 1),
    "rst": (TransportError, 3, 1),
    "hang": (RequestTimeoutError, 3, 1),
    "lost_answer": (TransportError, 3, 1),
    "short": (TransportError, 3, 1),
    "drip_head": (RequestTimeoutError, 3, 1),
    "truncated": (ResponseDecodeError, 1, 1),
    "html": (ResponseDecodeError, 1, 1),
    "huge": (ResponseDecodeError, 1, 1),
    "deep_json": (ResponseDecodeError, 1, 1),  # 200k nested "[": deeper than the stack, still one typed error
    "deep_error": (ServerError, 1, 1),  # a 500 whose body nests as deep: the status error, not a RecursionError
}
STATUS = {"500": 500, "503": 503, "deep_error": 500}
# Slow faults (Retry-After, timeouts) skip the second GET; 503 exhausts its retries on the report
# only (test_repeatable_calls_recover_after_one_fault retries a 503 GET).
_SLOW = {"503", "hang", "drip_head"}
CASES = [
    (fault, name) for fault in FAULT_TABLE for name in CALLS
    if not (name == "get_agent" and fault in _SLOW) and (fault, name) != ("503", "get_task")
]


@pytest.mark.parametrize("fault, name", CASES)
def test_fault_ends_in_one_typed_error_within_the_bound(proxy, local, seeded_task, fault, name):
    call = CALLS[name]
    expected, repeatable_attempts, other_attempts = FAULT_TABLE[fault]
    attempts = repeatable_attempts if call.repeatable else other_attempts
    proxy.set_default(fault)
    rid = str(uuid.uuid4())
    tasks_before = len(local.tasks())
    _, error, elapsed = run_call(call, config(proxy.url), seeded_task, rid)

    assert_one_typed_error(error, expected)
    assert proxy.attempts(call.method, call.suffix) == attempts
    retry_after = RETRY_AFTER if fault == "503" else 0.0
    assert elapsed <= bound(attempts, retry_after=retry_after), f"{elapsed:.2f}s"
    if fault == "503" and attempts > 1:
        assert elapsed >= (attempts - 1) * RETRY_AFTER  # Retry-After was honoured, not ignored
    if fault in ("hang", "drip_head"):
        assert elapsed >= attempts * READ_TIMEOUT * 0.9  # each attempt waited for its read timeout
    if isinstance(error, ServerError):
        assert error.status_code == STATUS[fault] and (f"after {attempts} attempts" in str(error)) == (attempts > 1)
    if isinstance(error, TransportError):
        assert error.status_code is None and f"after {attempts} attempt(s)" in str(error)
    forwarded = fault in ("lost_answer", "short", "drip_head", "truncated")  # these reached the backend
    if name == "report":
        # Stored once, despite the retries: the report carries its id.
        stored = [r for r in local.reports() if r["body"]["id"] == rid]
        assert len(stored) == (1 if forwarded else 0)
    if name == "invoke":
        # Not retried because it may have happened: for forwarded faults it did (one task, not three).
        assert len(local.tasks()) - tasks_before == (1 if forwarded else 0)


def test_a_stall_inside_the_body_is_a_read_timeout(proxy, seeded_task):
    """The head arrives, then the body stalls longer than read_timeout between two bytes.

    Retried like any read timeout and bounded like one; the error must be the documented
    RequestTimeoutError ("the connect or read timeout expired"), as for a stall in the head.
    """
    proxy.set_default("drip_body")
    errors = {}
    for name in ("get_task", "report", "invoke"):
        call = CALLS[name]
        _, error, elapsed = run_call(call, config(proxy.url), seeded_task, str(uuid.uuid4()))
        attempts = 3 if call.repeatable else 1
        assert proxy.attempts(call.method, call.suffix) == attempts
        assert elapsed <= bound(attempts), f"{elapsed:.2f}s"
        assert isinstance(error, TransportError)
        errors[name] = error
    for name, error in errors.items():
        assert_one_typed_error(error, RequestTimeoutError)
        assert "read timeout" in str(error), (name, str(error))


@pytest.mark.parametrize("name", ["get_task", "get_agent", "report", "invoke"])
def test_read_timeout_is_between_bytes_not_for_the_whole_answer(proxy, seeded_task, name):
    """An answer trickled in 8 pieces 0.05 s apart takes ~0.35 s in all, longer than
    read_timeout=0.2: it succeeds, because read_timeout bounds each silence, not the total."""
    proxy.set_default("drip_fast")
    result, error, elapsed = run_call(CALLS[name], config(proxy.url), seeded_task, str(uuid.uuid4()))
    assert error is None, error
    assert result is not None and proxy.attempts(CALLS[name].method, CALLS[name].suffix) == 1
    assert elapsed >= (FAST_PIECES - 1) * FAST_GAP * 0.9 > READ_TIMEOUT


RECOVERABLE = ["close", "rst", "hang", "lost_answer", "short", "drip_head", "drip_body"]


@pytest.mark.parametrize(
    "fault, name", [(f, n) for f in RECOVERABLE for n in ("get_task", "report")] + [("503", "get_task")]
)
def test_repeatable_calls_recover_after_one_fault(proxy, local, seeded_task, fault, name):
    call = CALLS[name]
    proxy.plan(fault, "pass")
    rid = str(uuid.uuid4())
    result, error, elapsed = run_call(call, config(proxy.url), seeded_task, rid)
    assert error is None, error
    assert proxy.attempts(call.method, call.suffix) == 2
    assert elapsed <= bound(2, retry_after=RETRY_AFTER if fault == "503" else 0.0)
    if name == "report":
        assert isinstance(result, Task) and result.id == rid
        assert [r["body"]["id"] for r in local.reports()].count(rid) == 1  # sent twice, stored once


def test_huge_valid_json_is_read_whole(proxy, seeded_task):
    """A 20 MB JSON answer is under the default max_response_bytes (64 MiB), so it is read whole:
    it decodes, or fails to fit the model, in bounded time."""
    proxy.set_default("huge_json")
    _, error, elapsed = run_call(CALLS["get_task"], config(proxy.url), seeded_task, "")
    assert_one_typed_error(error, ResponseDecodeError)  # {"detail", "padding"} is not a Task
    assert "required field missing" in str(error) and elapsed <= bound(1)


@pytest.mark.parametrize("name", ["get_task", "report", "invoke"])
def test_refused_connections_are_retried_for_every_method(name, caplog):
    """Nothing reached a server, so even task creation is retried."""
    caplog.set_level(logging.DEBUG, logger="xpander_sync.transport")
    cfg = config(f"http://127.0.0.1:{closed_port()}")
    _, error, elapsed = run_call(CALLS[name], cfg, "t-1", str(uuid.uuid4()))
    assert_one_typed_error(error, TransportError)
    assert "could not connect" in str(error) and "after 3 attempt(s)" in str(error)
    assert client_attempts(caplog) == 3
    assert elapsed <= bound(3)


@pytest.mark.parametrize("name", ["get_task", "invoke"])
def test_connect_timeout_is_retried_for_every_method(name, caplog):
    caplog.set_level(logging.DEBUG, logger="xpander_sync.transport")
    with FullBacklog() as backlog:
        _, error, elapsed = run_call(CALLS[name], config(backlog.url), "t-1", str(uuid.uuid4()))
    assert_one_typed_error(error, RequestTimeoutError)
    assert "connect timeout" in str(error) and client_attempts(caplog) == 3
    assert 3 * CONNECT_TIMEOUT * 0.9 <= elapsed <= bound(3)


def client_attempts(caplog: pytest.LogCaptureFixture) -> int:
    """Attempts the client made: the transport logs one DEBUG line per attempt."""
    return sum(
        1 for r in caplog.records
        if r.name == "xpander_sync.transport" and r.levelno == logging.DEBUG and "(attempt " in r.getMessage()
    )


def test_long_retry_after_raises_at_once(local):
    """A Retry-After beyond max_retry_after is not waited for."""
    with FaultProxy(local.url) as p:
        p.set_default("503")  # Retry-After: 1 > 0.5
        cfg = config(p.url, retry=RetryPolicy(max_retries=2, max_retry_after=0.5))
        _, error, elapsed = run_call(CALLS["get_task"], cfg, "t-1", "")
        assert_one_typed_error(error, ServerError)
        assert p.attempts() == 1 and elapsed < 0.5


def test_rate_limit_is_typed(local):
    class RateLimited(FaultProxy):
        def _answer(self, sock, fault, *args):
            from .faults import _response

            sock.sendall(_response(429, {"detail": "slow down"}, {"Retry-After": "60"}))
            return True

    with RateLimited(local.url) as p:
        _, error, _ = run_call(CALLS["report"], config(p.url), "", str(uuid.uuid4()))
    assert_one_typed_error(error, RateLimitError)
    assert error.retry_after == 60.0 and p.attempts() == 1


# -- what the higher layers make of faults ------------------------------------------------------


@pytest.mark.parametrize("fault, attempts", [("rst", 3), ("hang", 3), ("500", 1)])
def test_outbox_keeps_an_undeliverable_report_and_delivers_it_once(proxy, local, tmp_path, fault, attempts):
    cfg = config(proxy.url, outbox=str(tmp_path / f"outbox-{fault}.sqlite3"))
    proxy.set_default(fault)
    started = time.monotonic()
    queued = Backend(cfg).report_external_task(agent_id="agt-openai", input="later")
    elapsed = time.monotonic() - started
    assert isinstance(queued, QueuedReport) and not queued.delivered
    assert proxy.attempts("POST", "/report_task") == attempts
    assert elapsed <= bound(attempts)
    assert [r["task_id"] for r in Outbox(cfg.outbox).pending()] == [queued.task_id]

    proxy.set_default("pass")
    flushed = Backend(cfg).flush_outbox()
    assert flushed.delivered == [queued.task_id] and flushed.remaining == 0
    assert [r["body"]["id"] for r in local.reports()].count(queued.task_id) == 1


def test_outbox_does_not_swallow_a_decode_error(proxy, tmp_path):
    """A 2xx that is not JSON is raised, not queued: the report may well have been stored."""
    cfg = config(proxy.url, outbox=str(tmp_path / "outbox.sqlite3"))
    proxy.set_default("truncated")
    with pytest.raises(ResponseDecodeError):
        Backend(cfg).report_external_task(agent_id="agt-openai")
    assert len(Outbox(cfg.outbox)) == 0


def test_background_reports_return_at_once_while_the_platform_hangs(proxy, local, tmp_path):
    cfg = config(proxy.url, outbox=str(tmp_path / "bg.sqlite3"), background_reports=True)
    proxy.set_default("hang")
    backend = Backend(cfg)
    started = time.monotonic()
    receipts = [backend.report_external_task(agent_id="agt-openai", input=str(n)) for n in range(3)]
    assert time.monotonic() - started < 0.2  # no call waited for the platform
    assert all(isinstance(r, QueuedReport) and r.reason == "background" for r in receipts)
    # The first report uses its 3 attempts, then the rest spill to the outbox behind it (order kept).
    assert backend.flush(timeout=bound(3) + 2) is True
    assert [r["task_id"] for r in Outbox(cfg.outbox).pending()] == [r.task_id for r in receipts]
    proxy.set_default("pass")
    while backend.flush_outbox().remaining:
        pass
    assert [r["body"]["id"] for r in local.reports()][-3:] == [r.task_id for r in receipts]


@pytest.mark.parametrize("fault, attempts", [("500", 1), ("rst", 3)])
def test_stale_agent_is_served_through_an_outage(proxy, caplog, fault, attempts):
    transport = Transport(config(proxy.url))
    fresh = BuildContext(transport).load_agent("agt-openai")
    proxy.set_default(fault)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        stale = BuildContext(transport).load_agent("agt-openai")
    assert stale.name == fresh.name and stale is not fresh
    assert "using the copy fetched" in caplog.text
    assert time.monotonic() - started <= bound(attempts)
    assert proxy.attempts("GET", "/agents/agt-openai") == 1 + attempts
    with pytest.raises(FAULT_TABLE[fault][0]):
        BuildContext(transport).load_agent("agt-anthropic")  # never fetched: the typed error


def test_the_proxy_refuses_non_loopback_addresses():
    with pytest.raises(ValueError):
        FaultProxy("http://10.0.0.1:80")
    with pytest.raises(ValueError):
        FaultProxy(None, redirect_to="http://example.com/")


# -- issue 16: bounds on what an answer may cost, ids confined to their route, reports never lost ------


def test_a_trickle_past_call_deadline_is_a_request_timeout(local, seeded_task):
    """Every byte of the body comes within read_timeout (0.05 s apart), so only the overall
    ``call_deadline`` can end the call; it does, with RequestTimeoutError, not retried past it."""
    deadline = 1.0
    with FaultProxy(local.url, default="drip_body", drip_gap=0.05, hang_limit=10) as p:
        for name in ("get_task", "report", "invoke"):
            p.reset()
            call = CALLS[name]
            _, error, elapsed = run_call(call, config(p.url, call_deadline=deadline), seeded_task,
                                         str(uuid.uuid4()))
            assert_one_typed_error(error, RequestTimeoutError)
            assert "call_deadline" in str(error), (name, str(error))
            assert p.attempts(call.method, call.suffix) == 1  # no retry starts once the deadline is spent
            assert deadline <= elapsed <= deadline + SLACK, (name, f"{elapsed:.2f}s")


@pytest.mark.parametrize("name", ["get_task", "get_agent", "report", "invoke"])
def test_a_gzip_bomb_is_cut_at_max_response_bytes(local, seeded_task, name):
    """A ~16 KiB gzip body that expands to 16 MiB stops at the 1 MiB cap: ResponseDecodeError, once."""
    cap = 1024 * 1024
    with FaultProxy(local.url, default="gzip_bomb", bomb_size=16 * cap) as p:
        call = CALLS[name]
        _, error, elapsed = run_call(call, config(p.url, max_response_bytes=cap), seeded_task, str(uuid.uuid4()))
        assert_one_typed_error(error, ResponseDecodeError)
        assert "max_response_bytes" in str(error) + "".join(error.errors)
        assert p.attempts(call.method, call.suffix) == 1 and elapsed <= bound(1)


def test_a_deeply_nested_error_body_keeps_a_background_report_in_the_outbox(proxy, local, tmp_path):
    """A 500 whose body nests 200k deep is a ServerError, so a report with an outbox is queued
    (not lost to a RecursionError), and delivered once when the platform is back."""
    cfg = config(proxy.url, outbox=str(tmp_path / "deep.sqlite3"))
    proxy.set_default("deep_error")
    queued = Backend(cfg).report_external_task(agent_id="agt-openai", input="deep")
    assert isinstance(queued, QueuedReport) and not queued.delivered
    proxy.set_default("pass")
    assert Backend(cfg).flush_outbox().delivered == [queued.task_id]
    assert [r["body"]["id"] for r in local.reports()].count(queued.task_id) == 1


DOT_IDS = [
    lambda cfg: Tasks(cfg).get("."),
    lambda cfg: Tasks(cfg).stop(".."),
    lambda cfg: Agents(cfg).get(".."),
    lambda cfg: Backend(cfg).report_external_task(agent_id=".."),
    lambda cfg: Backend(cfg).invoke_agent("agt-openai", '{"xpander_task_id": ".."}'),
    lambda cfg: Tasks(cfg).get("a/../../admin"),
]


def test_dot_ids_never_reach_the_wire(proxy):
    """``.``/``..`` would be collapsed by URL normalisation (``Tasks.stop("..")`` was ``DELETE /``):
    each is an InvalidInputError, and the proxy sees no request at all."""
    for make_call in DOT_IDS:
        try:
            make_call(config(proxy.url))
        except BaseException as exc:
            assert type(exc) is InvalidInputError, repr(exc)
            assert exc.__context__ is None or exc.__suppress_context__
        else:
            raise AssertionError("a dot id was accepted")
    assert proxy.seen == [] and proxy.connections == 0


def test_an_encoded_slash_stays_one_segment_on_the_wire(proxy):
    """``..%2F..%2Fadmin`` goes out as ``..%252F..%252Fadmin``: the backend (which decodes ``%2F``)
    sees one unknown task id, not a path upwards, and answers 404."""
    for make_call, target in [
        (lambda cfg: Tasks(cfg).get("..%2F..%2Fadmin"), "/agent-execution/..%252F..%252Fadmin/status"),
        (lambda cfg: Agents(cfg).get("%2e%2e"), "/agents/%252e%252e"),
        (lambda cfg: Tasks(cfg).get("a b%"), "/agent-execution/a%20b%25/status"),
    ]:
        proxy.reset()
        try:
            make_call(config(proxy.url))
        except BaseException as exc:
            assert_one_typed_error(exc, NotFoundError)
        else:
            raise AssertionError(f"{target}: the backend found something")
        assert [s.target for s in proxy.seen] == [target]


@pytest.mark.parametrize("key", ["xpk-faults\n", "xpk-faults\r\n", " xpk-faults", "xpk-fa\x00ults", "xpk-faults\t"])
def test_a_key_with_a_newline_is_refused_before_any_request(proxy, key):
    """A key read from a file with its newline used to reach requests, be quoted back escaped in
    a TransportError, and be retried as a network failure. Now: a ConfigurationError that does
    not show the key, and the proxy sees nothing."""
    with pytest.raises(ConfigurationError) as info:
        Tasks(config(proxy.url, api_key=key)).get("t-1")
    shown = str(info.value) + repr(info.value)
    assert "faults" not in shown and "xpk-fa" not in shown
    assert proxy.seen == [] and proxy.connections == 0


# Background mode, the platform hung or down, the process ended three ways: every report whose
# call returned is in the outbox, and ``xpander-sync outbox flush`` delivers each exactly once.

_BACKGROUND_CHILD = r"""
import sys, time
from xpander_sync import Backend, Configuration, RetryPolicy
url, outbox, prefix, count, ending = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
backend = Backend(Configuration(api_key="xpk-faults", base_url=url, outbox=outbox, background_reports=True,
                                connect_timeout=0.2, read_timeout=0.2, retry=RetryPolicy(max_retries=0)))
for n in range(count):
    receipt = backend.report_external_task(agent_id="agt-openai", id=f"{prefix}-{n:04d}", input=str(n))
    print(receipt.task_id, flush=True)
if ending == "exit":
    sys.exit(0)
time.sleep(60)  # wait for the signal
"""
BACKGROUND_REPORTS = 60


@pytest.mark.parametrize("ending", ["exit", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("platform", ["hang", "503"])
def test_background_reports_survive_the_end_of_the_process(proxy, local, tmp_path, platform, ending):
    import random
    import signal
    import subprocess
    import sys

    outbox, prefix = str(tmp_path / "bg.sqlite3"), f"bg-{uuid.uuid4().hex[:8]}"
    proxy.set_default(platform)  # hung: no answer within read_timeout; 503: the gateway says it is down
    child = subprocess.Popen([sys.executable, "-c", _BACKGROUND_CHILD, proxy.url, outbox, prefix,
                              str(BACKGROUND_REPORTS), ending], stdout=subprocess.PIPE, text=True)
    # A signal comes at a random point while the child is still reporting; exit comes after the last.
    stop_after = BACKGROUND_REPORTS if ending == "exit" else random.Random().randint(1, BACKGROUND_REPORTS - 10)
    returned = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            returned.append(line.strip())
            if len(returned) == stop_after:
                break
        if ending == "exit":
            assert child.wait(timeout=30) == 0
        else:
            child.send_signal(getattr(signal, ending))
            child.wait(timeout=30)
            assert child.returncode == -getattr(signal, ending)
        returned += [line.strip() for line in child.stdout]  # calls that returned before the signal landed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()
    assert len(returned) >= stop_after and returned == [f"{prefix}-{n:04d}" for n in range(len(returned))]
    written = {r["task_id"] for r in Outbox(outbox).pending()}
    assert set(returned) <= written, f"lost: {sorted(set(returned) - written)}"
    # Beyond those, at most the one being written when the signal came.
    assert written <= set(returned) | {f"{prefix}-{len(returned):04d}"}
    assert not [r for r in local.reports() if r["body"]["id"].startswith(prefix)]  # nothing got through

    proxy.reset()
    proxy.set_default("pass")
    done = subprocess.run([sys.executable, "-m", "xpander_sync", "--api-key", "xpk-faults", "--base-url", proxy.url,
                           "outbox", "flush", "--outbox", outbox], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stored = [r["body"]["id"] for r in local.reports() if r["body"]["id"].startswith(prefix)]
    sent = [json.loads(s.body)["id"] for s in proxy.seen if s.path.endswith("/report_task")]
    assert sorted(stored) == sorted(written) and sorted(sent) == sorted(written)  # each delivered once
    assert len(Outbox(outbox)) == 0


def test_a_trickled_head_cannot_hold_a_call_past_call_deadline(local, seeded_task):
    """The head (status line and headers) is read by http.client, out of the body loop's reach:
    the transport's connections read it under the call's deadline too."""
    with FaultProxy(local.url, default="drip_head", drip_gap=0.05, hang_limit=30) as p:
        _, error, elapsed = run_call(CALLS["get_task"], config(p.url, call_deadline=1.0), seeded_task, "")
    assert_one_typed_error(error, RequestTimeoutError)
    assert "call_deadline" in str(error)
    assert elapsed <= 1.0 + SLACK, f"{elapsed:.2f}s"

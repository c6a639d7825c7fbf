"""The transport: headers, status-to-error mapping, retries, Retry-After, redirects, fork, sharing."""

from __future__ import annotations

import json
import logging
import os

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from xpander_sync import (
    APIError,
    AuthenticationError,
    Backend,
    Configuration,
    ConflictError,
    InvalidInputError,
    ModuleException,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    Tasks,
    TransportError,
    XpanderError,
    __version__,
)
from xpander_sync.transport import Transport, shared_transport

from .conftest import BASE, SENTINEL_KEY, load_fixture


def refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/x", reason))


def test_sends_api_key_user_agent_and_json(mocked, transport):
    mocked.post(f"{BASE}/things", json={"ok": True})
    mocked.get(f"{BASE}/things", json=[1])
    assert transport.request("POST", "/things", json={"a": 1}).data == {"ok": True}
    assert transport.request("GET", "things", json={"ignored": True}).data == [1]
    post, get = mocked.calls
    assert post.request.headers["x-api-key"] == SENTINEL_KEY
    assert post.request.headers["User-Agent"] == f"xpander-sync/{__version__}"
    assert post.request.headers["Content-Type"] == "application/json"
    assert json.loads(post.request.body) == {"a": 1}
    assert get.request.body is None  # GET never carries a body, as the platform expects


def test_no_api_key_header_when_none_configured(mocked):
    mocked.get(f"{BASE}/x", json={})
    Transport(Configuration(base_url=BASE)).request("GET", "/x")
    assert "x-api-key" not in mocked.calls[0].request.headers


def test_query_booleans_are_lowercase(mocked, transport):
    mocked.post(f"{BASE}/q", json={})
    transport.request("POST", "/q", params={"flag": True, "other": False, "skip": None, "n": 3})
    assert mocked.calls[0].request.url == f"{BASE}/q?flag=true&other=false&n=3"


def test_empty_body_decodes_to_none(mocked, transport):
    mocked.post(f"{BASE}/empty", body=b"", status=200)
    assert transport.request("POST", "/empty").data is None


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, APIError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, APIError),
        (500, ServerError),
        (501, ServerError),
    ],
)
def test_status_maps_to_error_class(mocked, transport, status, cls):
    mocked.post(f"{BASE}/agents/a1", json={"detail": "nope"}, status=status)
    with pytest.raises(cls) as info:
        transport.request("POST", "/agents/a1", json={})
    err = info.value
    assert type(err) is cls
    assert isinstance(err, (ModuleException, XpanderError))
    assert err.status_code == status
    assert (err.method, err.route) == ("POST", "/agents/a1")
    assert err.message.startswith("nope")
    assert str(err).startswith(f"[{status}] nope")
    assert "POST /agents/a1" in str(err)
    assert len(mocked.calls) == 1  # a POST is not repeated on a status error


def test_auth_errors_point_at_the_key_setting(mocked, transport):
    mocked.get(f"{BASE}/x", json={"detail": "bad key"}, status=403)
    with pytest.raises(PermissionDeniedError, match="XPANDER_API_KEY"):
        transport.request("GET", "/x")


def test_request_id_is_kept(mocked, transport):
    mocked.get(f"{BASE}/x", json={"message": "gone"}, status=404, headers={"x-request-id": "req-9"})
    with pytest.raises(NotFoundError) as info:
        transport.request("GET", "/x")
    assert info.value.request_id == "req-9"
    assert info.value.message == "gone"


def test_plain_text_error_body_and_long_messages_are_truncated(mocked, transport):
    mocked.get(f"{BASE}/x", body="x" * 5000, status=400, content_type="text/plain")
    with pytest.raises(APIError) as info:
        transport.request("GET", "/x")
    assert len(info.value.message) < 600


def test_server_echo_of_the_api_key_is_scrubbed(mocked, transport):
    mocked.get(f"{BASE}/x", json={"detail": f"invalid key {SENTINEL_KEY}"}, status=401)
    with pytest.raises(AuthenticationError) as info:
        transport.request("GET", "/x")
    assert SENTINEL_KEY not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_is_retried_on_gateway_errors_then_raises(mocked, transport, sleeps, status):
    mocked.get(f"{BASE}/x", json={"detail": "down"}, status=status)
    with pytest.raises(ServerError, match="after 3 attempts"):
        transport.request("GET", "/x")
    assert len(mocked.calls) == 3  # 1 + max_retries
    assert sleeps.delays == [0.01, 0.02]  # base * 2**(n-1), jitter pinned at 100%


def test_get_recovers_after_a_retry(mocked, transport, sleeps):
    mocked.get(f"{BASE}/x", json={}, status=503)
    mocked.get(f"{BASE}/x", json={"ok": 1}, status=200)
    assert transport.request("GET", "/x").data == {"ok": 1}
    assert len(mocked.calls) == 2 and len(sleeps.delays) == 1


def test_500_is_not_retried(mocked, transport, sleeps):
    mocked.get(f"{BASE}/x", json={}, status=500)
    with pytest.raises(ServerError):
        transport.request("GET", "/x")
    assert len(mocked.calls) == 1 and sleeps.delays == []


def test_post_is_not_retried_on_503_unless_repeatable(mocked, transport, sleeps):
    mocked.post(f"{BASE}/create", json={}, status=503)
    with pytest.raises(ServerError):
        transport.request("POST", "/create", json={})
    assert len(mocked.calls) == 1
    mocked.post(f"{BASE}/report", json={}, status=503)
    mocked.post(f"{BASE}/report", json={"id": "t"}, status=200)
    assert transport.request("POST", "/report", json={}, repeatable=True).data == {"id": "t"}
    assert len(mocked.calls) == 3


def test_429_honours_retry_after_even_for_post(mocked, transport, sleeps):
    mocked.post(f"{BASE}/create", json={}, status=429, headers={"Retry-After": "2"})
    mocked.post(f"{BASE}/create", json={"ok": True})
    assert transport.request("POST", "/create", json={}).data == {"ok": True}
    assert sleeps.delays == [2.0]


def test_429_without_retry_after_backs_off(mocked, transport, sleeps):
    for _ in range(3):
        mocked.get(f"{BASE}/x", json={}, status=429)
    with pytest.raises(RateLimitError) as info:
        transport.request("GET", "/x")
    assert info.value.retry_after is None
    assert sleeps.delays == [0.01, 0.02]


def test_429_with_a_long_retry_after_raises_at_once(mocked, transport, sleeps):
    mocked.get(f"{BASE}/x", json={"detail": "slow down"}, status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimitError) as info:
        transport.request("GET", "/x")
    assert info.value.retry_after == 120.0
    assert sleeps.delays == []


def test_503_retry_after_is_honoured_for_get(mocked, transport, sleeps):
    mocked.get(f"{BASE}/x", json={}, status=503, headers={"Retry-After": "1.5"})
    mocked.get(f"{BASE}/x", json={})
    transport.request("GET", "/x")
    assert sleeps.delays == [1.5]


def test_connect_failures_are_retried_for_every_method(mocked, transport, sleeps):
    mocked.post(f"{BASE}/create", body=refused())
    mocked.post(f"{BASE}/create", json={"ok": True})
    assert transport.request("POST", "/create", json={}).data == {"ok": True}
    assert len(sleeps.delays) == 1


def test_connect_failure_exhausts_retries_into_transport_error(mocked, transport):
    for _ in range(3):
        mocked.get(f"{BASE}/x", body=refused())
    with pytest.raises(TransportError) as info:
        transport.request("GET", "/x")
    err = info.value
    assert err.status_code is None and str(err).startswith("[None] could not connect")
    assert "after 3 attempt(s)" in str(err)
    assert err.__cause__ is None


def test_read_timeout_is_retried_for_get_but_not_post(mocked, transport, sleeps):
    for _ in range(3):
        mocked.get(f"{BASE}/x", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(RequestTimeoutError, match="read timeout"):
        transport.request("GET", "/x")
    assert len(sleeps.delays) == 2
    mocked.post(f"{BASE}/create", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(RequestTimeoutError):
        transport.request("POST", "/create", json={})
    assert len(sleeps.delays) == 2  # no new sleep: the POST may have reached the server


def test_connect_timeout_is_a_timeout_error(mocked, transport):
    for _ in range(3):
        mocked.post(f"{BASE}/x", body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(RequestTimeoutError, match="connect timeout"):
        transport.request("POST", "/x", json={})
    assert len(mocked.calls) == 3


def test_reset_connection_on_post_is_not_retried(mocked, transport):
    mocked.post(f"{BASE}/x", body=requests.exceptions.ConnectionError("Connection aborted."))
    with pytest.raises(TransportError, match="connection failed"):
        transport.request("POST", "/x", json={})
    assert len(mocked.calls) == 1


def test_retries_disabled(mocked, config):
    cfg = Configuration(api_key="k", base_url=BASE, retry=RetryPolicy(max_retries=0))
    mocked.get(f"{BASE}/x", json={}, status=503)
    with pytest.raises(ServerError):
        Transport(cfg, sleep=lambda s: None).request("GET", "/x")
    assert len(mocked.calls) == 1


def test_non_json_success_is_a_decode_error(mocked, transport):
    mocked.get(f"{BASE}/x", body="<html>proxy page</html>", content_type="text/html")
    with pytest.raises(ResponseDecodeError, match="expected a JSON body") as info:
        transport.request("GET", "/x")
    assert info.value.status_code == 200


def test_redirects_are_not_followed(mocked, transport):
    mocked.get(f"{BASE}/x", status=302, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(APIError) as info:
        transport.request("GET", "/x")
    assert info.value.status_code == 302
    assert len(mocked.calls) == 1  # evil.example was never contacted


def test_cookies_are_not_stored(mocked, transport):
    mocked.get(f"{BASE}/x", json={}, headers={"Set-Cookie": "session=abc; Path=/"})
    transport.request("GET", "/x")
    assert len(transport.session.cookies) == 0


def test_one_debug_line_per_attempt_and_info_per_retry(mocked, transport, debug_logs):
    mocked.get(f"{BASE}/agents/a1", json={}, status=503)
    mocked.get(f"{BASE}/agents/a1", json={})
    transport.request("GET", "/agents/a1")
    debug = [r.getMessage() for r in debug_logs.records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in debug_logs.records if r.levelno == logging.INFO]
    assert len(debug) == 2
    assert debug[0].startswith("GET /agents/a1 -> 503 in ") and debug[0].endswith("(attempt 1/3)")
    assert debug[1].startswith("GET /agents/a1 -> 200 in ")
    assert len(info) == 1 and "retrying GET /agents/a1" in info[0]


def test_client_objects_without_configuration_share_one_transport(monkeypatch):
    monkeypatch.setenv("XPANDER_API_KEY", "k")
    a, b, c = Backend(), Backend(), Tasks()
    assert a._transport is b._transport is c._transport
    other = Backend(Configuration(api_key="different"))
    assert other._transport is not a._transport
    assert shared_transport(Configuration(api_key="k")) is a._transport


def test_session_is_reused_and_rebuilt_after_fork(config):
    transport = Transport(config)
    parent_session = transport.session
    assert transport.session is parent_session
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write_fd, b"fresh" if transport.session is not parent_session else b"stale")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 10) == b"fresh"
    assert transport.session is parent_session  # the parent keeps its pool


def test_pool_is_sized_from_configuration(config):
    cfg = Configuration(api_key="k", base_url=BASE, pool_maxsize=48)
    adapter = Transport(cfg).session.get_adapter(BASE)
    assert adapter._pool_maxsize == 48
    assert adapter.max_retries.total == 0


def test_responses_patch_is_active():
    assert responses  # the suite depends on responses patching HTTPAdapter.send


# -- issue 16, finding 4: JSON nested deeper than Python's stack is a typed error ----------------------

DEEP = 200_000


def test_a_deeply_nested_2xx_body_is_a_decode_error(mocked, transport):
    mocked.get(f"{BASE}/agents/a1", body="[" * DEEP + "]" * DEEP)
    with pytest.raises(ResponseDecodeError):
        transport.request("GET", "/agents/a1")


def test_a_deeply_nested_error_body_still_gives_the_status_error(mocked, transport):
    mocked.get(f"{BASE}/agents/a1", body="[" * DEEP, status=404)
    with pytest.raises(NotFoundError):
        transport.request("GET", "/agents/a1")


def test_a_body_that_cannot_be_json_is_invalid_input_and_nothing_is_sent(mocked, transport):
    deep: list = []
    for _ in range(DEEP // 10):
        deep = [deep]
    for body in (deep, {"x": object()}, {"x": float("nan")}, {"x": "\ud800"}):
        with pytest.raises(InvalidInputError, match="cannot be sent as JSON"):
            transport.request("POST", "/x", json=body)
    assert len(mocked.calls) == 0


def test_deep_input_to_the_backend_is_a_typed_error_or_plain_text(mocked, config):
    from xpander_sync import Backend

    deep: list = []
    for _ in range(DEEP // 10):
        deep = [deep]
    with pytest.raises(InvalidInputError, match="llm_response"):
        Backend(config).report_external_task(agent_id="agt-1", llm_response=deep)
    mocked.post(f"{BASE}/agent-execution/agt-1", json=load_fixture("create_task_response"))
    prompt = '{"a":' * 20_000 + "1" + "}" * 20_000  # not a task reference: sent as the prompt text
    Backend(config).invoke_agent(agent_id="agt-1", prompt=prompt)
    assert len(mocked.calls) == 1


def test_a_reason_phrase_echoing_the_key_is_scrubbed(transport):
    # A server whose reason phrase echoes the key, with an empty body (issue 16, finding 7).
    response = requests.Response()
    response.status_code, response._content = 502, b""
    response.reason = f"Bad Gateway for key {SENTINEL_KEY}"
    message = transport._server_message(response)
    assert SENTINEL_KEY not in message and message.startswith("Bad Gateway for key")


# -- issue 16, finding 12: an overall deadline per call, and a size cap on answers --------------------

class _SlowServer:
    """A loopback server whose answer trickles (one byte every ``pause`` s) or is a gzip bomb."""

    def __init__(self, mode: str, pause: float = 0.3):
        import gzip
        import http.server
        import threading
        import time as _time

        outer = self
        self.bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros, ~64 KiB on the wire

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if mode == "trickle":
                    body = b'{"padding": "' + b"x" * 200 + b'"}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for byte in body:
                        if outer.stopped.is_set():
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        _time.sleep(pause)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(outer.bomb)))
                    self.end_headers()
                    self.wfile.write(outer.bomb)

        self.stopped = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_trickling_server_cannot_hold_a_call_past_its_deadline():
    import time as _time

    with _SlowServer("trickle", pause=0.3) as url:
        cfg = Configuration(api_key="k", base_url=url, read_timeout=5, call_deadline=1.5,
                            retry=RetryPolicy(max_retries=2))
        started = _time.monotonic()
        with pytest.raises(RequestTimeoutError, match="call_deadline"):
            Transport(cfg).request("GET", "/agents/a1")
        # each byte came within the 5 s read timeout: only the deadline could stop it
        assert _time.monotonic() - started < 5


def test_a_gzip_bomb_is_refused_at_the_size_cap():
    with _SlowServer("bomb") as url:
        cfg = Configuration(api_key="k", base_url=url, max_response_bytes=1024 * 1024)
        with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
            Transport(cfg).request("GET", "/agents/a1")


@pytest.mark.parametrize(("kwargs", "field"), [({"call_deadline": 0}, "call_deadline"),
                                               ({"max_response_bytes": 0}, "max_response_bytes")])
def test_the_bounds_are_checked(kwargs, field):
    with pytest.raises(XpanderError, match=field):
        Configuration(**kwargs)


def test_the_deadline_watchdog_keeps_no_residue_after_calls_that_end_in_time(mocked, transport):
    from xpander_sync import _deadline

    with _SlowServer("trickle", pause=0.0) as url:
        fast = Transport(Configuration(api_key="k", base_url=url, call_deadline=60))
        mocked.add_passthru(url)
        for _ in range(50):
            fast.request("GET", "/agents/a1")
    assert _deadline._watchdog._socks == {} and len(_deadline._watchdog._heap) <= 1

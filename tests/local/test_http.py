"""HTTP plumbing of the local backend: robustness against malformed requests, logging and keep-alive, through
real HTTP and raw sockets on loopback."""

from __future__ import annotations

import http.client
import json
import logging
import socket

import pytest
import requests

from xpander_sync.local import LocalBackend

from .conftest import API_KEY, assert_json_error, create_body

# -- robustness, logging, keep-alive -------------------------------------------------------------------


def test_keeps_serving_after_malformed_bodies(backend: LocalBackend, session: requests.Session) -> None:
    url = backend.url + "/agent-execution/agt-openai"
    assert "JSON" in assert_json_error(session.post(url, data=b"{oops", headers={"x-api-key": API_KEY}), 400)
    assert_json_error(session.post(url, data=b"\xff\xfe\x00garbage"), 400)
    assert session.post(url, json=create_body()).status_code == 200
    # chunked bodies (a generator) are read too
    chunked = session.post(url, data=(part for part in [b'{"input": ', b'{"text": "chunked"}}']),
                           headers={"Content-Type": "application/json"})
    assert chunked.status_code == 200 and chunked.json()["input"]["text"] == "chunked"


def _raw_exchange(backend: LocalBackend, payload: bytes) -> bytes:
    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_keeps_serving_after_raw_garbage(backend: LocalBackend, session: requests.Session) -> None:
    reply = _raw_exchange(backend, b"\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert "detail" in json.loads(body)

    bad_length = _raw_exchange(
        backend, b"POST /agents/list HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"
    )
    assert bad_length.startswith(b"HTTP/1.1 400")
    assert _raw_exchange(backend, b"GET /\r\n\r\n").startswith(b"HTTP/1.1 400")  # HTTP/0.9 refused

    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    socket.create_connection((host, port), timeout=5).close()  # connect and hang up
    assert session.get(backend.url + "/agents/list").status_code == 200


def test_logs_go_to_the_library_logger_not_stderr(
    backend: LocalBackend,
    session: requests.Session,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="xpander_sync.local")
    session.get(backend.url + "/agents/list")
    _raw_exchange(backend, b"garbage\r\n\r\n")
    assert capfd.readouterr().err == ""
    records = [r for r in caplog.records if r.name.startswith("xpander_sync.local")]
    assert any("GET /agents/list" in r.getMessage() and r.levelno == logging.DEBUG for r in records)
    assert API_KEY not in caplog.text


def test_keep_alive_reuses_one_connection(backend: LocalBackend, session: requests.Session) -> None:
    session.get(backend.url + "/agents/list")
    session.get(backend.url + "/agents/nope")  # 404 keeps the connection
    session.post(backend.url + "/agent-execution/agt-openai", data=b"{bad")  # so does a 400
    session.post(backend.url + "/agent-execution/agt-openai", json=create_body())
    session.get(backend.url + "/metadata/default_llm_extra_headers")
    ports = {e["client_port"] for e in backend.requests_log}
    assert len(ports) == 1

    host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/agents/agt-json", headers={"x-api-key": API_KEY})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
            assert resp.headers.get("Connection") != "close"
    finally:
        conn.close()

"""_redact: the Secret type and the redaction helpers."""

from __future__ import annotations

import pytest

from xpander_sync import Secret


def test_secret_type():
    secret = Secret("abc123")
    assert repr(secret) == "Secret('***')" and str(secret) == "***" and f"{secret}" == "***"
    assert secret.reveal() == "abc123" and secret == Secret("abc123") and bool(Secret("")) is False
    with pytest.raises(TypeError):
        Secret(5)


def test_redaction_helpers():
    from xpander_sync._redact import redact_headers, redact_mapping, redact_url, scrub

    assert redact_headers({"X-Api-Key": "k", "Authorization": "Bearer t", "Accept": "json"}) == {
        "X-Api-Key": "***", "Authorization": "***", "Accept": "json"}
    assert redact_mapping({"api_key": "k", "nested": [{"client_secret": "s", "name": "n"}], "empty_token": None}) == {
        "api_key": "***", "nested": [{"client_secret": "***", "name": "n"}], "empty_token": None}
    assert redact_url("https://u:p@h.example/x?token=abc&q=1") == "https://u:***@h.example/x?token=***&q=***"
    assert scrub("key=abcdef and abcdef", ["abcdef", None, ""]) == "key=*** and ***"


def test_scrub_masks_escaped_and_partial_forms_of_a_secret():
    from xpander_sync._redact import scrub

    key = "xpk-SCRUB-SENTINEL-0123456789\n"
    quoted_by_requests = ("Invalid return character or leading space in header: "
                          "x-api-key ('xpk-SCRUB-SENTINEL-0123456789\\n')")
    assert "SCRUB-SENTINEL" not in scrub(quoted_by_requests, [key])
    assert "SCRUB-SENTINEL" not in scrub('{"key": "xpk-SCRUB-SENTINEL-0123456789\\n"}', [key])  # JSON-escaped
    assert "SCRUB-SENTINEL" not in scrub("cut: xpk-SCRUB-SENTIN", [key])  # the first half of it
    assert scrub("nothing here", [key]) == "nothing here"

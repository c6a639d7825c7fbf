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

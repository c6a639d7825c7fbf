"""Shared helpers and fixtures of the local-backend tests: sample request bodies, a backend with an API key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from xpander_sync.local import LocalBackend

API_KEY = "xpk-LOCAL-SENTINEL-0001"
ORG = "5b0f0c36-2f1e-4c63-9a3e-0d5e7c1a9f10"
REPO_ROOT = Path(__file__).resolve().parents[2]
MCP_SERVER = {
    "type": "remote",
    "name": "Notion",
    "command": None,
    "url": "https://mcp.notion.example/mcp",
    "transport": "streamable-http",
    "auth_type": "oauth2",
    "api_key": None,
    "use_secrets_manager": False,
    "client_id": None,
    "client_secret": None,
    "headers": {},
    "env_vars": {},
    "allowed_tools": ["search", "fetch"],
    "additional_scopes": [],
    "share_user_token_across_other_agents": True,
}
LIST_ITEM_KEYS = {
    "id",
    "name",
    "icon",
    "instructions",
    "status",
    "organization_id",
    "created_at",
    "description",
    "access_scope",
    "created_by",
    "type",
}


def create_body(**overrides: Any) -> dict[str, Any]:
    """The 27-key create-task body of the current SDK (reference sample values)."""
    body: dict[str, Any] = {
        "id": None,
        "input": {
            "text": "Find Ada Lovelace in the CRM and add a note that she asked for a demo.",
            "files": ["https://files.example.com/uploads/meeting-notes.txt"],
            "user": {
                "id": "user-42",
                "first_name": "Dana",
                "last_name": "Levi",
                "email": "dana@example.com",
                "additional_attributes": {"plan": "enterprise"},
                "timezone": "Europe/Berlin",
            },
        },
        "payload_extension": None,
        "source": "sdk",
        "worker_id": None,
        "output_format": "markdown",
        "output_schema": None,
        "run_locally": False,
        "events_streaming": True,
        "additional_context": "The user is on the enterprise plan.",
        "instructions_override": None,
        "test_run_node_id": None,
        "user_oidc_token": None,
        "expected_output": "A one-paragraph confirmation.",
        "mcp_servers": [],
        "triggering_agent_id": None,
        "title": "CRM demo follow-up",
        "think_mode": "default",
        "disable_attachment_injection": False,
        "user_tokens": None,
        "return_metrics": False,
        "llm_model_provider": None,
        "llm_model_name": None,
        "llm_reasoning_effort": None,
        "harness_cli": None,
        "permission_mode": None,
        "tool_call_limit": None,
    }
    body.update(overrides)
    return body


def report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "ext-2026-0001",
        "input": "What is our refund window?",
        "llm_response": {"id": "chatcmpl-123", "choices": [{"message": {"content": "5 days"}}]},
        "tokens": {
            "completion_tokens": 14,
            "prompt_tokens": 120,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "total_tokens": 134,
        },
        "is_success": True,
        "result": "Refunds are processed within 5 business days.",
        "duration": 1.8,
        "used_tools": ["kb_search"],
    }
    body.update(overrides)
    return body


def assert_json_error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    return body["detail"]


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    with LocalBackend(api_key=API_KEY, default_llm_headers={"X-Org-Trace": "local-trace"}) as b:
        yield b


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        yield s

"""The public surface imports, and importing the package imports no framework."""

from __future__ import annotations

import subprocess
import sys

import xpander_sync

EXPECTED = [
    "Backend", "Configuration", "Agents", "Agent", "Tasks", "Task", "Tokens", "TaskUpdateEvent", "OutputFormat",
    "AgentExecutionStatus", "XpanderError", "ModuleException", "APIError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "RateLimitError", "ServerError", "TransportError",
    "RequestTimeoutError", "ResponseDecodeError", "ConfigurationError", "InvalidInputError", "on_auth_event",
    "on_task", "on_boot", "on_shutdown", "ToolInvocationResult", "QueuedReport", "FlushResult", "Reports",
]


def test_public_names():
    for name in EXPECTED:
        assert hasattr(xpander_sync, name), name
    for name in xpander_sync.__all__:
        assert getattr(xpander_sync, name) is not None


def test_import_loads_no_framework():
    code = (
        "import sys, xpander_sync, xpander_sync.frameworks, xpander_sync.handlers\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('agno', 'openai', 'anthropic', 'agents', 'strands', 'langchain', 'pydantic_ai', 'google'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_first_releases_outbox_module_still_imports():
    from xpander_sync import reporting
    from xpander_sync.outbox import FlushResult, Outbox, QueuedReport

    assert (Outbox, QueuedReport, FlushResult) == (reporting.Outbox, reporting.QueuedReport, reporting.FlushResult)

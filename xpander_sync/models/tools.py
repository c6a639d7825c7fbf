"""The result of calling an xpander tool (an agent "operation").

A tool invocation never raises to the code that asked for it: an HTTP or network failure
comes back as a :class:`ToolInvocationResult` with ``is_error=True``, so an LLM can read the
failure and react. The field set and the defaults are the official SDK's.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs


@attrs.define
class ToolInvocationResult:
    """One tool call's outcome.

    Attributes:
        tool_id: the tool (operation) id that was called.
        payload: the body that was sent (after defaults, permanent values and the task's
            payload extension were applied).
        status_code: the HTTP status; ``None`` when no response was received.
        result: the decoded response (JSON value or text), or the error message.
        is_success: the platform answered with a 2xx status.
        is_error: the call failed (HTTP error, network error, invalid payload).
        task_id: the task (execution) the call was made for, if any.
        tool_call_id: the LLM's id for this call, when known.
        is_local: the tool ran in-process rather than on the platform.
    """

    tool_id: str
    payload: Any
    status_code: Optional[int] = 200
    result: Any = None
    is_success: bool = False
    is_error: bool = False
    task_id: Optional[str] = None
    tool_call_id: Optional[str] = None
    is_local: bool = False

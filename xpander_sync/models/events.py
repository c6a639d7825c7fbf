"""Task events (auth events among them)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Optional

import attrs

from .common import TaskUpdateEventType


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@attrs.define
class TaskUpdateEvent:
    """An event about a task, as pushed to the task's events (the platform shows them with the run).

    For an auth event, ``type`` is ``auth_event`` and ``data`` is a dict such as
    ``{"type": "login_required", "data": {"url": ..., "server_url": ..., "server_name": ...}}``.
    """

    type: TaskUpdateEventType
    task_id: str
    organization_id: str
    time: _dt.datetime = attrs.field(factory=_utcnow)
    data: Any = None
    identity: Optional[Dict[str, Any]] = None

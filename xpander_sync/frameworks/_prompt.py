"""Prompt text every adapter derives from a task, written once."""

from __future__ import annotations

import json
from typing import List, Optional

from ..models.task import Task


def task_context(task: Optional[Task]) -> str:
    """``User details: <compact user JSON>`` when the task has a user, then ``task.additional_context``.

    The user's fields in the official model's order, as compact JSON (as upstream), one
    part per line; ``""`` when there is neither.
    """
    parts: List[str] = []
    if task is not None and task.input.user is not None:
        user = task.input.user
        details = {
            "id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "additional_attributes": user.additional_attributes,
            "timezone": user.timezone,
        }
        parts.append("User details: " + json.dumps(details, separators=(",", ":"), ensure_ascii=False, default=str))
    if task is not None and task.additional_context and task.additional_context.strip():
        parts.append(task.additional_context.strip())
    return "\n".join(parts)

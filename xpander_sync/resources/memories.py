"""``Memories``: what an agent remembers about a user and across users (read at build, written by its tool)."""

from __future__ import annotations

import uuid
from typing import Any, Dict, Optional, Tuple

from .._async import async_twin
from ..errors import InvalidInputError
from ._base import Resource, check_id, route

#: The write actions the platform knows.
ACTIONS = ("save", "update", "delete")
#: The scopes a memory lives in: one user of the agent, or every user of it.
SCOPES = ("user", "agent")
#: The namespace of the ids a save derives locally (:func:`memory_id_for`).
MEMORY_NAMESPACE = uuid.UUID("6f1c9a52-3d0e-5b7a-9c44-2e8f1d7b0a63")


def normalize_memory(text: str) -> str:
    """``text`` folded for comparison (pure).

    Args:
        text: a memory.

    Returns:
        It case-folded, runs of white space made one space, stripped.
    """
    return " ".join(text.casefold().split())


def memory_id_for(scope: str, user_id: Optional[str], agent_id: str, text: str) -> str:
    """The id of a saved memory, derived locally: uuid5 over scope, user, agent and the normalised text (pure).

    The same fact saved twice in one scope gets the same id (the platform keeps one copy).
    An ``agent`` memory belongs to no user, so the user does not enter its id.

    Args:
        scope: ``"user"`` or ``"agent"``.
        user_id: the task's user (used for the ``user`` scope).
        agent_id: the agent that remembers.
        text: the memory.

    Returns:
        The id as a string.
    """
    owner = (user_id or "") if scope == "user" else ""
    return str(uuid.uuid5(MEMORY_NAMESPACE, "|".join((scope, owner, agent_id, normalize_memory(text)))))


def write_body(action: str, scope: str, *, memory: Optional[str], memory_id: Optional[str],
               user_id: Optional[str], writer_agent_id: str, writer_agent_name: Optional[str]) -> Dict[str, Any]:
    """The body of a memory write, every key present as the official sends it (pure).

    Args:
        action: ``"save"``, ``"update"`` or ``"delete"``.
        scope: ``"user"`` or ``"agent"``.
        memory: the text (save, update).
        memory_id: the memory's id (every action: a save's is :func:`memory_id_for`).
        user_id: the task's user.
        writer_agent_id: the agent writing.
        writer_agent_name: its name.

    Returns:
        ``{action, scope, memory, memory_id, user_id, writer_agent_id, writer_agent_name}``.

    Raises:
        InvalidInputError: an unknown ``action`` or ``scope``; a save or update without
            ``memory`` text; an update or delete without ``memory_id``.
    """
    if action not in ACTIONS:
        raise InvalidInputError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if scope not in SCOPES:
        raise InvalidInputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if action in ("save", "update") and (not isinstance(memory, str) or not memory.strip()):
        raise InvalidInputError(f"memory (the text to remember) is required to {action} a memory")
    if action in ("update", "delete") and (not isinstance(memory_id, str) or not memory_id.strip()):
        raise InvalidInputError(f"memory_id is required to {action} a memory")
    return {
        "action": action,
        "scope": scope,
        "memory": memory.strip() if isinstance(memory, str) else None,
        "memory_id": memory_id,
        "user_id": user_id,
        "writer_agent_id": writer_agent_id,
        "writer_agent_name": writer_agent_name,
    }


class Memories(Resource):
    """An agent's memories (its user-scoped and agent-scoped facts, and whether they are on).

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def get(self, agent_id: str, user_id: str, *, timeout: Optional[Tuple[float, float]] = None,
            retry: bool = True) -> Any:
        """An agent's memories for a user (``GET /memories/{agent_id}?user_id=...``), undecoded.

        Args:
            agent_id: the agent.
            user_id: the task's user.
            timeout: a ``(connect, read)`` timeout for this call instead of the configured one.
            retry: whether a timeout or a 5xx answer is retried (``False``: only a refused
                connection is, as for a POST; a capped read has no time to retry).

        Returns:
            The decoded answer, normally ``{"user": [row], "agent": [row], "settings": {"enabled": bool}}``.

        Raises:
            InvalidInputError: a bad ``agent_id`` or a blank ``user_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        check_id("user_id", user_id)
        path = route("/memories/{agent_id}", agent_id=agent_id)
        return self._transport.request("GET", path, params={"user_id": user_id}, timeout=timeout,
                                       repeatable=retry).data

    def write(self, agent_id: str, body: Dict[str, Any], *, timeout: Optional[Tuple[float, float]] = None) -> Any:
        """Save, update or delete one memory (``POST /memories/{agent_id}``); build ``body`` with :func:`write_body`.

        Args:
            agent_id: the agent whose memories change.
            body: the write (:func:`write_body`).
            timeout: a ``(connect, read)`` timeout for this call instead of the configured one.

        Returns:
            The decoded answer (``{"applied": bool, "memory_id"?, "previous"?}``).

        Raises:
            InvalidInputError: a bad ``agent_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/memories/{agent_id}", agent_id=agent_id)
        return self._transport.request("POST", path, json=body, timeout=timeout).data

    aget = async_twin(get)
    awrite = async_twin(write)

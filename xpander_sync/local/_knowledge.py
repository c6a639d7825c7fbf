"""Knowledge bases and memories on the local backend: the routes an agent's retrieval and memories use.

Both are configured in the agents' JSON, under keys the backend strips from what it serves:

* ``"_local_knowledge": {"<kb id>": {"name": ..., "description": ..., "documents": ["text", ...]}}``: the
  knowledge bases this agent file defines (any agent may attach any of them through ``knowledge_bases``).
  A search scores each document by the share of the query's words it contains (case-insensitive, words of
  two letters or more) and answers the ``top_k`` best with a score above zero.
* ``"_local_memories": {"enabled": true, "user": [row, ...], "agent": [row, ...]}``: whether the agent's
  memories are on, and the memories it starts with (a row: ``memory_id``, ``memory``, and for the user scope
  ``user_id``; ``writer_agent_name`` and ``updated_at`` optional). Memories written through
  ``POST /memories/{agent_id}`` live in the SQLite store (:mod:`xpander_sync.local.store`), so they survive a
  restart; the starting ones are copied there the first time an agent's memories are read.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, Optional

from . import _payloads as payloads
from ._agents import AgentCatalog
from ._routing import HTTPError, Request
from .store import Store

#: Documents a search answers when the request names no ``top_k``.
DEFAULT_TOP_K = 10
_WORD = re.compile(r"[^\W_]{2,}")


def words(text: str) -> set[str]:
    """Return the lower-cased words of ``text`` (two letters or more).

    Args:
        text: Any text.

    Returns:
        The set of its words.
    """
    return set(_WORD.findall(text.lower()))


def score(query: str, document: str) -> float:
    """Return the share of the query's words found in ``document`` (0 to 1, four decimals).

    Args:
        query: The search text.
        document: A document's text.

    Returns:
        The score; 0 when the query has no word.
    """
    asked = words(query)
    if not asked:
        return 0.0
    return round(len(asked & words(document)) / len(asked), 4)


def _document_text(document: Any) -> str:
    if isinstance(document, dict):
        return str(document.get("content") or "")
    return str(document)


class KnowledgeRoutes:
    """The route functions of knowledge-base details and search, and of memories.

    Args:
        agents: The agents served (their ``_local_knowledge`` and ``_local_memories`` keys).
        store: Where written memories are kept.
    """

    def __init__(self, agents: AgentCatalog, store: Store) -> None:
        self._agents = agents
        self._store = store
        self._seeded: set[str] = set()
        self._seed_lock = threading.Lock()

    # -- knowledge bases -----------------------------------------------------------------------------

    def _knowledge_base(self, kb_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(definition, owner agent)`` of a knowledge base, or raise 404."""
        for agent in self._agents.latest():
            bases = agent.get("_local_knowledge")
            if isinstance(bases, dict) and isinstance(bases.get(kb_id), dict):
                return bases[kb_id], agent
        raise HTTPError(404, "Knowledge base not found")

    def details(self, req: Request) -> tuple[int, Any]:
        """``GET /knowledge_bases/{kb_id}/details``: name, description, type and document count."""
        kb_id = req.params["kb_id"]
        base, owner = self._knowledge_base(kb_id)
        return 200, {
            "id": kb_id,
            "name": str(base.get("name") or kb_id),
            "description": str(base.get("description") or ""),
            "type": "managed",
            "organization_id": self._agents.org(owner),
            "total_documents": len(base.get("documents") or []),
        }

    def search(self, req: Request) -> tuple[int, Any]:
        """``GET /knowledge_bases/{kb_id}?search_query=...&top_k=N``: the best documents as ``{content, score}``."""
        base, _ = self._knowledge_base(req.params["kb_id"])
        query = req.query.get("search_query", "")
        if not query.strip():
            raise HTTPError(422, "search_query is required")
        try:
            top_k = int(req.query.get("top_k", DEFAULT_TOP_K))
        except ValueError:
            raise HTTPError(422, "top_k must be an integer") from None
        if top_k < 1:
            raise HTTPError(422, "top_k must be at least 1")
        scored = [(score(query, _document_text(d)), _document_text(d)) for d in base.get("documents") or []]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: s[0], reverse=True)[:top_k]
        return 200, [{"content": content, "score": value} for value, content in ranked]

    # -- memories ------------------------------------------------------------------------------------

    def _settings(self, agent_id: str) -> dict[str, Any]:
        agent = self._agents.get(agent_id)
        settings = agent.get("_local_memories")
        return settings if isinstance(settings, dict) else {}

    def _seed(self, agent_id: str, settings: dict[str, Any]) -> None:
        """Copy the agent's starting memories to the store (once per backend; kept rows win)."""
        with self._seed_lock:
            if agent_id in self._seeded:
                return
            self._seeded.add(agent_id)
        for scope in ("user", "agent"):
            for row in settings.get(scope) or []:
                if isinstance(row, dict) and isinstance(row.get("memory"), str):
                    seeded = {"memory_id": str(row.get("memory_id") or uuid.uuid4()), "scope": scope,
                              "user_id": row.get("user_id"), "writer_agent_id": agent_id,
                              "writer_agent_name": None, "updated_at": payloads.now_iso(), **row}
                    self._store.put_memory(agent_id, seeded, only_new=True)

    def memories_get(self, req: Request) -> tuple[int, Any]:
        """``GET /memories/{agent_id}?user_id=...``: the user's and the agent's memories, and the settings."""
        agent_id = req.params["agent_id"]
        settings = self._settings(agent_id)
        enabled = settings.get("enabled") is True
        if not enabled:
            return 200, {"user": [], "agent": [], "settings": {"enabled": False}}
        self._seed(agent_id, settings)
        user_id = req.query.get("user_id")
        rows = self._store.list_memories(agent_id)
        return 200, {
            "user": [r for r in rows if r.get("scope") == "user" and user_id and r.get("user_id") == user_id],
            "agent": [r for r in rows if r.get("scope") == "agent"],
            "settings": {"enabled": True},
        }

    def memories_write(self, req: Request) -> tuple[int, Any]:
        """``POST /memories/{agent_id}``: save, update or delete one memory; ``{applied, memory_id, previous?}``."""
        agent_id = req.params["agent_id"]
        body = req.body
        if not isinstance(body, dict):
            raise HTTPError(422, "the body must be a JSON object")
        action, scope = body.get("action"), body.get("scope")
        if action not in ("save", "update", "delete"):
            raise HTTPError(422, "action must be save, update or delete")
        if scope not in ("user", "agent"):
            raise HTTPError(422, "scope must be user or agent")
        if scope == "user" and not body.get("user_id"):
            raise HTTPError(422, "user_id is required for a user memory")
        settings = self._settings(agent_id)
        memory_id = body.get("memory_id")
        if settings.get("enabled") is not True:
            return 200, {"applied": False, "memory_id": memory_id}
        self._seed(agent_id, settings)
        if action == "delete":
            previous = self._store.delete_memory(agent_id, str(memory_id))
            return 200, self._answer(previous is not None, memory_id, previous)
        if not isinstance(body.get("memory"), str) or not body["memory"].strip():
            raise HTTPError(422, "memory is required to save or update")
        memory_id = str(memory_id or uuid.uuid4())
        existing = {r["memory_id"]: r for r in self._store.list_memories(agent_id)}.get(memory_id)
        if action == "update" and existing is None:
            return 200, {"applied": False, "memory_id": memory_id}
        row = {"memory_id": memory_id, "memory": body["memory"].strip(), "scope": scope,
               "user_id": body.get("user_id") if scope == "user" else None,
               "writer_agent_id": body.get("writer_agent_id"), "writer_agent_name": body.get("writer_agent_name"),
               "updated_at": payloads.now_iso()}
        previous = self._store.put_memory(agent_id, row)
        return 200, self._answer(True, memory_id, previous if action == "update" else None)

    @staticmethod
    def _answer(applied: bool, memory_id: Any, previous: Optional[dict[str, Any]]) -> dict[str, Any]:
        answer: dict[str, Any] = {"applied": applied, "memory_id": memory_id}
        if previous is not None:
            answer["previous"] = previous.get("memory")
        return answer

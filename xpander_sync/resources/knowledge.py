"""``KnowledgeBases``: the platform's knowledge-base details and search (what an agent's retrieval asks)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .._async import async_twin
from ..errors import InvalidInputError
from ._base import Resource, route

#: Documents a search returns when the caller names no number (as the official retriever).
DEFAULT_TOP_K = 10


def search_params(query: str, top_k: int) -> Dict[str, Any]:
    """The query string of a knowledge-base search, in the official order (pure).

    Args:
        query: the text to search for.
        top_k: how many documents the knowledge base returns at most.

    Returns:
        ``{"search_query", "use_bubble": False, "bubble_size": 1000, "top_k"}``.

    Raises:
        InvalidInputError: ``query`` is not a non-blank string, or ``top_k`` is not a positive int.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query must be a non-empty string")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError("top_k must be a positive integer")
    return {"search_query": query, "use_bubble": False, "bubble_size": 1000, "top_k": top_k}


def documents(data: Any) -> List[Dict[str, Any]]:
    """The documents of a search answer (pure).

    Args:
        data: the decoded answer (a list, or an object with a ``documents`` list).

    Returns:
        Its JSON objects; anything else dropped.
    """
    if isinstance(data, dict) and isinstance(data.get("documents"), list):
        data = data["documents"]
    if not isinstance(data, list):
        return []
    return [item for item in data if isinstance(item, dict)]


class KnowledgeBases(Resource):
    """Knowledge bases attached to agents.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def details(self, knowledge_base_id: str, *, timeout: Optional[Tuple[float, float]] = None) -> Dict[str, Any]:
        """A knowledge base's details (``GET /knowledge_bases/{knowledge_base_id}/details``).

        Args:
            knowledge_base_id: the knowledge base.
            timeout: a ``(connect, read)`` timeout for this call instead of the configured one.

        Returns:
            The answer (``{"id", "name", "description", "type", "total_documents", ...}``);
            ``{}`` when it is not a JSON object.

        Raises:
            InvalidInputError: a bad ``knowledge_base_id``.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/knowledge_bases/{knowledge_base_id}/details", knowledge_base_id=knowledge_base_id)
        data = self._transport.request("GET", path, timeout=timeout).data
        return data if isinstance(data, dict) else {}

    def search(self, knowledge_base_id: str, query: str, *, top_k: int = DEFAULT_TOP_K,
               timeout: Optional[Tuple[float, float]] = None) -> List[Dict[str, Any]]:
        """Search one knowledge base (``GET /knowledge_bases/{knowledge_base_id}?search_query=...``).

        Sent with ``use_bubble=false`` and ``bubble_size=1000``, as the official retriever does.

        Args:
            knowledge_base_id: the knowledge base.
            query: the text to search for.
            top_k: how many documents to return at most.
            timeout: a ``(connect, read)`` timeout for this call instead of the configured one.

        Returns:
            The matching documents as the platform sends them (``{"content", "score", ...}``),
            in its order; items that are not JSON objects are dropped.

        Raises:
            InvalidInputError: a bad ``knowledge_base_id``, a blank ``query`` or a ``top_k`` below 1.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/knowledge_bases/{knowledge_base_id}", knowledge_base_id=knowledge_base_id)
        params = search_params(query, top_k)
        return documents(self._transport.request("GET", path, params=params, timeout=timeout).data)

    adetails = async_twin(details)
    asearch = async_twin(search)

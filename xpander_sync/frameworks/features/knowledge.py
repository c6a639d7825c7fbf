"""Knowledge bases: retrieval over the agent's attached knowledge bases, in every framework.

On when ``agent.knowledge_bases`` is non-empty; nothing is fetched while building (a build
costs no request): the platform is asked when the model searches. A search, for a query and
a number of documents ``n`` (default 10, as the official retriever):

1. the details of every attached knowledge base (:meth:`~xpander_sync.resources.KnowledgeBases.details`),
   cached per knowledge base for ``metadata_cache_ttl`` (60 s, as the official) in the
   transport's caches;
2. a search of each (:meth:`~xpander_sync.resources.KnowledgeBases.search`, ``top_k=n``);
3. the documents of every base merged, the ``n`` best by ``score`` kept, as the dicts the
   platform sent (``{"content", "score", ...}``).

Any failure answers ``[]`` (logged): retrieval fails open, as the official's does.

agno gets the search as ``knowledge_retriever`` with ``search_knowledge=True`` (its own
``search_knowledge_base`` tool calls it: :meth:`KnowledgeFeature.retriever`); every other
framework gets the same search as a ``search_knowledge_base`` tool (:meth:`KnowledgeFeature.tools`).
An adapter takes the first route by setting ``native_knowledge = True``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from ...models.agent import Agent
from ...resources import KnowledgeBases
from ...resources.knowledge import DEFAULT_TOP_K
from .._toolspec import FunctionToolSpec, ToolSpec
from ._base import Feature

logger = logging.getLogger(__name__)

#: The name of the search tool (agno's own tool has the same name).
SEARCH_TOOL = "search_knowledge_base"
#: Most documents one search may ask for.
MAX_TOP_K = 50
#: What the search tool answers when nothing matched (agno's tool says the same).
NO_DOCUMENTS = "No documents found"

SEARCH_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for, in a few words or a question."}},
    "required": ["query"],
}
SEARCH_DESCRIPTION = (
    "Search the agent's knowledge bases for passages relevant to a query. "
    "Returns the best matching passages with their relevance scores."
)


def top_documents(results: List[List[Dict[str, Any]]], count: int) -> List[Dict[str, Any]]:
    """The ``count`` best documents of several searches, by ``score`` (highest first; pure).

    A document without a numeric score ranks last; ties keep the knowledge bases' order.

    Args:
        results: each knowledge base's documents.
        count: how many to keep.

    Returns:
        At most ``count`` documents, best first.
    """
    merged = [doc for docs in results for doc in docs]

    def score(doc: Dict[str, Any]) -> float:
        value = doc.get("score")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("-inf")

    return sorted(merged, key=score, reverse=True)[:count]


def each(function: Callable[[str], Any], ids: List[str]) -> List[Any]:
    """``function`` over ``ids``, concurrently when there are several, in order.

    Args:
        function: called with each id.
        ids: the knowledge bases.

    Returns:
        The answers, in the order of ``ids``.
    """
    if len(ids) == 1:
        return [function(ids[0])]
    with ThreadPoolExecutor(max_workers=min(8, len(ids)), thread_name_prefix="xpander-kb") as pool:
        return list(pool.map(function, ids))


def top_k_of(num_documents: Any) -> int:
    """The number of documents to ask for.

    Args:
        num_documents: what the caller asked for (agno passes ``None`` by default).

    Returns:
        ``num_documents`` when a positive int (at most 50), else 10.
    """
    if isinstance(num_documents, bool) or not isinstance(num_documents, int) or num_documents < 1:
        return DEFAULT_TOP_K
    return min(num_documents, MAX_TOP_K)


class KnowledgeFeature(Feature):
    """Retrieval over ``agent.knowledge_bases`` (a retriever for agno, a search tool elsewhere)."""

    name = "knowledge"

    def _resource(self) -> KnowledgeBases:
        transport = self.context.transport
        return KnowledgeBases(transport.configuration, transport=transport)

    def search(self, agent: Agent, query: str, num_documents: Any = None) -> List[Dict[str, Any]]:
        """The best documents of ``agent``'s knowledge bases for ``query`` (``[]`` on any failure, logged).

        Args:
            agent: the agent whose knowledge bases are searched.
            query: the text to search for.
            num_documents: how many documents to return (default 10, at most 50).

        Returns:
            The documents, best score first.
        """
        ids = list(dict.fromkeys(kb.id for kb in agent.knowledge_bases))
        if not ids:
            return []
        count = top_k_of(num_documents)
        try:
            resource = self._resource()
            cache = self.context.transport.caches.knowledge

            def details(kb_id: str) -> Any:
                return cache.get_or_load(kb_id, lambda: resource.details(kb_id))

            def search(kb_id: str) -> List[Dict[str, Any]]:
                return resource.search(kb_id, query, top_k=count)

            each(details, ids)  # every base's details first (cached), as the official
            results = each(search, ids)
        except Exception as exc:  # fail open: the model goes on without documents
            logger.warning("agent %s: knowledge-base search failed, answering no documents: %s", agent.id, exc)
            return []
        return top_documents(results, count)

    def retriever(self, agent: Agent) -> Optional[Callable[..., List[Dict[str, Any]]]]:
        """agno's ``knowledge_retriever`` for ``agent`` (``None`` without knowledge bases).

        agno calls it as ``retriever(agent=..., query=..., num_documents=..., **kwargs)``
        (from its sync and its async run alike: the function is blocking, as the official's).

        Args:
            agent: the xpander agent whose knowledge bases it searches.

        Returns:
            The retriever (answers :meth:`search`'s documents), or ``None``.
        """
        if not agent.knowledge_bases:
            return None
        owner = agent  # agno passes its own agent object as ``agent``: the xpander one is this build's

        def knowledge_retriever(query: str, num_documents: Optional[int] = None, agent: Any = None,
                                **kwargs: Any) -> List[Dict[str, Any]]:
            del agent, kwargs  # agno's agent and extras (user_id, filters) are not used
            return self.search(owner, query, num_documents)

        return knowledge_retriever

    def tools(self, agent: Agent, root: bool) -> List[ToolSpec]:
        """The ``search_knowledge_base`` tool, for frameworks without a retriever slot.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs (unused: members search their own bases).

        Returns:
            The tool (its answer: the documents as JSON, or ``No documents found``), or ``[]``.
        """
        if not agent.knowledge_bases or getattr(self.adapter, "native_knowledge", False):
            return []

        def search_tool(arguments: Dict[str, Any]) -> Any:
            query = arguments.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ValueError("query must be a non-empty string")
            return self.search(agent, query) or NO_DOCUMENTS

        return [FunctionToolSpec(SEARCH_TOOL, SEARCH_DESCRIPTION, SEARCH_SCHEMA, search_tool)]

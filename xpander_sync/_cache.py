"""Small TTL caches with single-flight loading.

The official SDK's caches are lock-free, so 100 concurrent cold ``get_args`` calls made
400 requests. Here one caller loads a cold key while the others wait for its result;
errors are not cached. A TTL of 0 disables a cache.

A key's loading lock lives only while someone loads or waits for that key, so keys that
keep failing (20,000 unknown agent ids) leave nothing behind; and a forked child gets
fresh locks (a lock held by a parent's thread at the fork would never be released there).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple, TypeVar

V = TypeVar("V")
_every_cache: weakref.WeakSet[TTLCache] = weakref.WeakSet()


class TTLCache:
    """A thread-safe LRU cache whose entries expire after ``ttl`` seconds.

    Args:
        ttl: seconds an entry is fresh (0: every lookup loads).
        maxsize: entries kept at most (least recently used dropped first).
        keep: seconds an entry stays available to :meth:`get_stale` (0: not kept past its TTL).
        clock: injected for tests.
    """

    def __init__(self, ttl: float, maxsize: int = 256, clock: Callable[[], float] = time.monotonic,
                 keep: float = 0.0):
        self.ttl = ttl
        self.keep = keep
        self.maxsize = maxsize
        self._clock = clock
        self._data: OrderedDict[Hashable, Tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        # key -> [its loading lock, how many callers hold or wait for it]
        self._loading: Dict[Hashable, List[Any]] = {}
        # bumped by every removal: a load that started before one is returned but not stored
        self._generation = 0
        _every_cache.add(self)

    def get(self, key: Hashable) -> Optional[Any]:
        """The fresh value for ``key``, or ``None``."""
        entry = self._data.get(key)
        if entry is not None and entry[0] + self.ttl > self._clock():
            return entry[1]
        return None

    def get_stale(self, key: Hashable) -> Optional[Tuple[float, Any]]:
        """``(age_seconds, value)`` of an entry still within ``keep`` seconds, fresh or not; else ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        age = self._clock() - entry[0]
        return (age, entry[1]) if age <= max(self.keep, self.ttl) else None

    def get_or_load(self, key: Hashable, loader: Callable[[], V]) -> V:
        """The fresh value for ``key``, loading it (once, whoever else asks meanwhile) when needed."""
        if self.ttl <= 0:
            loaded = loader()
            self.put(key, loaded)
            return loaded
        cached: Any = self.get(key)
        if cached is not None:
            return cached
        with self._lock:
            entry = self._loading.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                cached = self.get(key)
                if cached is not None:
                    return cached
                generation = self._generation
                loaded = loader()
                with self._lock:
                    current = generation == self._generation
                if current:  # nothing was removed while it loaded (it may predate a write)
                    self.put(key, loaded)
                return loaded
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0 and self._loading.get(key) is entry:
                    del self._loading[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` (``None`` is not cached; nothing is stored when neither ttl nor keep is set)."""
        if (self.ttl <= 0 and self.keep <= 0) or value is None:
            return
        with self._lock:
            self._data[key] = (self._clock(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (and keep a load of any key already under way from storing its answer)."""
        self.forget(lambda k: k == key)

    def forget(self, matches: Callable[[Hashable], bool]) -> None:
        """Forget every key for which ``matches(key)`` is true (loads under way store nothing).

        Args:
            matches: the keys to drop.
        """
        with self._lock:
            self._generation += 1
            for key in [k for k in self._data if matches(k)]:
                del self._data[key]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._generation += 1
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def values(self) -> List[Any]:
        """Every value held (fresh or kept for stale use), newest last."""
        with self._lock:
            return [value for _, value in self._data.values()]

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._loading = {}


class PlatformCaches:
    """The caches ``get_args`` uses, one set per transport (i.e. per configuration).

    Attributes:
        agents: raw agent payloads by ``(agent_id, version)`` (fresh for ``agent_cache_ttl``, kept
            for stale-if-error use for ``agent_max_staleness``).
        org_headers: the organization's default LLM headers (``metadata_cache_ttl``).
        db: agents' session-storage connection URIs (``metadata_cache_ttl``).
        knowledge: knowledge-base details by id (``metadata_cache_ttl``: 60 s, as the official).
        prompts: prompt text the platform computes per agent (channel presence, dynamic
            prompt), fresh for ``agent_cache_ttl`` like the agent payload it goes with.
        llm_endpoints: tasks' custom LLM endpoints, by task id (60 s, as the official SDK).
        memories: a user's memories answer by ``(agent_id, user_id)`` (``agent_cache_ttl``;
            a memory write from this process drops the keys it changes).
        plans: a task's reloaded deep-planning state by task id (``agent_cache_ttl``).
        mcp_tokens: MCP OAuth access tokens (:class:`~xpander_sync.Secret`) by ``(agent_id,
            token user id, server id, server url)`` (``agent_cache_ttl``; in memory only).

    Everything ``get_args`` reads from the platform is reused for ``agent_cache_ttl`` at most
    (``0``: every build asks again). Failures are not cached, except the empty text a fail-open
    prompt call answers with (``prompts``): a platform that cannot answer is asked again after
    ``agent_cache_ttl``, not on every build.
    """

    def __init__(self, agent_ttl: float, metadata_ttl: float, agent_keep: float = 0.0):
        self.agents = TTLCache(agent_ttl, keep=agent_keep)
        self.org_headers = TTLCache(metadata_ttl, maxsize=4)
        self.db = TTLCache(metadata_ttl, keep=agent_keep)
        self.knowledge = TTLCache(metadata_ttl)
        self.prompts = TTLCache(agent_ttl)
        self.llm_endpoints = TTLCache(60.0, maxsize=256)
        self.memories = TTLCache(agent_ttl, maxsize=1024)
        self.plans = TTLCache(agent_ttl, maxsize=1024)
        self.mcp_tokens = TTLCache(agent_ttl, maxsize=1024)

    def clear(self) -> None:
        """Forget everything (e.g. after changing an agent on the platform)."""
        for cache in (self.agents, self.org_headers, self.db, self.knowledge, self.prompts, self.llm_endpoints,
                      self.memories, self.plans, self.mcp_tokens):
            cache.clear()


def _reset_locks_in_child() -> None:
    for cache in list(_every_cache):
        cache._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)

"""Small TTL caches with single-flight loading.

The official SDK's caches are lock-free, so 100 concurrent cold ``get_args`` calls made
400 requests. Here one caller loads a cold key while the others wait for its result;
errors are not cached. A TTL of 0 disables a cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Optional, Tuple, TypeVar

V = TypeVar("V")


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
        self._loading: Dict[Hashable, threading.Lock] = {}

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
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            cached = self.get(key)
            if cached is not None:
                return cached
            loaded = loader()
            self.put(key, loaded)
            return loaded

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` (``None`` is not cached; nothing is stored when neither ttl nor keep is set)."""
        if (self.ttl <= 0 and self.keep <= 0) or value is None:
            return
        with self._lock:
            self._data[key] = (self._clock(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                old, _ = self._data.popitem(last=False)
                self._loading.pop(old, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._data.clear()
            self._loading.clear()

    def __len__(self) -> int:
        return len(self._data)


class PlatformCaches:
    """The caches ``get_args`` uses, one set per transport (i.e. per configuration).

    Attributes:
        agents: raw agent payloads by ``(agent_id, version)`` (fresh for ``agent_cache_ttl``, kept
            for stale-if-error use for ``agent_max_staleness``).
        org_headers: the organization's default LLM headers (``metadata_cache_ttl``).
        db: agents' session-storage connection URIs (``metadata_cache_ttl``).
    """

    def __init__(self, agent_ttl: float, metadata_ttl: float, agent_keep: float = 0.0):
        self.agents = TTLCache(agent_ttl, keep=agent_keep)
        self.org_headers = TTLCache(metadata_ttl, maxsize=4)
        self.db = TTLCache(metadata_ttl, keep=agent_keep)

    def clear(self) -> None:
        """Forget everything (e.g. after changing an agent on the platform)."""
        for cache in (self.agents, self.org_headers, self.db):
            cache.clear()

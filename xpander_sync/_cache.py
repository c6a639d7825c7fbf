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
        ttl: seconds an entry is fresh (0 disables caching).
        maxsize: entries kept at most (least recently used dropped first).
        clock: injected for tests.
    """

    def __init__(self, ttl: float, maxsize: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._data: OrderedDict[Hashable, Tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: Dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Optional[Any]:
        """The fresh value for ``key``, or ``None``."""
        entry = self._data.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def get_or_load(self, key: Hashable, loader: Callable[[], V]) -> V:
        """The fresh value for ``key``, loading it (once, whoever else asks meanwhile) when needed."""
        if self.ttl <= 0:
            return loader()
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            value = self.get(key)
            if value is not None:
                return value
            value = loader()
            self.put(key, value)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` (``None`` is not cached)."""
        if self.ttl <= 0 or value is None:
            return
        with self._lock:
            self._data[key] = (self._clock() + self.ttl, value)
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
        agents: raw agent payloads by ``(agent_id, version)`` (``agent_cache_ttl``).
        org_headers: the organization's default LLM headers (``metadata_cache_ttl``).
        db: agents' session-storage connection URIs (``metadata_cache_ttl``).
    """

    def __init__(self, agent_ttl: float, metadata_ttl: float):
        self.agents = TTLCache(agent_ttl)
        self.org_headers = TTLCache(metadata_ttl, maxsize=4)
        self.db = TTLCache(metadata_ttl)

    def clear(self) -> None:
        """Forget everything (e.g. after changing an agent on the platform)."""
        for cache in (self.agents, self.org_headers, self.db):
            cache.clear()

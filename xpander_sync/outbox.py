"""Moved: the outbox lives in :mod:`xpander_sync.reporting` (``from xpander_sync import QueuedReport``).

Kept so that ``from xpander_sync.outbox import Outbox, QueuedReport, FlushResult`` (the module the
first release documented) keeps working.
"""

from .reporting import FlushResult, Outbox, QueuedReport

__all__ = ["FlushResult", "Outbox", "QueuedReport"]

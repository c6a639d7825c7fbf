"""Platform features, applied to every framework's build.

Each module here holds one :class:`~._base.Feature` subclass; :data:`FEATURES` lists them in
the order their hooks run (an instructions hook sees the text the earlier ones produced).
The :class:`~xpander_sync.frameworks._adapter.Adapter` base creates one instance of each per
``get_args`` build (:func:`for_build`) and folds their hooks into the instructions, the
additional context, the expected output, the tools and the model spec it hands to every
adapter. Adding a feature: one module, one line in :data:`FEATURES`, a row in
docs/frameworks.md's feature table, and its tests over every adapter.
"""

from __future__ import annotations

from typing import Any, List, Type

from ._base import Feature
from .dynamic_tools import DynamicTools
from .gateway import Gateway
from .knowledge import KnowledgeFeature
from .memories import MemoriesFeature
from .planning import DeepPlanningFeature
from .prompts import ChannelPresence, DynamicPrompt, EnvironmentContext

#: Every feature, in the order its hooks apply.
FEATURES: List[Type[Feature]] = [
    Gateway,
    DynamicPrompt,
    EnvironmentContext,
    ChannelPresence,
    KnowledgeFeature,
    MemoriesFeature,
    DeepPlanningFeature,
    DynamicTools,
]


def for_build(adapter: Any) -> List[Feature]:
    """One instance of every feature for a build.

    Args:
        adapter: the :class:`~xpander_sync.frameworks._adapter.Adapter` being built.

    Returns:
        The features, in :data:`FEATURES` order.
    """
    return [feature(adapter) for feature in FEATURES]


__all__ = ["FEATURES", "Feature", "for_build"]

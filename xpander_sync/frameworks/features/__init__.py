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

from typing import Any, Dict, List, Tuple, Type

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


#: The hooks the Adapter base folds (each a no-op on :class:`Feature`).
HOOKS = ("instructions", "additional_context", "expected_output", "tools", "filter_tools", "model_spec")
_hooked: Dict[Tuple[type, ...], Dict[str, Tuple[int, ...]]] = {}


def by_hook(built: List[Feature]) -> Dict[str, List[Feature]]:
    """For each of :data:`HOOKS`, the features of ``built`` whose class implements it (in order).

    A warm build folds only the hooks a feature really has, not every no-op of the base class.

    Args:
        built: the features of one build (:func:`for_build`).

    Returns:
        ``{hook name: [feature, ...]}``.
    """
    kinds = tuple(type(feature) for feature in built)
    found = _hooked.get(kinds)
    if found is None:
        found = _hooked[kinds] = {
            hook: tuple(i for i, kind in enumerate(kinds) if getattr(kind, hook) is not getattr(Feature, hook))
            for hook in HOOKS
        }
    return {hook: [built[i] for i in indexes] for hook, indexes in found.items()}


def for_build(adapter: Any) -> List[Feature]:
    """One instance of every feature for a build.

    Args:
        adapter: the :class:`~xpander_sync.frameworks._adapter.Adapter` being built.

    Returns:
        The features, in :data:`FEATURES` order.
    """
    return [feature(adapter) for feature in FEATURES]


__all__ = ["FEATURES", "HOOKS", "Feature", "by_hook", "for_build"]

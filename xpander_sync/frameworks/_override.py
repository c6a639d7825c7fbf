"""The ``override`` vocabulary of ``get_args``, defined once for every adapter (docs/get_args.md).

:func:`parse_override` sorts the caller's ``override`` dict into four parts, which the
:class:`~xpander_sync.frameworks._adapter.Adapter` base applies the same way for every
framework:

* ``model``: a string is a model id (``"gpt-4o"``, ``"claude-sonnet-4-5"``, or
  ``"provider:model"``); the adapter builds *its* model object for it, with the key,
  headers and endpoint resolved as for the agent's own model. The provider is the one the
  id names (:func:`split_model_id`), else the agent's. Anything else is a framework model
  object, used as is.
* generation parameters (:data:`GENERATION_PARAMS`: ``temperature``, ``max_tokens``,
  ``top_p``, ...): set on the model (or the framework's model settings), never passed as
  constructor keys. Their types are checked here.
* constructor parameters of the installed framework: passed through to the returned dict.
* anything else: dropped, with one warning naming the keys and the framework's version.

Pure: no framework is imported here (the adapter says which constructor keys it accepts).
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from ..errors import InvalidInputError
from ._llm import ENV_KEYS, OPENAI_WIRE_BASE_URLS, REFUSED_PROVIDERS, normalize_provider

logger = logging.getLogger(__name__)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_integer(value: Any) -> bool:
    return _integer(value) and value > 0


def _stop(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


#: The generation parameters ``override`` understands: name -> (check, what the value must be).
GENERATION_PARAMS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "temperature": (_number, "a number"),
    "max_tokens": (_positive_integer, "a positive integer"),
    "top_p": (_number, "a number"),
    "top_k": (_positive_integer, "a positive integer"),
    "stop": (_stop, "a string or a list of strings"),
    "seed": (_integer, "an integer"),
    "frequency_penalty": (_number, "a number"),
    "presence_penalty": (_number, "a number"),
    "reasoning_effort": (_text, "a non-empty string (minimal, low, medium, high, xhigh)"),
}

#: Model-id prefixes that name their provider unambiguously (checked lower-case, in order).
MODEL_FAMILIES: Tuple[Tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "google_ai_studio"),
)

#: ``provider:`` prefixes accepted besides the platform's own provider names.
_PREFIX_ALIASES = {"google": "google_ai_studio", "gemini": "google_ai_studio", "bedrock": "amazon_bedrock",
                   "azure": "azure_ai_foundary"}
#: Every provider name the platform uses (what may come before ``:`` in a model id).
KNOWN_PROVIDERS = frozenset(set(ENV_KEYS) | set(OPENAI_WIRE_BASE_URLS) | set(REFUSED_PROVIDERS))


@attrs.frozen
class Override:
    """A caller's ``override``, sorted.

    Attributes:
        model: the ``model`` value (a model id string or a framework model object), or
            ``None`` when not given.
        provider: for a model id: the provider it names (``None``: the agent's).
        model_id: for a model id: the id without its ``provider:`` prefix.
        generation: the generation parameters (type-checked).
        constructor: the keys passed through to the framework's constructor.
        unknown: the keys dropped (the framework does not take them).
    """

    model: Any = None
    provider: Optional[str] = None
    model_id: Optional[str] = None
    generation: Dict[str, Any] = attrs.field(factory=dict)
    constructor: Dict[str, Any] = attrs.field(factory=dict)
    unknown: Tuple[str, ...] = ()

    @property
    def has_model(self) -> bool:
        """Whether ``model`` was given."""
        return self.model is not None

    @property
    def model_is_id(self) -> bool:
        """Whether ``model`` is a model id (the adapter builds the object)."""
        return self.model_id is not None


def split_model_id(text: str) -> Tuple[Optional[str], str]:
    """``(provider or None, model id)`` for a model id string.

    ``"anthropic:claude-sonnet-4-5"`` names its provider; so do the unambiguous families
    (``gpt-*``, ``chatgpt-*``, ``o1*``/``o3*``/``o4*`` → openai, ``claude-*`` → anthropic,
    ``gemini-*`` → google_ai_studio); any other id leaves the provider to the agent. A
    prefix that is not a provider name (``llama3:8b``) is part of the id.

    Args:
        text: the model id as given (surrounding spaces ignored).

    Returns:
        The provider (normalised) or ``None``, and the model id.
    """
    model_id = text.strip()
    head, sep, tail = model_id.partition(":")
    if sep and tail.strip():
        name = normalize_provider(head)
        name = _PREFIX_ALIASES.get(name, name)
        if name in KNOWN_PROVIDERS:
            return name, tail.strip()
    lowered = model_id.lower()
    for prefix, provider in MODEL_FAMILIES:
        if lowered.startswith(prefix):
            return provider, model_id
    return None, model_id


def parse_override(override: Any, accepts: Callable[[str], bool]) -> Override:
    """Sort ``override`` into model, generation parameters, constructor keys and unknown keys.

    Args:
        override: the caller's ``override`` (``None`` for none).
        accepts: whether the installed framework's constructor takes a key.

    Returns:
        The :class:`Override`.

    Raises:
        InvalidInputError: ``override`` is not a dict, a key is not a string, ``model`` is
            ``None`` or an empty string, or a generation parameter has the wrong type (the
            message names the key and what it must be).
    """
    if override is None:
        return Override()
    if not isinstance(override, Mapping):
        raise InvalidInputError(f"override must be a dict (or None), not {type(override).__name__}")
    model: Any = None
    provider: Optional[str] = None
    model_id: Optional[str] = None
    generation: Dict[str, Any] = {}
    constructor: Dict[str, Any] = {}
    unknown: List[str] = []
    for key, value in override.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"override keys must be strings, not {type(key).__name__} ({key!r})")
        if key == "model":
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InvalidInputError("override['model'] must be a model id or a framework model object")
            model = value
            if isinstance(value, str):
                provider, model_id = split_model_id(value)
        elif key in GENERATION_PARAMS:
            check, expected = GENERATION_PARAMS[key]
            if not check(value):
                raise InvalidInputError(f"override[{key!r}] must be {expected}, not {value!r}")
            generation[key] = list(value) if isinstance(value, tuple) else value
        elif accepts(key):
            constructor[key] = value
        else:
            unknown.append(key)
    return Override(model=model, provider=provider, model_id=model_id, generation=generation,
                    constructor=constructor, unknown=tuple(unknown))


def set_fields(target: Any, values: Mapping[str, Any], aliases: Mapping[str, Tuple[str, ...]]) -> List[str]:
    """Set each value on the first attribute ``target`` has among the key's ``aliases`` (default: the key).

    For the adapters' own model objects (dataclasses or plain classes), which they are free
    to change.

    Args:
        target: the object.
        values: name -> value.
        aliases: name -> the attribute names to try, in order.

    Returns:
        The names that found no attribute.
    """
    missed: List[str] = []
    for name, value in values.items():
        for attr in aliases.get(name, (name,)):
            if hasattr(target, attr):
                setattr(target, attr, value)
                break
        else:
            missed.append(name)
    return missed


def warn_dropped(keys: Tuple[str, ...], framework: str, version: str, why: str) -> None:
    """The one warning for keys ``get_args`` dropped."""
    if keys:
        logger.warning("get_args override: %s dropped for the %s adapter (%s): %s",
                       ", ".join(repr(k) for k in keys), framework, version, why)

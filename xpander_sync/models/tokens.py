"""Token counters."""

from __future__ import annotations

from typing import Any, Optional

import attrs

from ..errors import InvalidInputError


def _check_count(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInputError(f"Tokens.{attribute.name} must be an integer (or None), not {type(value).__name__}")


def _check_total(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInputError("Tokens.total_tokens must be a non-negative integer (or None to compute it)")


@attrs.define(repr=False)
class Tokens:
    """LLM token usage.

    Args:
        completion_tokens: tokens the model produced.
        prompt_tokens: tokens sent to the model.
        cache_read_tokens: prompt tokens served from the provider's cache.
        cache_write_tokens: prompt tokens written to the provider's cache.
        total_tokens: the total as the provider counted it; when not given (``None``),
            :attr:`total_tokens` is prompt + completion (cache counters excluded).
    """

    completion_tokens: Optional[int] = attrs.field(default=0, validator=_check_count)
    prompt_tokens: Optional[int] = attrs.field(default=0, validator=_check_count)
    cache_read_tokens: Optional[int] = attrs.field(default=0, validator=_check_count)
    cache_write_tokens: Optional[int] = attrs.field(default=0, validator=_check_count)
    _total: Optional[int] = attrs.field(default=None, alias="total_tokens", validator=_check_total)

    @property
    def total_tokens(self) -> int:
        """The given total, else prompt + completion (``None`` counts as 0)."""
        if self._total is not None:
            return self._total
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def __repr__(self) -> str:
        return (
            f"Tokens(completion_tokens={self.completion_tokens!r}, prompt_tokens={self.prompt_tokens!r}, "
            f"cache_read_tokens={self.cache_read_tokens!r}, cache_write_tokens={self.cache_write_tokens!r}, "
            f"total_tokens={self.total_tokens!r})"
        )


@attrs.define
class ExecutionTokens:
    """Tokens of a worker run: ``inner`` (sub-agents) and ``worker`` (this agent).

    Args:
        inner: the sub-agents' token usage.
        worker: this agent's token usage.
    """

    inner: Tokens = attrs.field(factory=Tokens)
    worker: Tokens = attrs.field(factory=Tokens)

"""Token counters."""

from __future__ import annotations

from typing import Optional

import attrs


@attrs.define
class Tokens:
    """LLM token usage. ``total_tokens`` is always prompt + completion (cache counters excluded).

    Args:
        completion_tokens: tokens the model produced.
        prompt_tokens: tokens sent to the model.
        cache_read_tokens: prompt tokens served from the provider's cache.
        cache_write_tokens: prompt tokens written to the provider's cache.
    """

    completion_tokens: Optional[int] = 0
    prompt_tokens: Optional[int] = 0
    cache_read_tokens: Optional[int] = 0
    cache_write_tokens: Optional[int] = 0

    @property
    def total_tokens(self) -> int:
        """prompt + completion (``None`` counts as 0)."""
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


@attrs.define
class ExecutionTokens:
    """Tokens of a worker run: ``inner`` (sub-agents) and ``worker`` (this agent).

    Args:
        inner: the sub-agents' token usage.
        worker: this agent's token usage.
    """

    inner: Tokens = attrs.field(factory=Tokens)
    worker: Tokens = attrs.field(factory=Tokens)

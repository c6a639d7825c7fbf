"""``Metadata``: organization-wide settings the platform hands to agents (the default LLM headers)."""

from __future__ import annotations

from typing import Any

from .._async import async_twin
from ._base import Resource


class Metadata(Resource):
    """Organization metadata.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def default_llm_extra_headers(self) -> Any:
        """The organization's default LLM extra headers, undecoded (``GET /metadata/default_llm_extra_headers``).

        Returns:
            The decoded JSON answer (normally a dict of header name to value).

        Raises:
            ModuleException: the platform refused the call or could not be reached.
        """
        return self._transport.request("GET", "/metadata/default_llm_extra_headers").data

    adefault_llm_extra_headers = async_twin(default_llm_extra_headers)

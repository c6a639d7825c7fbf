"""What every resource shares: a configuration and the transport for it."""

from __future__ import annotations

from typing import Any, Optional, Type, TypeVar

from .._converter import structure
from ..config import Configuration
from ..transport import Transport, shared_transport

T = TypeVar("T")


class Resource:
    """Base of :class:`Agents`, :class:`Tasks` and :class:`Backend`.

    Args:
        configuration: settings; default: a :class:`Configuration` read from the environment.
            Objects built with equal configurations share one transport (one connection pool).
        transport: an explicit transport (tests inject one with a fake ``sleep``).
    """

    def __init__(self, configuration: Optional[Configuration] = None, *, transport: Optional[Transport] = None):
        if configuration is not None and not isinstance(configuration, Configuration):
            from ..errors import InvalidInputError

            raise InvalidInputError(
                f"configuration must be an xpander_sync.Configuration, got {type(configuration).__name__}"
            )
        if transport is not None:
            configuration = configuration or transport.configuration
        self.configuration: Configuration = configuration or Configuration()
        self._transport = transport or shared_transport(self.configuration)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.configuration.base_url!r})"

    def _structure(self, data: Any, cls: Type[T]) -> T:
        obj = structure(data, cls)
        if hasattr(obj, "configuration"):
            obj.configuration = self.configuration
        return obj

"""``MCPAuth``: ask the platform for a user's token to a remote MCP server (the OAuth flow's one call)."""

from __future__ import annotations

from typing import Any, Dict

from .._async import async_twin
from .._converter import unstructure
from ..errors import ResponseDecodeError
from ..models.agent import MCPServerDetails
from ._base import Resource, route


def token_body(server: MCPServerDetails) -> Dict[str, Any]:
    """The body of a token request: the server's JSON without its credentials.

    The platform holds the server's credentials; they are not sent (the official SDK posts
    ``client_secret``).

    Args:
        server: the MCP server (not modified).

    Returns:
        The JSON body, with ``api_key`` and ``client_secret`` set to ``None``.
    """
    body = unstructure(server)
    body["api_key"] = None
    body["client_secret"] = None
    return body


class MCPAuth(Resource):
    """The platform side of the MCP OAuth flow.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def get_token(
        self,
        agent_id: str,
        user_key: str,
        server: MCPServerDetails,
        *,
        execution_id: str,
        generate_login_url: bool,
    ) -> Dict[str, Any]:
        """One token request (``POST /mcp_auth/{agent_id}/{user_key}/get_token``); safe to repeat.

        Args:
            agent_id: the agent the task runs.
            user_key: the user's id, or ``<agent id>_<user id>`` for a token not shared
                across agents.
            server: the MCP server (its credentials are not sent: :func:`token_body`).
            execution_id: the task id.
            generate_login_url: ask for a login URL when no token is ready (the first poll).

        Returns:
            The answer: ``{"type": "token_ready" | "login_required" | "token_issue" |
            "not_supported", "data": {...}}``.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``user_key``.
            ResponseDecodeError: the answer is not a JSON object.
            ModuleException: the platform refused the call or could not be reached.
        """
        path = route("/mcp_auth/{agent_id}/{user_key}/get_token", agent_id=agent_id, user_key=user_key)
        answer = self._transport.request(
            "POST", path, json=token_body(server), repeatable=True,
            params={"execution_id": execution_id, "generate_login_url": generate_login_url},
        ).data
        if not isinstance(answer, dict):
            raise ResponseDecodeError("MCP token response", ["expected a JSON object @ $"])
        return answer

    aget_token = async_twin(get_token)

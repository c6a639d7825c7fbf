"""The MCP-auth emulation: the platform's OAuth broker for remote MCP servers, without a real identity provider.

* ``POST /mcp_auth/{agent_id}/{user_id}/get_token`` (body: the MCP server details) answers ``token_ready`` with
  the access token issued for that user and server, or ``login_required`` with a login URL on this backend
  (a fresh ``state``, or with ``generate_login_url=false`` the pending one). ``force_refresh=true`` forgets the
  issued token first. A server without a ``url`` answers ``not_supported``.
* ``GET /mcp_auth/login?state=...`` is the page the user's browser opens (no API key): it completes the login.
  :meth:`McpAuth.complete_login` does the same from a test, by ``state`` or by user and server.

Logins and tokens live in the :class:`~xpander_sync.local.store.Store`, so they survive a restart on the same
file. An issued token is only ever returned by ``get_token`` (``token_ready``) and :meth:`McpAuth.complete_login`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable, Optional
from urllib.parse import quote

from ._agents import AgentCatalog
from ._routing import HTTPError, Request
from .store import Store


def _flag(value: Optional[str], default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes")


class McpAuth:
    """MCP OAuth logins and tokens, per user and MCP server URL.

    Args:
        agents: The agents served (``get_token`` names one).
        store: Where logins and tokens are kept.
        base_url: Returns the backend's base URL (for the login URLs handed out).
    """

    def __init__(self, agents: AgentCatalog, store: Store, base_url: Callable[[], str]) -> None:
        self._agents = agents
        self._store = store
        self._base_url = base_url

    def complete_login(
        self,
        state: Optional[str] = None,
        *,
        user_id: Optional[str] = None,
        server_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> str:
        """Finish an MCP OAuth login (see :meth:`LocalBackend.complete_login`).

        Args:
            state: The ``state`` query value of the login URL.
            user_id: The user id (used when ``state`` is omitted).
            server_url: The MCP server URL (used when ``state`` is omitted).
            token: The access token to issue; a random one when omitted.

        Returns:
            The issued access token.

        Raises:
            ValueError: Neither ``state`` nor both ``user_id`` and ``server_url`` were given.
            KeyError: ``state`` is unknown.
        """
        if state is not None:
            login = self._store.get_mcp_login(state)
            if login is None:
                raise KeyError("unknown login state")
            user_id, server_url = login["user_id"], login["server_url"]
        if not user_id or not server_url:
            raise ValueError("pass state, or both user_id and server_url")
        issued = token or ("mcp-local-" + secrets.token_hex(16))
        self._store.set_mcp_token(user_id, server_url, issued)
        return issued

    def get_token(self, req: Request) -> tuple[int, Any]:
        """``POST /mcp_auth/{agent_id}/{user_id}/get_token``: the token, or a login URL."""
        agent_id, user_id = req.params["agent_id"], req.params["user_id"]
        self._agents.get(agent_id)
        server = req.body
        if not isinstance(server, dict):
            raise HTTPError(400, "invalid request body: the body must be the MCP server details object")
        server_url = server.get("url")
        if not isinstance(server_url, str) or not server_url:
            return 200, {
                "type": "not_supported",
                "data": {"message": "the local backend handles OAuth for remote MCP servers with a url only"},
            }
        if _flag(req.query.get("force_refresh"), False):
            self._store.delete_mcp_token(user_id, server_url)
        token = self._store.get_mcp_token(user_id, server_url)
        if token is not None:
            return 200, {"type": "token_ready", "data": {"access_token": token}}
        login = None
        if not _flag(req.query.get("generate_login_url"), True):
            login = self._store.pending_mcp_login(user_id, server_url)
        if login is None:
            login = {
                "state": secrets.token_urlsafe(16),
                "agent_id": agent_id,
                "user_id": user_id,
                "server_url": server_url,
                "server_name": server.get("name"),
                "execution_id": req.query.get("execution_id"),
                "created_at": time.time(),
            }
            self._store.add_mcp_login(login)
        return 200, {
            "type": "login_required",
            "data": {
                "url": f"{self._base_url()}/mcp_auth/login?state={quote(login['state'])}",
                "server_url": server_url,
                "server_name": login["server_name"],
            },
        }

    def login_page(self, req: Request) -> tuple[int, Any]:
        """``GET /mcp_auth/login?state=...``: the user finished the login in a browser."""
        state = req.query.get("state")
        if not state:
            raise HTTPError(400, "Missing state query parameter")
        login = self._store.get_mcp_login(state)
        if login is None:
            raise HTTPError(404, "Unknown or expired login state")
        if login["completed_at"] is None:
            self.complete_login(state)
        return 200, {
            "status": "ok",
            "detail": "Login complete. You can close this window.",
            "user_id": login["user_id"],
            "server_url": login["server_url"],
            "server_name": login["server_name"],
        }

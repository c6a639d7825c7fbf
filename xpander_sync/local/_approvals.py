"""Tool approvals and LLM routing on the local backend: what the platform decides about a task's calls.

* **Tool approvals.** An agent JSON may carry ``"_local_approvals": {"rules": [...]}``; each rule
  ``{"tool": <tool id>, "self_approve": bool, "wait_seconds": int, "decision": "approve" | "reject" |
  "pending", "decide_after_polls": int, "message": str}`` holds the calls of that tool. A held call
  (``POST /agents/{agent_id}/operations/{tool_id}``, wrapped by :meth:`Approvals.gate`) is answered
  ``{"type": "approval_required", "request_id", "wait_seconds", "self_approve", "message"}``
  without running; ``GET /agents/{agent_id}/tool-approvals/{request_id}`` answers
  ``{"request_id", "settled": false}`` until it has been polled ``decide_after_polls`` times (default
  1), then ``{"settled": true, "approved": ...}`` by the rule's ``decision`` (``pending`` never
  settles). The next call of the same tool for the same task after an approval runs (once).
  ``POST /agents/{agent_id}/tool-approvals/check`` (``{execution_id, operation_id, tool_name,
  payload}``) answers ``approval_required`` when a rule names the operation or the tool, else
  ``{"type": "allowed"}``. :meth:`Approvals.decide` settles a request from a test.
* **Custom LLM endpoint.** ``POST /agents/{agent_id}/custom-llm-endpoint/{task_id}`` answers
  ``{"provider": <the agent's provider>, "token": "local-llm-<task id>"}``: with a model mounted
  on the LLM proxy, a task whose ``payload_extension`` has ``llm_custom_provider`` runs its model
  there (the agent's ``"_local_custom_llm": false`` answers 404 instead).
* **LLM gateway route.** ``POST /agents/{agent_id}/llm-gateway-route/{task_id}`` answers
  ``{"base_url": <the LLM proxy of the agent's provider>, "token": "local-gateway-<task id>"}`` for an
  agent whose JSON has ``"_local_llm_gateway": true``, else 404.

Requests are kept in memory (a restart forgets them), at most :data:`MAX_REQUESTS` of them: past
that, the oldest requests whose settled answer was already polled go first, then the oldest. An
approval's "let the next call through" is dropped once that call ran. A rule whose
``decide_after_polls`` is not a whole number answers 500 naming the field. Imports layers 0-1 only.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Callable, Optional

from ._agents import AgentCatalog
from ._routing import HTTPError, Request

Route = Callable[[Request], "tuple[int, Any]"]

#: The most approval requests (and pending grants) kept; the oldest are dropped past it.
MAX_REQUESTS = 1000


def _decide_after(rule: dict[str, Any]) -> int:
    value = rule.get("decide_after_polls")
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HTTPError(500, f"_local_approvals rule for tool {rule.get('tool')!r}: decide_after_polls must be a "
                             f"whole number of polls, got {str(value)[:50]!r}")
    return max(1, value)


def _rules(agent: dict[str, Any]) -> list[dict[str, Any]]:
    config = agent.get("_local_approvals")
    rules = config.get("rules") if isinstance(config, dict) else None
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _rule_for(agent: dict[str, Any], *names: Any) -> Optional[dict[str, Any]]:
    wanted = {n for n in names if isinstance(n, str) and n}
    return next((r for r in _rules(agent) if r.get("tool") in wanted), None)


class Approvals:
    """Approval requests, the custom LLM endpoint and the LLM gateway route of the local backend.

    Args:
        agents: The agents served (their ``_local_approvals`` rules and routing flags).
        proxy_url: Returns the LLM proxy's base URL for a provider.
    """

    def __init__(self, agents: AgentCatalog, proxy_url: Callable[[str], str]) -> None:
        self._agents = agents
        self._proxy_url = proxy_url
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, Any]] = {}
        self._granted: dict[tuple[str, str, str], int] = {}  # (agent, task, tool) -> approved calls to let through

    # -- approvals -------------------------------------------------------------------------------

    def gate(self, tool_call: Route) -> Route:
        """The tool-call route, holding the calls an approval rule names (see the module docstring).

        Args:
            tool_call: The platform's tool-call route (it runs the calls let through).

        Returns:
            The wrapped route.
        """

        def route(req: Request) -> tuple[int, Any]:
            agent_id, tool_id = req.params["agent_id"], req.params["tool_id"]
            rule = _rule_for(self._agents.get(agent_id), tool_id)
            if rule is None or req.headers.get("x-preflight-check"):
                return tool_call(req)
            key = (agent_id, req.headers.get("x-execution-id") or "", tool_id)
            with self._lock:
                if self._granted.get(key, 0) > 0:
                    self._granted[key] -= 1
                    if not self._granted[key]:
                        del self._granted[key]  # used up: nothing left to keep
                    granted = True
                else:
                    granted = False
            if granted:
                return tool_call(req)
            return 200, self._hold(agent_id, key, rule)

        return route

    def _hold(self, agent_id: str, key: tuple[str, str, str], rule: dict[str, Any]) -> dict[str, Any]:
        request_id = "apr-" + secrets.token_hex(8)
        wait = rule.get("wait_seconds") if isinstance(rule.get("wait_seconds"), int) else 60
        message = rule.get("message") if isinstance(rule.get("message"), str) else (
            f"Calling {key[2]} needs an approval.")
        decide_after = _decide_after(rule)
        with self._lock:
            self._requests[request_id] = {
                "agent_id": agent_id, "key": key, "polls": 0, "settled": False, "approved": None,
                "decision": str(rule.get("decision") or "pending"), "message": message,
                "decide_after": decide_after, "consumed": False,
            }
            self._prune()
        return {"type": "approval_required", "self_approve": bool(rule.get("self_approve")),
                "request_id": request_id, "wait_seconds": wait, "message": message}

    def _prune(self) -> None:
        """Keep at most :data:`MAX_REQUESTS` requests and grants (the lock is held)."""
        excess = len(self._requests) - MAX_REQUESTS
        if excess > 0:
            consumed = [rid for rid, r in self._requests.items() if r["consumed"]][:excess]
            for rid in consumed:
                del self._requests[rid]
            while len(self._requests) > MAX_REQUESTS:
                del self._requests[next(iter(self._requests))]
        while len(self._granted) > MAX_REQUESTS:
            del self._granted[next(iter(self._granted))]

    def decide(self, request_id: str, approved: bool, message: Optional[str] = None) -> None:
        """Settle an approval request (a test's reviewer).

        Args:
            request_id: The request the held call answered with.
            approved: Let the call run (its next attempt for that task), or refuse it.
            message: The refusal's (or approval's) message.

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self._settle(self._requests[request_id], approved, message)

    def _settle(self, request: dict[str, Any], approved: bool, message: Optional[str]) -> None:
        request["settled"], request["approved"] = True, approved
        if message is not None:
            request["message"] = message
        if approved:
            self._granted[request["key"]] = self._granted.get(request["key"], 0) + 1

    def approval_get(self, req: Request) -> tuple[int, Any]:
        """``GET /agents/{agent_id}/tool-approvals/{request_id}``: the request's state (polling may settle it)."""
        with self._lock:
            request = self._requests.get(req.params["request_id"])
            if request is None or request["agent_id"] != req.params["agent_id"]:
                raise HTTPError(404, "Approval request not found")
            request["polls"] += 1
            if not request["settled"] and request["decision"] in ("approve", "reject") \
                    and request["polls"] >= request["decide_after"]:
                self._settle(request, request["decision"] == "approve", None)
            answer = {"request_id": req.params["request_id"], "settled": request["settled"]}
            if request["settled"]:
                request["consumed"] = True  # the caller has its answer: the first to go past MAX_REQUESTS
                answer["approved"] = request["approved"]
                if not request["approved"]:
                    answer["message"] = request["message"]
        return 200, answer

    def approval_check(self, req: Request) -> tuple[int, Any]:
        """``POST /agents/{agent_id}/tool-approvals/check``: hold the call when a rule names it."""
        agent_id = req.params["agent_id"]
        body = req.body if isinstance(req.body, dict) else None
        if body is None or not {"execution_id", "operation_id", "tool_name", "payload"} <= set(body):
            raise HTTPError(400, "invalid request body: needs execution_id, operation_id, tool_name and payload")
        rule = _rule_for(self._agents.get(agent_id), body.get("operation_id"), body.get("tool_name"))
        if rule is None:
            return 200, {"type": "allowed"}
        tool = str(body.get("operation_id") or body.get("tool_name"))
        return 200, self._hold(agent_id, (agent_id, str(body.get("execution_id") or ""), tool), rule)

    # -- LLM routing -----------------------------------------------------------------------------

    def custom_llm_endpoint(self, req: Request) -> tuple[int, Any]:
        """``POST /agents/{agent_id}/custom-llm-endpoint/{task_id}``: the agent's provider and a local token."""
        agent = self._agents.get(req.params["agent_id"])
        if agent.get("_local_custom_llm") is False:
            raise HTTPError(404, "No custom LLM endpoint for this task")
        provider = str(agent.get("model_provider") or "openai").strip().lower() or "openai"
        return 200, {"provider": provider, "token": f"local-llm-{req.params['task_id']}"}

    def llm_gateway_route(self, req: Request) -> tuple[int, Any]:
        """``POST /agents/{agent_id}/llm-gateway-route/{task_id}``: the LLM proxy as the gateway, or 404."""
        agent = self._agents.get(req.params["agent_id"])
        if agent.get("_local_llm_gateway") is not True:
            raise HTTPError(404, "No LLM gateway route for this task")
        provider = str(agent.get("model_provider") or "openai")
        return 200, {"base_url": self._proxy_url(provider), "token": f"local-gateway-{req.params['task_id']}"}

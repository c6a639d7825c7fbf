"""The official SDK (``xpander-sdk``) side of the benchmarks.

This file is two things:

* imported by the runner (our venv): :func:`run_official` starts this same file as a script with
  the python of ``$XPANDER_SDK_VENV`` and reads one JSON object from its stdout;
* run as a script in that venv (standard library + ``xpander_sdk`` only, never our package): the
  driver. It measures the same calls against the same loopback server and agent as our side, and
  puts phase markers into the server's log so the runner can count the HTTP calls of each phase.

What the official SDK needs that ours does not, and that the driver therefore does:

* ``get_args`` without a task crashes (``AttributeError`` on ``task.instructions_override``), so
  every timed official ``get_args`` gets a task (the one the local backend created);
* the dict it returns holds the private key ``_xpander_hidden_mcp_toolkits``, so
  ``agno.agent.Agent(**args)`` raises ``TypeError``; the driver checks that, then builds the agent
  from a copy without that key;
* "cold" means its two process-wide caches were invalidated (``agent_payload_cache``,
  ``backend_config_cache``); its warm agent cache lives 5 s.

Its logs (loguru) are set to ERROR through ``LOGURU_LEVEL`` so that writing log lines does not
count against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

HIDDEN_KEY = "_xpander_hidden_mcp_toolkits"


# -- runner side (our venv) -----------------------------------------------------------------------


def run_official(ctx: Any, phases: Sequence[str], runs: int) -> Dict[str, Any]:
    """Run the driver for ``phases`` and return its JSON (``{"error": ...}`` when it failed)."""
    from _common import AGENT_ID, API_KEY, DUMMY_OPENAI_KEY, ORG_ID

    config = {
        "url": ctx.server.url, "api_key": API_KEY, "org": ORG_ID, "agent_id": AGENT_ID,
        "task": ctx.fixtures.task, "phases": list(phases), "runs": runs, "concurrency": ctx.concurrency,
        "concurrent_rounds": ctx.concurrent_rounds,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XPANDER_", "PYTHON"))}
    env.update({
        "XPANDER_BASE_URL": ctx.server.url, "XPANDER_API_KEY": API_KEY, "XPANDER_ORGANIZATION_ID": ORG_ID,
        "OPENAI_API_KEY": DUMMY_OPENAI_KEY, "LOGURU_LEVEL": "ERROR",
    })
    proc = subprocess.run([ctx.sdk_python, os.path.abspath(__file__), json.dumps(config)],
                          capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr[-3000:]
        return {"error": f"the official SDK driver failed (exit {proc.returncode}): {tail}"}
    result: Dict[str, Any] = json.loads(lines[-1])
    return result


# -- driver side (the official SDK's venv) --------------------------------------------------------


def _stats(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    rank = max(1, -(-95 * n // 100))
    return {"median": round(median, 4), "p95": round(ordered[rank - 1], 4), "n": n}


class _Driver:
    def __init__(self, config: Dict[str, Any]):
        from xpander_sdk import Backend, Configuration, Task

        self.config = config
        self.url = config["url"]
        self.agent_id = config["agent_id"]
        self.runs = int(config["runs"])
        self.configuration = Configuration(api_key=config["api_key"], base_url=self.url,
                                           organization_id=config["org"])
        self.backend = Backend(configuration=self.configuration)
        self.task = Task(**config["task"], configuration=self.configuration)
        self.out: Dict[str, Any] = {}

    # helpers

    def mark(self, name: str) -> None:
        request = urllib.request.Request(self.url + "/__bench__/mark/" + name,
                                         headers={"x-api-key": self.config["api_key"]})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    @staticmethod
    def clear_caches() -> None:
        from xpander_sdk.utils.cache import agent_payload_cache, backend_config_cache

        agent_payload_cache.invalidate()
        backend_config_cache.invalidate()

    def timed(self, fn: Any, runs: int, *, before: Any = None, warmup: int = 5) -> Dict[str, float]:
        for _ in range(warmup):
            if before is not None:
                before()
            fn()
        samples = []
        for _ in range(runs):
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        return _stats(samples)

    def get_args(self) -> Dict[str, Any]:
        return self.backend.get_args(agent_id=self.agent_id, task=self.task)

    # phases

    def phase_get_args(self) -> None:
        out = self.out
        # correctness notes first (also warms imports: agno, the model classes)
        args = self.get_args()
        out["hidden_key_returned"] = HIDDEN_KEY in args
        from agno.agent import Agent as AgnoAgent

        try:
            AgnoAgent(**args)
            out["agent_from_args"] = "ok"
        except TypeError as exc:
            out["agent_from_args"] = f"TypeError: {str(exc)[:120]}"
        clean = {k: v for k, v in args.items() if k != HIDDEN_KEY}
        AgnoAgent(**clean)
        out["agent_from_clean_copy"] = "ok"
        # calls per get_args: cold with task, warm with task, cold without a task
        self.clear_caches()
        self.mark("official-cold-task")
        self.get_args()
        self.mark("official-warm-task")
        self.get_args()
        self.clear_caches()
        self.mark("official-cold-notask")
        try:
            self.backend.get_args(agent_id=self.agent_id)
            out["no_task"] = "ok"
        except Exception as exc:  # the documented crash
            out["no_task"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        self.mark("official-end")
        # timings (interleaving is not possible across processes; each block is back to back)
        out["get_args_warm_task"] = self.timed(self.get_args, self.runs)
        out["get_args_cold_task"] = self.timed(self.get_args, max(20, self.runs // 3), before=self.clear_caches)

    def phase_report(self) -> None:
        def report() -> None:
            self.backend.report_external_task(
                agent_id=self.agent_id, input="q", result="a",
                tokens={"prompt_tokens": 3, "completion_tokens": 4}, duration=1.2, used_tools=["t"],
            )

        self.mark("official-report")
        report()
        self.mark("official-report-end")
        out = self.timed(report, self.runs, warmup=20)
        self.out["report"] = out

    def phase_concurrent(self) -> None:
        import asyncio

        n = int(self.config["concurrency"])
        rounds = int(self.config["concurrent_rounds"])

        async def gather_args() -> None:
            await asyncio.gather(*(self.backend.aget_args(agent_id=self.agent_id, task=self.task)
                                   for _ in range(n)))

        async def gather_reports() -> None:
            await asyncio.gather(*(self.backend.areport_external_task(
                agent_id=self.agent_id, input="q", result="a",
                tokens={"prompt_tokens": 3, "completion_tokens": 4}, duration=1.2, used_tools=["t"],
            ) for _ in range(n)))

        def measure(coro_fn: Any, cold: bool, marks: Optional[Sequence[str]] = None) -> Dict[str, float]:
            samples = []
            for i in range(rounds):
                if cold:
                    self.clear_caches()
                if marks and i == 0:
                    self.mark(marks[0])
                start = time.perf_counter()
                asyncio.run(coro_fn())
                samples.append((time.perf_counter() - start) * 1000)
                if marks and i == 0:
                    self.mark(marks[1])
            return _stats(samples)

        # imports and the async DB class, outside the timings
        asyncio.run(self.backend.aget_args(agent_id=self.agent_id, task=self.task))
        self.out["concurrent_args_cold"] = measure(
            gather_args, cold=True, marks=("official-concurrent-cold", "official-concurrent-end"))
        self.out["concurrent_args_warm"] = measure(gather_args, cold=False)
        self.out["concurrent_reports"] = measure(gather_reports, cold=False)


def _driver_main(raw: str) -> int:
    config = json.loads(raw)
    started = time.perf_counter()
    driver = _Driver(config)
    import xpander_sdk

    driver.out["version"] = getattr(xpander_sdk, "__version__", "unknown")
    for phase in config["phases"]:
        getattr(driver, f"phase_{phase}")()
    driver.out["driver_seconds"] = round(time.perf_counter() - started, 1)
    sys.stdout.write(json.dumps(driver.out) + "\n")
    sys.stdout.flush()
    return 0


def parse(result: Optional[Dict[str, Any]], key: str) -> Optional[Any]:
    """``Stats`` for ``result[key]`` (runner side), or ``None``."""
    if not result or key not in result or not isinstance(result[key], dict):
        return None
    from _common import Stats

    return Stats.from_dict(result[key])


if __name__ == "__main__":
    sys.exit(_driver_main(sys.argv[1]))

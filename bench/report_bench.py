"""report_external_task versus a raw ``requests.Session`` POST of the same body, in one run.

Target (issue 2): at most 1.5x the raw call. Prints a figure; asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import BenchServer

from xpander_sync import Backend, Configuration
from xpander_sync.backend import build_report_body

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "report_response.json"


def summary(samples):
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def interleaved(a, b, runs: int):
    """Time ``a`` and ``b`` alternately, so that machine noise hits both alike."""
    sa, sb = [], []
    for _ in range(runs):
        for fn, samples in ((a, sa), (b, sb)):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
    return summary(sa), summary(sb)


def main(runs: int = 500) -> dict:
    answer = json.loads(FIXTURE.read_text())
    route = ("POST", "/agent-execution/agt-bench/report_task")
    with BenchServer({route: answer}) as server:
        backend = Backend(Configuration(api_key="bench-key", base_url=server.url))
        session = requests.Session()
        url = server.url + route[1]
        headers = {"x-api-key": "bench-key", "Content-Type": "application/json"}

        def ours():
            backend.report_external_task(
                agent_id="agt-bench", input="q", result="a", tokens={"prompt_tokens": 3, "completion_tokens": 4},
                duration=1.2, used_tools=["t"],
            )

        def raw():
            body = build_report_body(id=None, input="q", llm_response=None,
                                     tokens={"prompt_tokens": 3, "completion_tokens": 4},
                                     is_success=True, result="a", duration=1.2, used_tools=["t"])
            response = session.post(url, data=json.dumps(body), headers=headers)
            response.raise_for_status()
            response.json()

        for _ in range(50):  # warm both connection pools
            ours()
            raw()
        (our_med, our_p95), (raw_med, raw_p95) = interleaved(ours, raw, runs)
    result = {
        "report_external_task_ms": {"median": round(our_med, 3), "p95": round(our_p95, 3)},
        "raw_session_post_ms": {"median": round(raw_med, 3), "p95": round(raw_p95, 3)},
        "ratio_median": round(our_med / raw_med, 2),
        "target_ratio": 1.5,
    }
    print(f"report_external_task vs raw requests.Session POST (loopback, {runs} runs)")
    print(f"  ours: median {our_med:.3f} ms, p95 {our_p95:.3f} ms")
    print(f"  raw:  median {raw_med:.3f} ms, p95 {raw_p95:.3f} ms")
    print(f"  ratio (median): {our_med / raw_med:.2f}x  (target <= 1.5x)")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)

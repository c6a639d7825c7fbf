"""``report_external_task`` versus a raw ``requests.Session`` POST of the same body, in one run.

The floor builds the same 8-key body by hand (a new uuid4 each time), POSTs it with a pooled
``requests.Session`` and decodes the JSON answer; ours also validates the arguments and
structures the answer into a ``Task``. Calls alternate, so machine noise hits both alike.

Target (issues 2 and 7): at most 1.5x the raw POST. Prints figures; asserts nothing.

Background mode (issue 16) writes each report to the outbox (SQLite, ``synchronous=FULL``)
before the call returns: its row is the cost of that write-ahead, per report, next to the same
raw POST (the delivery then happens on the background thread).
Run alone: ``python bench/report_bench.py [RUNS]``.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Callable, List, Optional, Sequence

import requests
from _common import AGENT_ID, API_KEY, Context, Row, interleaved, our_configuration, run_alone
from _official import parse

TARGET_RATIO = 1.5
ROUTE = f"/agent-execution/{AGENT_ID}/report_task"
TOKENS = {"prompt_tokens": 3, "completion_tokens": 4}


def measure(ctx: Context) -> List[Row]:
    from xpander_sync import Backend

    backend = Backend(our_configuration(ctx.server.url))
    session = requests.Session()
    url = ctx.server.url + ROUTE
    headers = {"x-api-key": API_KEY, "Content-Type": "application/json", "Accept": "application/json"}

    def ours() -> None:
        backend.report_external_task(agent_id=AGENT_ID, input="q", result="a", tokens=TOKENS, duration=1.2,
                                     used_tools=["t"])

    def raw() -> None:
        body = {
            "id": str(uuid.uuid4()), "input": "q", "llm_response": None,
            "tokens": {"completion_tokens": 4, "prompt_tokens": 3, "cache_read_tokens": 0, "cache_write_tokens": 0},
            "is_success": True, "result": "a", "duration": 1.2, "used_tools": ["t"],
        }
        response = session.post(url, data=json.dumps(body), headers=headers, timeout=(10, 60))
        response.raise_for_status()
        response.json()

    ctx.server.mark("ours-report")
    ours()
    ctx.server.mark("ours-report-end")
    our_calls = len(ctx.server.calls_between("ours-report", "ours-report-end"))
    stats = interleaved({"ours": ours, "raw": raw}, ctx.runs, warmup=50)
    session.close()
    official = ctx.official(["report"], ctx.runs)
    note = f"{ctx.runs} runs"
    if official:
        off_calls = len(ctx.server.calls_between("official-report", "official-report-end"))
        ctx.notes.append(f"report_external_task: {our_calls} HTTP call (ours), {off_calls} (official).")
    ratio = stats["ours"].median / stats["raw"].median
    return [
        Row("report_external_task", stats["ours"], floor=stats["raw"], floor_label="raw POST",
            official=parse(official, "report"), target=f"<= {TARGET_RATIO:g}x floor",
            met=ratio <= TARGET_RATIO, note=note),
        _background_row(ctx, raw),
    ]


def _background_row(ctx: Context, raw: Callable[[], None]) -> Row:
    """The call in background mode: the report is on disk (write-ahead) before the call returns."""
    import tempfile

    from xpander_sync import Backend

    with tempfile.TemporaryDirectory() as folder:
        backend = Backend(our_configuration(ctx.server.url, outbox=f"{folder}/outbox.sqlite3",
                                            background_reports=True))

        def background() -> None:
            backend.report_external_task(agent_id=AGENT_ID, input="q", result="a", tokens=TOKENS, duration=1.2,
                                         used_tools=["t"])

        stats = interleaved({"ours": background, "raw": raw}, ctx.runs, warmup=20)
        backend.flush(timeout=60)
    return Row("report_external_task, background mode (write-ahead to the outbox)", stats["ours"],
               floor=stats["raw"], floor_label="raw POST", note=f"{ctx.runs} runs; delivered by the thread")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(measure, argv, default_runs=500)


if __name__ == "__main__":
    sys.exit(main())

"""``import xpander_sync`` versus ``import requests, attrs, cattrs`` (its three dependencies), in new processes.

Each figure is the wall time and the peak RSS of a whole ``python -c "..."`` process, so the
interpreter's own start-up is inside both numbers (``python -c pass`` is shown for scale). The
runs are interleaved, in a temporary directory (so the checkout is not on ``sys.path``), with
byte-code caches written by a warm-up run first (an installed package has them). With
``XPANDER_SDK_VENV`` set, ``import xpander_sdk`` runs with that venv's python the same way.

Also: ``import xpander_sync`` + the first ``get_args`` of a process (which imports agno, openai,
sqlalchemy and psycopg on first use) against the loopback server, since that is what a cron job or
a notebook pays once.

Target (issue 7): ``import xpander_sync`` at most 1.2x the floor. Run alone:
``python bench/import_bench.py [RUNS]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from _common import AGENT_ID, API_KEY, DUMMY_OPENAI_KEY, ORG_ID, Context, Row, Stats, run_alone

FLOOR = "import requests, attrs, cattrs"
OURS = "import xpander_sync"
#: What users write; equal to OURS while ``__init__`` imports eagerly, and the honest figure if it
#: ever turns lazy (PEP 562), since a lazy ``import xpander_sync`` alone would prove nothing.
OURS_BACKEND = "from xpander_sync import Backend, Configuration"
OFFICIAL = "import xpander_sdk"
FIRST_GET_ARGS = (
    "import xpander_sync as x, sys\n"
    "b = x.Backend(x.Configuration(api_key=sys.argv[1], base_url=sys.argv[2], organization_id=sys.argv[3]))\n"
    "b.get_args(agent_id=sys.argv[4])\n"
)
OFFICIAL_FIRST_GET_ARGS = (
    "import sys, json, os\n"
    "from xpander_sdk import Backend, Configuration, Task\n"
    "cfg = Configuration(api_key=sys.argv[1], base_url=sys.argv[2], organization_id=sys.argv[3])\n"
    "task = Task(**json.loads(os.environ['BENCH_TASK_JSON']), configuration=cfg)\n"
    "Backend(configuration=cfg).get_args(agent_id=sys.argv[4], task=task)\n"
)


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XPANDER_", "PYTHON"))}
    env["OPENAI_API_KEY"] = DUMMY_OPENAI_KEY
    return env


#: Appended to every measured program: its peak RSS (VmHWM) on stdout. ``wait4``'s ``ru_maxrss``
#: cannot be used: Linux keeps the parent's high-water mark across ``fork`` + ``exec``, so every
#: child of this (large) process would report at least the parent's RSS.
_REPORT_HWM = (
    "\ntry:\n"
    "    print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    "except OSError:\n"
    "    pass\n"
)


def run_once(python: str, code: str, cwd: str, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None
             ) -> Tuple[float, float]:
    """``(wall ms, peak RSS MiB)`` of one ``python -c code`` process."""
    start = time.perf_counter()
    proc = subprocess.run([python, "-c", code + _REPORT_HWM, *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{python} -c {code!r} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    lines = proc.stdout.split()
    peak_kib = float(lines[-1]) if lines and lines[-1].isdigit() else float("nan")
    return wall, peak_kib / 1024


def measure_processes(cases: Dict[str, Tuple[str, str, Sequence[str], Optional[Dict[str, str]]]], runs: int
                      ) -> Dict[str, Tuple[Stats, Stats]]:
    """Interleaved runs of each ``name -> (python, code, args, env)``: ``{name: (wall ms, RSS MB)}``."""
    walls: Dict[str, List[float]] = {name: [] for name in cases}
    rss: Dict[str, List[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as cwd:
        for python, code, args, env in cases.values():  # warm-up: byte-code caches, page cache
            for _ in range(2):
                run_once(python, code, cwd, args, env)
        for _ in range(runs):
            for name, (python, code, args, env) in cases.items():
                wall, peak = run_once(python, code, cwd, args, env)
                walls[name].append(wall)
                rss[name].append(peak)
    return {name: (Stats(walls[name]), Stats(rss[name])) for name in cases}


def measure(ctx: Context) -> List[Row]:
    runs = ctx.import_runs
    python = sys.executable
    cases: Dict[str, Tuple[str, str, Sequence[str], Optional[Dict[str, str]]]] = {
        "bare": (python, "pass", (), None),
        "floor": (python, FLOOR, (), None),
        "ours": (python, OURS, (), None),
        "ours_backend": (python, OURS_BACKEND, (), None),
    }
    if ctx.sdk_python:
        cases["official"] = (ctx.sdk_python, OFFICIAL, (), None)
    results = measure_processes(cases, runs)
    first_runs = max(3, runs // 5)
    first_cases: Dict[str, Tuple[str, str, Sequence[str], Optional[Dict[str, str]]]] = {
        "ours": (python, FIRST_GET_ARGS, (API_KEY, ctx.server.url, ORG_ID, AGENT_ID), None),
    }
    if ctx.sdk_python:
        import json

        env = _env()
        env["BENCH_TASK_JSON"] = json.dumps(ctx.fixtures.task)
        first_cases["official"] = (ctx.sdk_python, OFFICIAL_FIRST_GET_ARGS,
                                   (API_KEY, ctx.server.url, ORG_ID, AGENT_ID), env)
    first = measure_processes(first_cases, first_runs)

    bare_wall = results["bare"][0]
    floor_wall, floor_rss = results["floor"]
    ours_wall, ours_rss = results["ours"]
    backend_wall = results["ours_backend"][0]
    official = results.get("official")
    ratio = ours_wall.median / floor_wall.median
    delta_ours = ours_wall.median - bare_wall.median
    delta_floor = floor_wall.median - bare_wall.median
    ctx.notes.append(
        f"import: `python -c pass` takes {bare_wall.median:.0f} ms (median, {runs} runs); net of it, "
        f"import xpander_sync {delta_ours:.0f} ms vs the three deps {delta_floor:.0f} ms "
        f"({delta_ours / delta_floor:.2f}x)."
    )
    rows = [
        Row("import xpander_sync: process wall time", ours_wall, floor=floor_wall, floor_label=FLOOR,
            official=official[0] if official else None, official_note=OFFICIAL if official else "",
            target="<= 1.2x floor", met=ratio <= 1.2, note=f"{runs} runs each"),
        Row(OURS_BACKEND + ": process wall time", backend_wall, floor=floor_wall, floor_label=FLOOR,
            target="<= 1.2x floor", met=backend_wall.median / floor_wall.median <= 1.2),
        Row("import xpander_sync: peak RSS", ours_rss, floor=floor_rss, floor_label=FLOOR, unit="MiB",
            official=official[1] if official else None),
        Row("new process: import + first get_args (agno loaded on use)", first["ours"][0], unit="ms",
            official=first["official"][0] if "official" in first else None,
            official_note="with a task" if "official" in first else "", note=f"{first_runs} runs"),
        Row("new process: import + first get_args, peak RSS", first["ours"][1], unit="MiB",
            official=first["official"][1] if "official" in first else None),
    ]
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    def measure_alone(ctx: Context) -> List[Row]:
        ctx.import_runs = ctx.runs
        return measure(ctx)

    return run_alone(measure_alone, argv, default_runs=30)


if __name__ == "__main__":
    sys.exit(main())

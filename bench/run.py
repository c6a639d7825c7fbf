"""Run every benchmark in this folder in one process and print one table (``tox -e bench``).

How it works:

1. It starts the package's local backend (:class:`xpander_sync.local.LocalBackend`) on loopback,
   creates a task there and records the payloads of one agent (``agt-openai``: an OpenAI model, two
   xpander tools, session storage), its organization headers, its DB address and a report answer.
2. By default those payloads are then served by ``bench/_server.py``, a minimal keep-alive server
   that answers from memory: the local backend does routing, SQLite and deep copies per request,
   which would add the same server time to every figure and hide the client's share of it.
   ``--server local`` runs everything against the local backend instead.
3. Every ``*_bench.py`` module gets the same context (server, run counts, the official SDK's
   python) and returns its rows; with ``XPANDER_SDK_VENV`` pointing at a venv that has
   ``xpander-sdk[agno]``, each bench also runs the official SDK (``bench/_official.py``) against
   the same server and agent, and the table shows it side by side.

Figures, not tests: nothing fails when a target is missed; the last lines say which were met.

Usage: ``python bench/run.py [--quick] [--footprint] [--server minimal|local] [--json PATH]
[--markdown] [--only import,get_args,...]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    Context,
    Row,
    dump_json,
    loadavg,
    record_fixtures,
    render_table,
    sdk_python_from_env,
    start_local_backend,
    start_server,
)

#: Run order: the subprocess import figures first (nothing else running), the footprint last.
ORDER = ("import", "get_args", "report", "concurrency", "scale", "footprint")


def bench_modules(only: Optional[Sequence[str]]) -> List[str]:
    names = [p.stem[: -len("_bench")] for p in HERE.glob("*_bench.py")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    if only:
        unknown = set(only) - set(names)
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        names = [n for n in names if n in only]
    return names


def versions(sdk_python: Optional[str]) -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, str] = {"python": platform.python_version()}
    for dist in ("xpander-sync", "requests", "urllib3", "attrs", "cattrs", "agno"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    if sdk_python:
        import subprocess

        code = ("import importlib.metadata as m, platform; "
                "print(m.version('xpander-sdk'), m.version('agno'), m.version('httpx'), platform.python_version())")
        got = subprocess.run([sdk_python, "-c", code], capture_output=True, text=True).stdout.split()
        if len(got) == 4:
            out["official"] = f"xpander-sdk {got[0]} (agno {got[1]}, httpx {got[2]}, Python {got[3]})"
    return out


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run, noisier figures)")
    parser.add_argument("--runs", type=int, help="timed calls per in-process figure (default 300)")
    parser.add_argument("--import-runs", type=int, help="processes per import figure (default 20)")
    parser.add_argument("--rounds", type=int, help="gather rounds per concurrency figure, ours (default 15)")
    parser.add_argument("--official-rounds", type=int, help="gather rounds, official SDK (default 3)")
    parser.add_argument("--concurrency", type=int, default=100, help="calls per gather (default 100)")
    parser.add_argument("--footprint", action="store_true",
                        help="install into fresh venvs to measure the footprint (minutes, needs PyPI)")
    parser.add_argument("--server", choices=("minimal", "local"), default="minimal",
                        help="serve the recorded payloads from bench/_server.py (default) or the local backend")
    parser.add_argument("--no-official", action="store_true", help="ignore XPANDER_SDK_VENV")
    parser.add_argument("--only", help="comma-separated benchmarks to run (import,get_args,report,...)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: print the table of a --json file")
    return parser.parse_args(argv)


def render_saved(path: str, markdown: bool) -> int:
    data = json.loads(Path(path).read_text())
    print(render_table([Row.from_dict(r) for r in data["rows"]], markdown=markdown))
    print()
    for note in data.get("notes", []):
        print(f"- {note}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_saved(args.render, args.markdown)
    quick = args.quick
    sdk_python = None if args.no_official else sdk_python_from_env()
    started = time.perf_counter()
    load_before = loadavg()

    local = start_local_backend()
    fixtures = record_fixtures(local)
    if args.server == "local":
        server = start_server("local", local=local)
    else:
        local.stop()
        server = start_server("minimal", fixtures)
    ctx = Context(
        server, fixtures,
        runs=args.runs or (100 if quick else 300),
        import_runs=args.import_runs or (6 if quick else 20),
        concurrency=args.concurrency,
        rounds=args.rounds or (5 if quick else 15),
        official_rounds=args.official_rounds or (2 if quick else 3),
        sdk_python=sdk_python, footprint=args.footprint, quick=quick,
    )
    info = versions(sdk_python)
    print(f"xpander-sync benchmarks: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {info['python']}; server: {args.server} on {server.url}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("python", "official")))
    print("official SDK: " + (info.get("official") or "not run (set XPANDER_SDK_VENV to a venv with "
                                                       "xpander-sdk[agno])"))
    sys.stdout.flush()

    rows: List[Row] = []
    timings: Dict[str, float] = {}
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    try:
        for name in bench_modules(only):
            module = importlib.import_module(f"{name}_bench")
            t0 = time.perf_counter()
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.extend(module.measure(ctx))
            timings[name] = round(time.perf_counter() - t0, 1)
    finally:
        server.stop()

    print()
    print(render_table(rows, markdown=args.markdown))
    print()
    for note in ctx.notes:
        print(f"- {note}")
    met = [r for r in rows if r.met is True]
    missed = [r for r in rows if r.met is False]
    print()
    print(f"targets met: {len(met)}" + (f" ({'; '.join(r.figure for r in met)})" if met else ""))
    print(f"targets missed: {len(missed)}" + (f" ({'; '.join(r.figure for r in missed)})" if missed else ""))
    elapsed = time.perf_counter() - started
    print(f"load average before/after: {load_before} -> {loadavg()}; took {elapsed:.0f} s "
          f"({', '.join(f'{k} {v:g} s' for k, v in timings.items())})")
    if args.json:
        dump_json(args.json, {
            "versions": info, "server": args.server, "cores": os.cpu_count(), "platform": platform.platform(),
            "loadavg": [load_before, loadavg()], "seconds": round(elapsed, 1), "timings": timings,
            "rows": [r.as_dict() for r in rows], "notes": ctx.notes,
            "runs": {"runs": ctx.runs, "import_runs": ctx.import_runs, "rounds": ctx.rounds,
                     "official_rounds": ctx.concurrent_rounds, "concurrency": ctx.concurrency},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())

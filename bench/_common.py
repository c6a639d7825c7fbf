"""Shared pieces of the benchmarks: statistics, interleaved timing, the servers, the result table.

Every ``*_bench.py`` module exposes ``measure(ctx) -> list[Row]`` (what ``run.py`` calls, with one
shared :class:`Context`) and ``main(argv)`` (to run it alone). Nothing here asserts a time: the
figures are printed next to their targets, and ``run.py`` says which targets are met.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

try:  # the installed package (tox installs it; /work/venv has it in editable mode)
    import xpander_sync  # noqa: F401
except ImportError:  # pragma: no cover - running from a bare checkout
    sys.path.insert(0, str(REPO))

#: The agent every benchmark resolves: an OpenAI agent with two xpander tools and session storage,
#: so a cold get_args needs the three GETs of the reference (agent, org headers, DB address).
AGENT_ID = "agt-openai"
API_KEY = "bench-key"
ORG_ID = "local-org"
#: A dummy key so both SDKs build their OpenAI model without touching the network.
DUMMY_OPENAI_KEY = "sk-bench-not-a-real-key"
MARK_PREFIX = "/__bench__/mark/"


# -- statistics -------------------------------------------------------------------------------


class Stats:
    """Median and p95 (nearest rank) of samples in milliseconds (or any unit)."""

    __slots__ = ("median", "n", "p95")

    def __init__(self, samples: Sequence[float]):
        ordered = sorted(samples)
        self.n = len(ordered)
        self.median = statistics.median(ordered)
        rank = max(1, -(-95 * self.n // 100))  # ceil(0.95 n), 1-based
        self.p95 = ordered[rank - 1]

    def as_dict(self) -> Dict[str, float]:
        return {"median": round(self.median, 4), "p95": round(self.p95, 4), "n": self.n}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Stats:
        stats = cls.__new__(cls)
        stats.median, stats.p95, stats.n = float(data["median"]), float(data["p95"]), int(data["n"])
        return stats


def timed_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def interleaved(fns: Dict[str, Callable[[], Any]], runs: int, *, warmup: int = 20,
                before_each: Optional[Callable[[], Any]] = None) -> Dict[str, Stats]:
    """Time every function ``runs`` times, alternating between them, so machine noise hits all alike.

    ``before_each`` (e.g. clearing caches) runs before every timed call, outside the timing.
    """
    for _ in range(warmup):
        for fn in fns.values():
            if before_each is not None:
                before_each()
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    gc.collect()
    for _ in range(runs):
        for name, fn in fns.items():
            if before_each is not None:
                before_each()
            samples[name].append(timed_ms(fn))
    return {name: Stats(values) for name, values in samples.items()}


# -- the result table -------------------------------------------------------------------------


class Row:
    """One line of the table.

    Args:
        figure: what was measured.
        ours: our figure.
        floor: the raw reference it is compared with (``None``: no HTTP to compare with).
        floor_label: what the raw reference is.
        official: the official SDK's figure, when it was run.
        unit: ``ms``, ``s``, ``MB``, ``pkgs``, ``calls``...
        target: the target in words (``"<= 1.2x floor"``).
        met: whether the target is met (``None``: no target, or not measured).
        note: one short remark.
    """

    def __init__(self, figure: str, ours: Optional[Stats], *, floor: Optional[Stats] = None,
                 floor_label: str = "", official: Optional[Stats] = None, unit: str = "ms",
                 target: str = "", met: Optional[bool] = None, note: str = "", official_note: str = ""):
        self.figure = figure
        self.ours = ours
        self.floor = floor
        self.floor_label = floor_label
        self.official = official
        self.unit = unit
        self.target = target
        self.met = met
        self.note = note
        self.official_note = official_note

    @property
    def ratio_to_floor(self) -> Optional[float]:
        if self.ours is None or self.floor is None or not self.floor.median:
            return None
        return self.ours.median / self.floor.median

    @property
    def official_over_ours(self) -> Optional[float]:
        if self.ours is None or self.official is None or not self.ours.median:
            return None
        return self.official.median / self.ours.median

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Row:
        def stats(key: str) -> Optional[Stats]:
            return Stats.from_dict(data[key]) if data.get(key) else None

        return cls(data["figure"], stats("ours"), floor=stats("floor"), floor_label=data.get("floor_label", ""),
                   official=stats("official"), unit=data.get("unit", "ms"), target=data.get("target", ""),
                   met=data.get("met"), note=data.get("note", ""), official_note=data.get("official_note", ""))

    def as_dict(self) -> Dict[str, Any]:
        return {
            "figure": self.figure, "unit": self.unit,
            "ours": self.ours.as_dict() if self.ours else None,
            "floor": self.floor.as_dict() if self.floor else None, "floor_label": self.floor_label,
            "ratio_to_floor": _round(self.ratio_to_floor),
            "official": self.official.as_dict() if self.official else None,
            "official_over_ours": _round(self.official_over_ours),
            "target": self.target, "met": self.met, "note": self.note, "official_note": self.official_note,
        }


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def fmt(stats: Optional[Stats], unit: str) -> str:
    if stats is None:
        return "-"
    if unit in ("calls", "pkgs"):
        return f"{stats.median:g}" if stats.median == stats.p95 else f"{stats.median:g} / {stats.p95:g}"
    if unit in ("MB", "MiB"):
        return f"{stats.median:.1f}"
    digits = 3 if stats.median < 10 else 1
    return f"{stats.median:.{digits}f} / {stats.p95:.{digits}f}"


def render_table(rows: Iterable[Row], *, markdown: bool = False) -> str:
    """The one table: median / p95 of ours, the raw floor, the official SDK, ratios, target, verdict."""
    header = ["figure", "unit", "xpander-sync (med / p95)", "raw floor (med / p95)", "ours / floor",
              "official SDK (med / p95)", "official / ours", "target", "met"]
    lines: List[List[str]] = []
    for row in rows:
        ratio = row.ratio_to_floor
        off = row.official_over_ours
        verdict = {True: "yes", False: "NO", None: "-"}[row.met]
        lines.append([
            row.figure + (f" [{row.note}]" if row.note else ""),
            row.unit,
            fmt(row.ours, row.unit),
            fmt(row.floor, row.unit) + (f" ({row.floor_label})" if row.floor_label and row.floor else ""),
            f"{ratio:.2f}x" if ratio is not None else "-",
            fmt(row.official, row.unit) + (f" ({row.official_note})" if row.official_note else ""),
            f"{off:.1f}x" if off is not None else "-",
            row.target or "-",
            verdict,
        ])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
              for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


# -- servers ----------------------------------------------------------------------------------


class ServerHandle:
    """A running loopback server and its request log: ``entries()`` -> ``[(method, path, status)]``."""

    def __init__(self, url: str, entries: Callable[[], List[Tuple[str, str, Optional[int]]]],
                 stop: Callable[[], None], kind: str):
        self.url = url
        self.entries = entries
        self.stop = stop
        self.kind = kind

    def mark(self, name: str) -> None:
        """Put a marker into the server log (a GET the server logs), to cut it into phases."""
        import requests

        requests.get(self.url + MARK_PREFIX + name, headers={"x-api-key": API_KEY}, timeout=10).close()

    def calls_between(self, start: str, end: Optional[str] = None) -> List[Tuple[str, str, Optional[int]]]:
        """The requests logged between markers ``start`` and ``end`` (the last ones of those names)."""
        entries = self.entries()
        marks = [i for i, e in enumerate(entries) if e[1] == MARK_PREFIX + start]
        if not marks:
            return []
        begin = marks[-1] + 1
        stop = len(entries)
        if end is not None:
            ends = [i for i, e in enumerate(entries) if e[1] == MARK_PREFIX + end and i >= begin]
            stop = ends[0] if ends else stop
        return [e for e in entries[begin:stop] if not e[1].startswith(MARK_PREFIX)]


class Fixtures:
    """The wire payloads of one agent, one task and one report answer, taken from the local backend."""

    def __init__(self, agent: Any, org_headers: Any, db: Any, task: Any, report: Any):
        self.agent = agent
        self.org_headers = org_headers
        self.db = db
        self.task = task
        self.report = report

    def routes(self) -> Dict[Tuple[str, str], Any]:
        return {
            ("GET", f"/agents/{AGENT_ID}"): self.agent,
            ("GET", "/metadata/default_llm_extra_headers"): self.org_headers,
            ("GET", f"/agents/{AGENT_ID}/db"): self.db,
            # every build asks for the agent's channel presence (the official SDK too): none here
            ("POST", f"/tools/{AGENT_ID}/channel-presence"): {"text": ""},
            ("POST", f"/agent-execution/{AGENT_ID}/report_task"): self.report,
        }


def start_local_backend() -> Any:
    from xpander_sync.local import LocalBackend

    return LocalBackend(api_key=API_KEY, organization_id=ORG_ID, port=0).start()


def record_fixtures(local: Any) -> Fixtures:
    """Ask the local backend for the payloads the benchmarks need (same agents for both SDKs)."""
    import requests

    headers = {"x-api-key": API_KEY}
    with requests.Session() as session:
        def call(method: str, path: str, body: Any = None) -> Any:
            response = session.request(method, local.url + path, json=body, headers=headers, timeout=10)
            response.raise_for_status()
            return response.json()

        task = call("POST", f"/agent-execution/{AGENT_ID}", {"input": {"text": "What is our refund window?"}})
        report_body = {"id": "bench-report", "input": "q", "llm_response": None, "tokens": None,
                       "is_success": True, "result": "a", "duration": 1.0, "used_tools": []}
        return Fixtures(
            agent=call("GET", f"/agents/{AGENT_ID}"),
            org_headers=call("GET", "/metadata/default_llm_extra_headers"),
            db=call("GET", f"/agents/{AGENT_ID}/db"),
            task=task,
            report=call("POST", f"/agent-execution/{AGENT_ID}/report_task", report_body),
        )


def start_server(kind: str, fixtures: Optional[Fixtures] = None, local: Any = None) -> ServerHandle:
    """``minimal``: bench/_server.py serving ``fixtures``; ``local``: the package's LocalBackend."""
    if kind == "local":
        backend = local or start_local_backend()

        def entries() -> List[Tuple[str, str, Optional[int]]]:
            return [(e["method"], e["path"], e["status"]) for e in backend.requests_log]

        return ServerHandle(backend.url, entries, backend.stop, "local")
    from _server import BenchServer

    if fixtures is None:
        raise ValueError("the minimal server needs recorded fixtures")
    server = BenchServer(fixtures.routes(), mark_prefix=MARK_PREFIX).__enter__()
    return ServerHandle(server.url, server.entries, lambda: server.__exit__(None, None, None), "minimal")


# -- the shared context -----------------------------------------------------------------------


class Context:
    """What every benchmark gets from ``run.py``: the server, run counts, the official SDK's python."""

    def __init__(self, server: ServerHandle, fixtures: Fixtures, *, runs: int = 300, import_runs: int = 20,
                 concurrency: int = 100, rounds: int = 15, official_rounds: int = 3,
                 sdk_python: Optional[str] = None, footprint: bool = False, quick: bool = False):
        self.server = server
        self.fixtures = fixtures
        self.runs = runs
        self.import_runs = import_runs
        self.concurrency = concurrency
        self.rounds = rounds
        self.concurrent_rounds = official_rounds
        self.sdk_python = sdk_python
        self.footprint = footprint
        self.quick = quick
        self.notes: List[str] = []
        self._official_cache: Dict[str, Dict[str, Any]] = {}

    def official(self, phases: Sequence[str], runs: int) -> Optional[Dict[str, Any]]:
        """Run the official SDK's driver (bench/_official.py) in its venv; ``None`` when not configured
        or when it failed (the failure becomes a note)."""
        if not self.sdk_python:
            return None
        from _official import run_official

        result = run_official(self, phases, runs)
        if "error" in result:
            self.notes.append(f"official SDK ({', '.join(phases)}): {result['error']}")
            return None
        return result


def build_context(argv_runs: int, *, server_kind: str = "minimal", **kwargs: Any) -> Context:
    """Start the local backend, record its payloads, and serve them (for benches run alone)."""
    local = start_local_backend()
    fixtures = record_fixtures(local)
    if server_kind == "local":
        server = start_server("local", local=local)
    else:
        local.stop()
        server = start_server("minimal", fixtures)
    sdk_python = kwargs.pop("sdk_python", None) or sdk_python_from_env()
    return Context(server, fixtures, runs=argv_runs, sdk_python=sdk_python, **kwargs)


def sdk_python_from_env() -> Optional[str]:
    """The python of ``$XPANDER_SDK_VENV`` (a venv with ``xpander-sdk[agno]``), if set and present."""
    venv = os.environ.get("XPANDER_SDK_VENV")
    if not venv:
        return None
    python = Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"XPANDER_SDK_VENV={venv} has no {python.relative_to(venv)}; the official SDK is skipped",
              file=sys.stderr)
        return None
    return str(python)


def our_configuration(url: str, **overrides: Any) -> Any:
    from xpander_sync import Configuration

    return Configuration(api_key=API_KEY, base_url=url, organization_id=ORG_ID, **overrides)


def loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Windows
        return "n/a"


def dump_json(path: str, payload: Dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def run_alone(measure: Callable[[Context], List[Row]], argv: Optional[Sequence[str]], default_runs: int) -> int:
    """``main()`` of a bench module: its rows in the same table ``run.py`` prints."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="?", type=int, default=default_runs)
    parser.add_argument("--server", choices=("minimal", "local"), default="minimal")
    args = parser.parse_args(argv)
    ctx = build_context(args.runs, server_kind=args.server)
    try:
        rows = measure(ctx)
    finally:
        ctx.server.stop()
    print(render_table(rows))
    for note in ctx.notes:
        print("note:", note)
    return 0


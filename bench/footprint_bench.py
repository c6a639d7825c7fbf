"""Installed footprint: packages and MiB that ``pip install .`` and ``pip install ".[agno]"`` add to a fresh venv.

Each case is a new ``python -m venv --upgrade-deps`` (current pip and setuptools); the figures are
what the install added on top of that: distributions (``pip list``, the package itself included)
and the size of ``site-packages``. With ``XPANDER_SDK_VENV`` set, the official SDK is installed the
same way at the version found there (``xpander-sdk==V`` and ``xpander-sdk[agno]==V``).

This needs PyPI and takes minutes, so ``run.py`` runs it only with ``--footprint``; the result is
stored in ``build/bench/footprint.json`` (keyed by the dependency lists of ``setup.cfg`` and the
Python version) and shown, marked as cached, by later runs.

Target (issue 7): the core install at most 8 packages. Run alone: ``python bench/footprint_bench.py``.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _common import REPO, Context, Row, Stats

CACHE = REPO / "build" / "bench" / "footprint.json"
TARGET_PACKAGES = 8
MIB = 1024 * 1024


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _dists(python: Path) -> Dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True)
    return {d["name"].lower(): d["version"] for d in json.loads(out.stdout)}


def install_footprint(requirement: str, workdir: Path, name: str) -> Dict[str, Any]:
    """Install ``requirement`` into a fresh venv under ``workdir``: what it added."""
    venv = workdir / name
    subprocess.run([sys.executable, "-m", "venv", "--upgrade-deps", str(venv)], check=True,
                   stdout=subprocess.DEVNULL)
    python = _python(venv)
    site = _site_packages(python)
    before_dists, before_size = _dists(python), _size(site)
    started = time.perf_counter()
    # pip and setuptools warnings (on stderr) are shown only when the install fails
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
                          cwd=str(REPO), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {requirement} failed:\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - started
    after = _dists(python)
    added = sorted(set(after) - set(before_dists))
    return {
        "requirement": requirement, "packages": len(added), "added": added,
        "mib": round((_size(site) - before_size) / MIB, 1), "install_seconds": round(seconds, 1),
    }


def cache_key() -> str:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    deps = parser.get("options", "install_requires", fallback="") + parser.get(
        "options.extras_require", "agno", fallback="")
    raw = f"{deps}|{sys.version_info[:2]}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def official_version(sdk_python: Optional[str]) -> Optional[str]:
    if not sdk_python:
        return None
    out = subprocess.run([sdk_python, "-c", "import importlib.metadata as m; print(m.version('xpander-sdk'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def run_footprint(sdk_python: Optional[str]) -> Dict[str, Any]:
    """Install every case (minutes; needs PyPI) and store the result in the cache file."""
    version = official_version(sdk_python)
    result: Dict[str, Any] = {"key": cache_key(), "measured": _dt.datetime.now().isoformat(timespec="seconds"),
                              "python": sys.version.split()[0], "official_version": version}
    with tempfile.TemporaryDirectory(prefix="xpander-footprint-") as tmp:
        work = Path(tmp)
        result["core"] = install_footprint(".", work, "core")
        result["agno"] = install_footprint(".[agno]", work, "agno")
        if version:
            result["official_core"] = install_footprint(f"xpander-sdk=={version}", work, "official-core")
            result["official_agno"] = install_footprint(f"xpander-sdk[agno]=={version}", work, "official-agno")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_cached() -> Optional[Dict[str, Any]]:
    if not CACHE.exists():
        return None
    try:
        data: Dict[str, Any] = json.loads(CACHE.read_text())
    except ValueError:
        return None
    return data if data.get("key") == cache_key() else None


def rows_from(result: Optional[Dict[str, Any]], *, cached: bool) -> List[Row]:
    if result is None:
        return [Row("installed footprint", None, unit="pkgs", note="skipped: run with --footprint")]
    note = f"cached {result['measured']}" if cached else f"measured {result['measured']}"

    def stat(case: Optional[Dict[str, Any]], key: str) -> Optional[Stats]:
        return Stats([float(case[key])]) if case else None

    core, agno = result["core"], result["agno"]
    off_core, off_agno = result.get("official_core"), result.get("official_agno")

    def deps(case: Optional[Dict[str, Any]]) -> Optional[Stats]:
        # what the install added, the package itself not counted
        return Stats([float(case["packages"] - 1)]) if case else None

    return [
        Row("core install (pip install .): dependencies", deps(core), unit="pkgs",
            official=deps(off_core), official_note="xpander-sdk" if off_core else "",
            target=f"<= {TARGET_PACKAGES} packages", met=core["packages"] - 1 <= TARGET_PACKAGES,
            note=f"+ the package itself = {core['packages']}; {note}"),
        Row("core install: size added", stat(core, "mib"), unit="MiB", official=stat(off_core, "mib")),
        Row('agno install (pip install ".[agno]"): dependencies', deps(agno), unit="pkgs",
            official=deps(off_agno), official_note="xpander-sdk[agno]" if off_agno else ""),
        Row("agno install: size added", stat(agno, "mib"), unit="MiB", official=stat(off_agno, "mib")),
    ]


def measure(ctx: Context) -> List[Row]:
    if ctx.footprint:
        result = run_footprint(ctx.sdk_python)
        cached = False
    else:
        result = load_cached()
        cached = True
    if result is not None:
        ctx.notes.append("core install adds: " + ", ".join(result["core"]["added"]) + " (measured "
                         + result["measured"] + ("" if ctx.footprint else ", cached; --footprint measures again") + ")")
        if result.get("official_core"):
            ctx.notes.append(f"official core install adds {result['official_core']['packages']} packages "
                             f"({result['official_core']['mib']} MiB).")
    return rows_from(result, cached=cached)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from _common import render_table, sdk_python_from_env

    del argv
    result = run_footprint(sdk_python_from_env())
    print(render_table(rows_from(result, cached=False)))
    print(json.dumps({k: v for k, v in result.items() if k not in ("key",)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

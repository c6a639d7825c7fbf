"""Run every benchmark in this folder and print its figures (``tox -e bench``)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE))
    for script in sorted(HERE.glob("*_bench.py")):
        print(f"== {script.stem}")
        runpy.run_path(str(script), run_name="__main__")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark script in this folder, one after another (what ``make bench`` runs).

    .venv/bin/python benchmarks/run_all.py [--only NAME[,NAME]] [--skip NAME[,NAME]] [--list]

Each script prints its own figures; this runner adds a heading, the exact command and its
wall time, and exits non-zero if any script failed (after running the rest). Scripts are
found by listing the folder, so a new benchmark is run without editing this file; the ones
that need extra arguments to fit a shared machine get them from ``ARGS``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARGS: dict[str, list[str]] = {}
"""Extra arguments per script name (without ``.py``); none are needed today."""


def scripts() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py")
                  if p.stem not in ("run_all", "__init__") and not p.stem.startswith("_"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated script names to run")
    ap.add_argument("--skip", default="", help="comma-separated script names to skip")
    ap.add_argument("--list", action="store_true", help="print the script names and exit")
    args = ap.parse_args()
    names = scripts()
    if args.list:
        print("\n".join(names))
        return 0
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - set(names)
    if unknown:
        print(f"run_all: unknown benchmark(s) {', '.join(sorted(unknown))}; "
              f"known: {', '.join(names)}", file=sys.stderr)
        return 2
    # Each script runs as a file from the repo root with the root importable: a sibling
    # import (``_readme``, ``replay_all``) finds the script's own folder, and the scripts that
    # share the tests' servers and PKI import them by package path (``tests.support``), as
    # ``python -m benchmarks.NAME`` from the root does, with no ``sys.path`` edits.
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    failed: list[str] = []
    for name in names:
        if (only and name not in only) or name in skip:
            continue
        cmd = [sys.executable, str(HERE / f"{name}.py"), *ARGS.get(name, [])]
        print(f"\n## {name}\n\n    PYTHONPATH=. {shlex.join(cmd)}\n", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        print(f"\n({name}: exit {code}, {time.perf_counter() - t0:.0f} s)", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

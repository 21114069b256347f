"""Shared by the benchmark scripts: print a Markdown section, and with ``--readme`` also write
it into README.md between its ``<!-- bench:NAME:begin/end -->`` markers
(``autoscaler.reporting.splice``). That is how the README's results stay the scripts' output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscaler.reporting.splice import update_file

README = Path(__file__).resolve().parent.parent / "README.md"


def add_readme_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--readme", action="store_true",
                    help="also write the printed section into README.md between its markers")


def publish(name: str, markdown: str, *, readme: bool) -> None:
    """Print ``markdown``; with ``readme``, replace README section ``name`` with it."""
    print(markdown, flush=True)
    if readme:
        update_file(README, name, markdown)
        print(f"(README.md section {name!r} updated)", flush=True)

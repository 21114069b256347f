"""The ``autoscaler`` command line.

Every expected failure (bad option, bad trace, bad spec) ends as one line on stderr naming
what is wrong and where, with exit code 2; a dependency that failed in a way that may pass
(Prometheus unreachable) is one line and exit code 1; never a traceback.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. Modules import their heavy dependencies inside ``run``, so building
the parser (and ``autoscaler replay``) never loads the Kubernetes or Prometheus clients.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from autoscaler.cli import common as c
from autoscaler.errors import AutoscalerError

Runner = Callable[[argparse.Namespace], int]

EXIT_CODES = f"""exit codes:
  {c.EXIT_OK}    done
  {c.EXIT_TRANSIENT}    a dependency failed in a way that may pass (Prometheus unreachable, a
       timeout): retrying later may help
  {c.EXIT_SPEC}    bad input (an option, a file, a spec): the one line on stderr names the file
       and line, or the option or field and its allowed range
  {c.EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

# command -> (module, its add-parser function, its run function), in --help order.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "replay": ("autoscaler.cli.replay", "add_parser", "run"),
    "profiles": ("autoscaler.cli.replay", "add_profiles_parser", "run_profiles"),
    "validate": ("autoscaler.cli.validate", "add_parser", "run"),
    "forecast": ("autoscaler.cli.forecast", "add_parser", "run"),
    "metrics": ("autoscaler.cli.metrics", "add_parser", "run"),
    "controller": ("autoscaler.cli.controller", "add_parser", "run"),
    "twin": ("autoscaler.cli.twin", "add_parser", "run"),
    "tune": ("autoscaler.cli.tune", "add_parser", "run"),
    "trace": ("autoscaler.cli.fleet", "add_trace_parser", "run_trace"),
    "profile": ("autoscaler.cli.fleet", "add_profile_parser", "run_profile"),
}


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("autoscaler")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = c.Parser(prog="autoscaler", description=(__doc__ or "").splitlines()[0],
                      epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"autoscaler {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module, add, _ in COMMANDS.values():
        getattr(import_module(module), add)(sub)
    return parser


def _runner(command: str) -> Runner:
    module, _, run = COMMANDS[command]
    fn: Runner = getattr(import_module(module), run)
    return fn


def _command_name(args: argparse.Namespace) -> str:
    """``tune shard``, ``metrics show``, ``forecast backtest``, or just ``replay``."""
    parts = [args.command]
    for attr in ("tune_command", "metrics_command", "forecast_command", "trace_command",
                 "profile_command"):
        value: Any = getattr(args, attr, None)
        if value:
            parts.append(value)
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse's own exits, --help, --version and
    usage errors, are returned too, so callers always get a code)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else c.EXIT_SPEC
    name = _command_name(args)
    try:
        return _runner(args.command)(args)
    except AutoscalerError as exc:
        return c.report_error(name, exc)
    except MemoryError:
        # The last resort for inputs whose size we could not bound up front (the loaders
        # estimate memory before they allocate; this catches what they miss).
        print(c.one_line(f"autoscaler {name}: error: out of memory; the input is too large "
                         "for this machine (a shorter trace, a smaller --rate-scale or "
                         "--engine fluid needs less)"), file=sys.stderr)
        return c.EXIT_SPEC
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return c.EXIT_INTERRUPTED

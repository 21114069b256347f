"""Command-line options shared by ``replay --prometheus``, ``trace export`` and ``profile
fit``: where Prometheus is, how to authenticate (as the controller does), which target and
which range. Light to import (the parser is built on every command): heavy imports live in
the functions.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from autoscaler.errors import SpecError

if TYPE_CHECKING:
    from autoscaler.fleetdata.history import HistoryQuery
    from autoscaler.metrics.source import MetricsSource, PrometheusConfig


def add_prometheus_arguments(p: argparse.ArgumentParser, *, required: bool,
                             with_start: bool = True) -> None:
    g = p.add_argument_group("fleet history (Prometheus)")
    g.add_argument("--prometheus", required=required, metavar="URL",
                   help="read the workload from this Prometheus instead of a trace file")
    g.add_argument("--target", metavar="NAMESPACE/NAME",
                   help="the workload, as its namespace and workload labels name it")
    g.add_argument("--preset", default="vllm", help="engine metric names (vllm)")
    if with_start:
        g.add_argument("--start", default=None, metavar="T",
                       help="range start: Unix seconds or RFC 3339 (2026-11-24T00:00:00Z)")
    g.add_argument("--end", default=None, metavar="T", help="range end (default: now)")
    g.add_argument("--since", default=None, metavar="DURATION",
                   help="range = the last DURATION before --end (7d, 36h)")
    g.add_argument("--step", default="auto", metavar="SECONDS",
                   help="resolution of the reconstruction, seconds, or auto (default): the "
                   "target's scrape interval, read from its samples (60 s if not found)")
    g.add_argument("--selector", default="", metavar="MATCHERS",
                   help='extra label matchers, e.g. job="vllm"')
    g.add_argument("--namespace-label", default="namespace")
    g.add_argument("--workload-label", default="workload")
    g.add_argument("--bearer-token-file", default=None, metavar="FILE")
    g.add_argument("--basic-auth-user", default=None, metavar="USER")
    g.add_argument("--basic-auth-password-file", default=None, metavar="FILE")
    g.add_argument("--ca-file", default=None, metavar="PEM",
                   help="CA bundle to verify an https Prometheus")
    g.add_argument("--prometheus-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="per range query (default 60)")


def prometheus_config(args: argparse.Namespace) -> PrometheusConfig:
    from autoscaler.metrics.source import PrometheusConfig

    basic: tuple[str, str] | None = None
    if args.basic_auth_user is not None:
        if args.basic_auth_password_file is None:
            raise SpecError("--basic-auth-password-file", None,
                            "a file holding the password (required with --basic-auth-user)")
        try:
            with open(args.basic_auth_password_file, encoding="utf-8") as fh:
                basic = (args.basic_auth_user, fh.read().strip())
        except OSError as exc:
            raise SpecError("--basic-auth-password-file", args.basic_auth_password_file,
                            f"a readable file ({exc.strerror})") from exc
    if not 0 < args.prometheus_timeout <= 300:
        raise SpecError("--prometheus-timeout", args.prometheus_timeout, "0 < seconds <= 300")
    return PrometheusConfig(url=args.prometheus, bearer_token_file=args.bearer_token_file,
                            basic_auth=basic, ca_file=args.ca_file,
                            timeout_s=args.prometheus_timeout)


def history_query(args: argparse.Namespace, *, now: float | None = None) -> HistoryQuery:
    from autoscaler.fleetdata.history import HistoryQuery, Target, time_range

    if not args.target:
        raise SpecError("--target", None, "NAMESPACE/NAME (required with --prometheus)")
    try:
        step = 60.0 if args.step == "auto" else float(args.step)
    except ValueError:
        raise SpecError("--step", args.step, "auto or a number of seconds 1..3600") from None
    start, end = time_range(args.start, args.end, args.since,
                            time.time() if now is None else now)
    # Align to the step so that every chunk asks for the same grid.
    start = (start // step) * step
    end = (end // step) * step
    return HistoryQuery(target=Target.parse(args.target), start=start, end=end, step_s=step,
                        namespace_label=args.namespace_label,
                        workload_label=args.workload_label, selector=args.selector,
                        preset=args.preset)


def scrape_step(args: argparse.Namespace, q: HistoryQuery, source: MetricsSource
                ) -> HistoryQuery:
    """With ``--step auto``, ``q`` at the target's scrape interval (a note on stderr says
    which); else ``q`` as given."""
    import sys

    from autoscaler.fleetdata.history import at_scrape_step

    if args.step != "auto":
        return q
    q, note = at_scrape_step(source, q)
    print(f"note: {note}", file=sys.stderr)
    return q


def describe(args: argparse.Namespace, q: HistoryQuery) -> dict[str, Any]:
    return {"prometheus": args.prometheus, "target": str(q.target), "preset": q.preset,
            "start_unix": q.start, "end_unix": q.end, "step_s": q.step_s}

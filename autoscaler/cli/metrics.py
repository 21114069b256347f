"""``autoscaler metrics show``: what the autoscaler sees in Prometheus right now, and why a
value is missing."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from autoscaler.cli import common as c
from autoscaler.errors import SpecError, TransientError
from autoscaler.metrics.presets import PRESETS

if TYPE_CHECKING:
    from autoscaler.metrics.source import PrometheusConfig

DEFAULT_MAX_AGE_S = 60.0
TIMEOUT = c.Range(low=0, low_open=True, high=300, unit="seconds")


def add_parser(subparsers: Any) -> None:
    """Add ``metrics show`` to an argparse subparsers object."""
    mp = subparsers.add_parser("metrics", help="live metrics from Prometheus")
    msub = mp.add_subparsers(dest="metrics_command", required=True)
    sp = msub.add_parser(
        "show", help="print what the autoscaler sees for one target right now",
        description="Runs the same grouped queries as a control cycle and prints every "
                    "signal of the target with its status (ok, missing, nan, stale, partial, "
                    "error) and the reason a value is not used.")
    sp.add_argument("--prometheus", required=True, metavar="URL",
                    help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    sp.add_argument("--preset", default="vllm",
                    help=f"engine metric names: {', '.join(sorted(PRESETS))} (default vllm)")
    sp.add_argument("--target", required=True, metavar="NAMESPACE/NAME",
                    help="the workload, as its namespace and workload labels name it")
    sp.add_argument("--selector", default="", metavar="MATCHERS",
                    help='extra label matchers for every query, e.g. job="vllm"')
    sp.add_argument("--namespace-label", default="namespace")
    sp.add_argument("--workload-label", default="workload",
                    help="label naming the workload (default workload)")
    sp.add_argument("--window", default="1m", help="rate() range (default 1m)")
    sp.add_argument("--max-age", type=c.number(c.POSITIVE), default=DEFAULT_MAX_AGE_S,
                    metavar="SECONDS",
                    help=f"older samples are stale (default {DEFAULT_MAX_AGE_S:g})")
    sp.add_argument("--ready", type=c.whole(c.NON_NEGATIVE_INT), default=None, metavar="N",
                    help="ready replicas of the target: sums over fewer reporting pods are "
                         "marked partial")
    sp.add_argument("--bearer-token-file", default=None, metavar="FILE")
    sp.add_argument("--basic-auth-user", default=None, metavar="USER")
    sp.add_argument("--basic-auth-password-file", default=None, metavar="FILE")
    sp.add_argument("--ca-file", default=None, metavar="PEM",
                    help="CA bundle to verify an https Prometheus")
    sp.add_argument("--timeout", type=c.number(TIMEOUT), default=5.0, metavar="SECONDS",
                    help=f"per query ({TIMEOUT.describe()}; default 5)")
    sp.add_argument("--queries", action="store_true", help="also print each PromQL query")
    sp.add_argument("--json", dest="json_out", action="store_true",
                    help="print JSON instead of a table")
    sp.add_argument("--recorded", action="store_true",
                    help="read the recording rules of `metrics rules` instead of raw series")

    rp = msub.add_parser(
        "rules", help="print Prometheus recording rules for a preset (for ~1,000 targets)",
        description="One recording rule per signal and one per histogram's bucket rates, "
                    "so each control cycle reads pre-aggregated series. Load the output as a "
                    "rule file, or apply it as a PrometheusRule with --kubernetes.")
    rp.add_argument("--preset", default="vllm")
    rp.add_argument("--selector", default="", metavar="MATCHERS")
    rp.add_argument("--namespace-label", default="namespace")
    rp.add_argument("--workload-label", default="workload")
    rp.add_argument("--window", default="1m", help="rate() range (default 1m)")
    rp.add_argument("--interval", default="15s", help="rule evaluation interval (default 15s)")
    rp.add_argument("--kubernetes", action="store_true",
                    help="wrap the group in a monitoring.coreos.com/v1 PrometheusRule")


def _config(args: argparse.Namespace) -> PrometheusConfig:
    from autoscaler.metrics.source import PrometheusConfig

    basic: tuple[str, str] | None = None
    if args.basic_auth_user is not None:
        if args.basic_auth_password_file is None:
            raise SpecError("--basic-auth-password-file", None,
                            "a file holding the password (required with --basic-auth-user)")
        basic = (args.basic_auth_user,
                 c.read_text_file("--basic-auth-password-file",
                                  args.basic_auth_password_file).strip())
    if args.bearer_token_file is not None:  # read by the source; checked here for one line
        c.read_text_file("--bearer-token-file", args.bearer_token_file)
    return PrometheusConfig(url=args.prometheus, bearer_token_file=args.bearer_token_file,
                            basic_auth=basic, ca_file=args.ca_file, timeout_s=args.timeout)


def run(args: argparse.Namespace) -> int:
    if args.metrics_command == "rules":
        return _run_rules(args)
    return _run_show(args)


def _run_show(args: argparse.Namespace) -> int:
    from autoscaler.metrics.collect import Collector, CollectorConfig, TargetKey
    from autoscaler.metrics.presets import get_preset
    from autoscaler.metrics.source import PrometheusSource

    check_common(args)
    check_url("--prometheus", args.prometheus)
    target = _as_option("--target", TargetKey.parse, args.target)
    if args.ready is not None and args.ready < 0:
        raise SpecError("--ready", args.ready, ">= 0")
    cfg = CollectorConfig(preset=_as_option("--preset", get_preset, args.preset),
                          selector=args.selector, namespace_label=args.namespace_label,
                          workload_label=args.workload_label, window=args.window,
                          max_age_s=args.max_age, recorded=args.recorded)
    source = PrometheusSource(_config(args))
    now = time.time()
    cycle = Collector(source, cfg).collect(now, [target])
    if "liveness" in cycle.errors:
        # Nothing else was asked: the table would be all "error". One line, exit 1.
        why = cycle.errors["liveness"]
        raise TransientError(why if args.prometheus in why
                             else f"Prometheus at {args.prometheus} did not answer: {why}")
    obs = cycle.observations[target]
    known = sorted(str(k) for k in cycle.observations if k != target)
    rows = []
    for signal, r in obs.judged(args.ready).items():
        rows.append({"signal": signal.value, "status": r.status.value, "value": r.value,
                     "age_s": None if r.observed_at is None else now - r.observed_at,
                     "detail": r.detail, "query": cfg.promql(signal)})
    doc = {"target": str(target), "prometheus": args.prometheus, "preset": args.preset,
           "at": now, "queries": cycle.queries, "query_wall_s": cycle.wall_s,
           "pods_reporting": obs.pods_reporting,
           "found": obs.newest_sample is not None, "errors": dict(cycle.errors), "signals": rows}
    if args.json_out:  # JSON has no NaN: a non-finite value is null, its status says why
        c.write_json("--json", "-", doc)
    else:
        print(_table(doc, args.queries, known))
    if cycle.errors:
        name, first = next(iter(cycle.errors.items()))
        print(c.one_line(f"autoscaler metrics show: error: {len(cycle.errors)} of "
                         f"{cycle.queries} queries failed (the {name} query: {first})"),
              file=sys.stderr)
        return c.EXIT_TRANSIENT
    return 0


T = TypeVar("T")


def _as_option(option: str, parse: Callable[[str], T], text: str) -> T:
    """``parse(text)``, with a spec error renamed to the option the user typed."""
    try:
        return parse(text)
    except SpecError as exc:
        raise SpecError(option, exc.value, exc.allowed) from exc


def check_common(args: argparse.Namespace) -> None:
    """The flags ``show`` and ``rules`` share, checked as ``promtool`` would."""
    from autoscaler.config import label_matchers, label_name, prometheus_duration

    prometheus_duration("--window", args.window)
    label_matchers("--selector", args.selector)
    label_name("--namespace-label", args.namespace_label)
    label_name("--workload-label", args.workload_label)


def check_url(option: str, url: str) -> None:
    from urllib.parse import urlsplit

    allowed = "an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise SpecError(option, url, allowed) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise SpecError(option, url, allowed)


def _run_rules(args: argparse.Namespace) -> int:
    import yaml

    from autoscaler.config import prometheus_duration
    from autoscaler.metrics.collect import CollectorConfig
    from autoscaler.metrics.presets import get_preset
    from autoscaler.metrics.rules import rule_group

    check_common(args)
    prometheus_duration("--interval", args.interval)
    cfg = CollectorConfig(preset=_as_option("--preset", get_preset, args.preset),
                          selector=args.selector, namespace_label=args.namespace_label,
                          workload_label=args.workload_label, window=args.window)
    group = rule_group(cfg.recording_rules(), name=f"autoscaler-{cfg.preset.name}",
                       interval=args.interval)
    doc: dict[str, Any] = {"groups": [group]}
    if args.kubernetes:
        doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
               "metadata": {"name": f"autoscaler-{cfg.preset.name}".replace("+", "-")},
               "spec": doc}
    print(yaml.safe_dump(doc, sort_keys=False, width=200), end="")
    return 0


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def _table(doc: dict[str, Any], with_queries: bool, known: list[str]) -> str:
    lines = [f"target {doc['target']} at {doc['prometheus']} (preset {doc['preset']}): "
             f"{doc['queries']} queries in {doc['query_wall_s'] * 1000:.0f} ms"]
    if doc["errors"]:
        pass  # Prometheus' own failure says it all
    elif not doc["found"]:
        hint = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
        lines.append(f"  no series of this target: check --target, --selector and the "
                     f"namespace/workload labels. Targets Prometheus has: {hint}")
    else:
        lines.append(f"  pods reporting: {doc['pods_reporting']}")
    for name, err in doc["errors"].items():
        what = "Prometheus" if name == "liveness" else f"the {name} query"
        lines.append(f"  {what} failed: {err}")
    lines.append(f"  {'signal':<24}{'value':>10}  {'status':<8}{'age':>6}  why")
    for row in doc["signals"]:
        age = "-" if row["age_s"] is None else f"{row['age_s']:.0f}s"
        lines.append(f"  {row['signal']:<24}{_fmt(row['value']):>10}  {row['status']:<8}"
                     f"{age:>6}  {row['detail']}")
        if with_queries:
            lines.append(f"      {row['query']}")
    return "\n".join(lines)

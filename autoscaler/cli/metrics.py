"""``autoscaler metrics show``: what the autoscaler sees in Prometheus right now, and why a
value is missing."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import TYPE_CHECKING, Any

from autoscaler.errors import SpecError
from autoscaler.metrics.presets import PRESETS

if TYPE_CHECKING:
    from autoscaler.metrics.source import PrometheusConfig

DEFAULT_MAX_AGE_S = 60.0


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
    sp.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, metavar="SECONDS",
                    help=f"older samples are stale (default {DEFAULT_MAX_AGE_S:g})")
    sp.add_argument("--ready", type=int, default=None, metavar="N",
                    help="ready replicas of the target: sums over fewer reporting pods are "
                         "marked partial")
    sp.add_argument("--bearer-token-file", default=None, metavar="FILE")
    sp.add_argument("--basic-auth-user", default=None, metavar="USER")
    sp.add_argument("--basic-auth-password-file", default=None, metavar="FILE")
    sp.add_argument("--ca-file", default=None, metavar="PEM",
                    help="CA bundle to verify an https Prometheus")
    sp.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
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
        try:
            with open(args.basic_auth_password_file, encoding="utf-8") as fh:
                basic = (args.basic_auth_user, fh.read().strip())
        except OSError as exc:
            raise SpecError("--basic-auth-password-file", args.basic_auth_password_file,
                            f"a readable file ({exc.strerror})") from exc
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

    target = TargetKey.parse(args.target)
    if args.ready is not None and args.ready < 0:
        raise SpecError("--ready", args.ready, ">= 0")
    cfg = CollectorConfig(preset=get_preset(args.preset), selector=args.selector,
                          namespace_label=args.namespace_label,
                          workload_label=args.workload_label, window=args.window,
                          max_age_s=args.max_age, recorded=args.recorded)
    source = PrometheusSource(_config(args))
    now = time.time()
    cycle = Collector(source, cfg).collect(now, [target])
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
    if args.json_out:
        for row in doc["signals"]:  # JSON has no NaN: the status already says "nan"
            if row["value"] is not None and not math.isfinite(row["value"]):
                row["value"] = None
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(_table(doc, args.queries, known))
    return 1 if cycle.errors else 0


def _run_rules(args: argparse.Namespace) -> int:
    import yaml

    from autoscaler.metrics.collect import CollectorConfig
    from autoscaler.metrics.presets import get_preset
    from autoscaler.metrics.rules import rule_group

    cfg = CollectorConfig(preset=get_preset(args.preset), selector=args.selector,
                          namespace_label=args.namespace_label,
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

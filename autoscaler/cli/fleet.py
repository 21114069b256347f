"""``autoscaler trace export`` and ``autoscaler profile fit``: your own fleet's workload and
replica profile, read from its Prometheus history."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from autoscaler.cli import common as c
from autoscaler.fleetdata.options import add_prometheus_arguments


def add_trace_parser(sub: Any) -> None:
    p = sub.add_parser("trace", help="work with traces (export from Prometheus)")
    tsub = p.add_subparsers(dest="trace_command", required=True)
    e = tsub.add_parser(
        "export", help="reconstruct a workload from Prometheus and write it as a trace file",
        description="Arrivals per step = first tokens served + queue growth; token means per "
        "window from the token histograms; collection gaps kept as gaps. The file replays "
        "with `autoscaler replay --trace FILE`.")
    add_prometheus_arguments(e, required=True)
    e.add_argument("--out", required=True, metavar="FILE",
                   help="trace file to write (.json, or .json.gz compressed)")
    e.add_argument("--anonymise", "--anonymize", action="store_true",
                   help="leave out namespace, workload, pod names, URL and absolute times")
    e.add_argument("--token-window", type=c.number(c.Range(low=60, high=86_400)),
                   default=3600.0, metavar="SECONDS",
                   help="window of the token-length means (default 3600)")


def add_profile_parser(sub: Any) -> None:
    p = sub.add_parser("profile", help="replica profiles (fit one from Prometheus)")
    psub = p.add_subparsers(dest="profile_command", required=True)
    f = psub.add_parser(
        "fit", help="fit a replica profile from a fleet's Prometheus series",
        description="Fits prefill throughput, decode step time against batch, KV capacity, "
        "max_num_seqs and cold start; says which fields it could not fit and the default "
        "it kept for each. The file is accepted by replay and tune as --profile FILE.")
    add_prometheus_arguments(f, required=True)
    f.add_argument("--base-profile", default="llama3-8b-h100",
                   help="profile whose values are kept for fields the series cannot give")
    f.add_argument("--name", default=None, help="name of the fitted profile")
    f.add_argument("--out", default=None, metavar="FILE", help="write the profile YAML here")
    f.add_argument("--json", dest="json_out", default=None, metavar="FILE|-",
                   help="write the fit (values, quality, defaults kept) as JSON")


def run_trace(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autoscaler.fleetdata.history import reconstruct
    from autoscaler.fleetdata.options import (
        describe,
        history_query,
        prometheus_config,
        scrape_step,
    )
    from autoscaler.fleetdata.tracefile import trace_document, write_trace
    from autoscaler.metrics.source import PrometheusSource

    q = history_query(args)
    out = c.writable_path("--out", args.out)
    src = PrometheusSource(prometheus_config(args))
    try:
        q = scrape_step(args, q, src)
        rec = reconstruct(src, q, token_window_s=args.token_window)
    finally:
        src.close()
    meta = describe(args, q)
    doc = trace_document(rec, source={k: str(v) for k, v in meta.items()},
                         anonymise=args.anonymise)
    try:
        write_trace(Path(out), doc)
    except OSError as exc:
        from autoscaler.errors import AutoscalerError

        raise AutoscalerError(f"--out {args.out}: cannot write: {exc.strerror}") from exc
    tr = rec.trace
    print(f"{out}: {tr.request_count:,.0f} requests over {tr.duration_s / 3600:.1f} h at "
          f"{rec.step_s:g}-s steps from {rec.pods_seen} pods; {len(tr.gaps)} collection "
          f"gap(s), {rec.missing_steps} missing steps; mean tokens "
          f"{tr.token_mix.mean_prompt_tokens:.0f} in / {tr.token_mix.mean_output_tokens:.0f} "
          f"out; {rec.queries} range queries" + (" (anonymised)" if args.anonymise else ""))
    for n in rec.notes:
        print(f"note: {n}", file=sys.stderr)
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from autoscaler.fleetdata.fit import fit_profile, profile_yaml
    from autoscaler.fleetdata.options import history_query, prometheus_config, scrape_step
    from autoscaler.metrics.source import PrometheusSource

    q = history_query(args)
    base = c.load_profile_input(args.base_profile)
    src = PrometheusSource(prometheus_config(args))
    try:
        q = scrape_step(args, q, src)
        fit = fit_profile(src, q, base, name=args.name)
    finally:
        src.close()
    text = profile_yaml(fit, source=f"{q.target} at {args.prometheus}")
    if args.out:
        c.write_text("--out", args.out, text)
    else:
        print(text, end="")
    out = sys.stderr if not args.out else sys.stdout
    print(f"profile fit for {q.target}: {len(fit.fields) - len(fit.unfitted())} fields "
          f"fitted, {len(fit.unfitted())} kept from {base.name}", file=out)
    for key, f in fit.fields.items():
        quality = ", ".join(f"{k} {v:.3g}" for k, v in f.quality.items())
        tag = "fitted " if f.fitted else "default"
        print(f"  {tag} {key:<22} {f.value:>12.6g}  {f.how}"
              + (f" [{quality}]" if quality else ""), file=out)
        if f.warning:
            print(f"  {'':7} {'':22} {'':>12}  IMPRECISE: {f.warning}", file=out)
    if args.json_out:
        c.write_json("--json", args.json_out, fit.as_json())
    return 0

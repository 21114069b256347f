"""``autoscaler validate FILE``: check a spec YAML, or a whole ``InferenceAutoscaler``, as
the replay and the controller will read it."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check an autoscaler spec YAML or InferenceAutoscaler",
                       description="Check a spec YAML (as --spec reads it) or a whole "
                       "InferenceAutoscaler custom resource (as the controller reads it).")
    p.add_argument("spec", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    import yaml

    from autoscaler.config import load_spec
    from autoscaler.controller.resource import KIND, parse_autoscaler
    from autoscaler.errors import SpecError

    spec = load_spec(args.spec) if not _is_custom_resource(args.spec, KIND) else None
    if spec is None:  # a whole InferenceAutoscaler: validate it as the controller will
        with open(args.spec, encoding="utf-8") as fh:
            obj = yaml.safe_load(fh)
        try:
            spec = parse_autoscaler(obj).spec
        except SpecError as exc:
            raise SpecError(exc.field, exc.value, exc.allowed, source=args.spec) from exc
    print(f"{args.spec}: valid {spec.policy.value} spec, replicas {spec.min_replicas}.."
          f"{spec.max_replicas}")
    return 0


def _is_custom_resource(path: str, kind: str) -> bool:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return False  # load_spec reports it with file and line
    return isinstance(doc, dict) and doc.get("kind") == kind

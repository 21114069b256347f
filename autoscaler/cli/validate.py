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
    from autoscaler.cli.common import custom_resource_spec
    from autoscaler.config import CUSTOM_RESOURCE_KIND, read_spec_file, spec_from_document

    doc = read_spec_file(args.spec)
    if isinstance(doc.data, dict) and doc.data.get("kind") == CUSTOM_RESOURCE_KIND:
        spec = custom_resource_spec(doc)
        what = f"{CUSTOM_RESOURCE_KIND} with a valid {spec.policy.value} spec"
    else:
        spec = spec_from_document(doc)
        what = f"valid {spec.policy.value} spec"
    print(f"{args.spec}: {what}, replicas {spec.min_replicas}..{spec.max_replicas}")
    return 0

"""The YAML boundary: HPA-shaped fields in, core dataclasses out; errors say file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoscaler.config import load_spec, parse_spec, spec_to_dict
from autoscaler.core.spec import PolicyKind, ScalingPolicyType, SelectPolicy
from autoscaler.errors import SpecError

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"

MINIMAL = """\
policy: hpa
maxReplicas: 10
capacity: {requestsPerSecond: 4, concurrency: 20}
metrics:
- metric: concurrency
  target: {type: AverageValue, value: 14}
"""


def _bare_specs() -> list[Path]:
    """Examples that are autoscaler specs, not Kubernetes objects (CRs, HPAs, KEDA objects
    have an apiVersion; tests/test_deploy.py and test_external_metrics.py check those)."""
    # A file of several documents (an object and its TriggerAuthentication) is a set of
    # Kubernetes objects, never a bare spec.
    return sorted(p for p in EXAMPLES.glob("*.yaml")
                  if not any("apiVersion" in (doc or {})
                             for doc in yaml.safe_load_all(p.read_text())))


@pytest.mark.parametrize("path", _bare_specs(), ids=lambda p: p.name)
def test_every_shipped_example_spec_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.min_replicas <= spec.max_replicas


def test_a_behavior_side_left_out_gets_the_upstream_default() -> None:
    spec = parse_spec(MINIMAL + "behavior:\n  scaleUp:\n    selectPolicy: Min\n")
    assert spec.behavior is not None
    assert spec.behavior.scale_up.select_policy == SelectPolicy.MIN
    # Unset policies of the given side and the whole other side are the upstream defaults.
    assert {p.type for p in spec.behavior.scale_up.policies} == {
        ScalingPolicyType.PERCENT, ScalingPolicyType.PODS}
    assert spec.behavior.scale_down.stabilization_window_seconds == 300


def test_no_behavior_means_the_hpa_legacy_path() -> None:
    assert parse_spec(MINIMAL).behavior is None


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        pytest.param(MINIMAL + "behavior:\n  scaleUp:\n    policies:\n    - type: Pods\n"
                     "      value: 2\n      periodSeconds: 0\n", 12,
                     "behavior.scaleUp.policies[0].periodSeconds", id="zero period on line 12"),
        pytest.param(MINIMAL.replace("maxReplicas: 10", "maxReplicas: -3"), 2, "maxReplicas",
                     id="negative max on line 2"),
        pytest.param(MINIMAL + "cooldown: 30\n", 7, "cooldown", id="unknown field"),
        pytest.param(MINIMAL.replace("AverageValue", "Average"), 6, "metrics[0].target.type",
                     id="unknown target type"),
        pytest.param("maxReplicas: [1\n", 2, "(yaml)", id="broken yaml"),
    ],
)
def test_a_bad_spec_file_names_the_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}:{line}: {field}")


def test_a_cross_field_error_names_the_file() -> None:
    with pytest.raises(SpecError, match=r"^s\.yaml:7: minReplicas: 20"):
        parse_spec(MINIMAL + "minReplicas: 20\n", source="s.yaml")


def test_a_missing_file_is_a_spec_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="readable YAML file"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["predictive-llama3-8b.yaml", "hpa-concurrency.yaml"])
def test_a_spec_survives_a_round_trip_through_its_user_facing_form(name: str) -> None:
    spec = load_spec(EXAMPLES / name)
    again = parse_spec(yaml.safe_dump(spec_to_dict(spec)))
    assert again == spec


def test_a_cr_shaped_document_reads_its_spec_key() -> None:
    doc = "apiVersion: x/v1\nkind: InferenceAutoscaler\nspec:\n" + "".join(
        "  " + line + "\n" for line in MINIMAL.splitlines())
    assert parse_spec(doc).policy == PolicyKind.HPA

"""The spec fields the core has and the boundary must parse: predictive's churn and capacity
settings, KEDA's activation, WVA's saturation thresholds.

Each is read from YAML (and from a CR) into the core spec; each bad value is one line naming
the field and its allowed range, and the CLI exits 2 on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.config import parse_spec, spec_to_dict
from autoscaler.controller.resource import parse_autoscaler
from autoscaler.core.spec import Spec
from autoscaler.errors import SpecError

BASE = """\
policy: predictive
maxReplicas: 10
capacity: {requestsPerSecond: 4, concurrency: 20}
"""


def _with(block: str, body: str) -> str:
    return BASE + f"{block}:\n" + "".join(f"  {line}\n" for line in body.splitlines())


def _core(spec: Spec, attr: str) -> Any:
    obj: Any = spec
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# (block, YAML body, core attribute, the value the core must hold). None of these is the
# default, so a field that is dropped at the boundary fails here.
SET = [
    pytest.param("predictive", "scaleDownBand: 0.6", "predictive.scale_down_band", 0.6,
                 id="predictive.scaleDownBand"),
    pytest.param("predictive", "keepIdleColdStarts: 2.5", "predictive.keep_idle_cold_starts",
                 2.5, id="predictive.keepIdleColdStarts"),
    pytest.param("predictive", "learnCapacity: false", "predictive.learn_capacity", False,
                 id="predictive.learnCapacity"),
    pytest.param("keda", "activationThreshold: 3", "keda.activation_threshold", 3.0,
                 id="keda.activationThreshold"),
    pytest.param("keda", "cooldownPeriod: 45", "keda.cooldown_s", 45.0,
                 id="keda.cooldownPeriod"),
    pytest.param("wva", "kvCacheThreshold: 0.6", "wva.kv_cache_threshold", 0.6,
                 id="wva.kvCacheThreshold"),
    pytest.param("wva", "scaleUpThreshold: 0.9", "wva.scale_up_threshold", 0.9,
                 id="wva.scaleUpThreshold"),
    pytest.param("wva", "scaleDownThreshold: 0.5", "wva.scale_down_threshold", 0.5,
                 id="wva.scaleDownThreshold"),
]


@pytest.mark.parametrize(("block", "body", "attr", "value"), SET)
def test_each_field_reaches_the_core_spec(block: str, body: str, attr: str,
                                          value: object) -> None:
    assert _core(parse_spec(_with(block, body)), attr) == value


@pytest.mark.parametrize(("block", "body", "attr", "value"), SET)
def test_each_field_reaches_the_core_spec_from_a_custom_resource(
        block: str, body: str, attr: str, value: object) -> None:
    spec = yaml.safe_load(_with(block, body))
    spec["scaleTargetRef"] = {"name": "web"}
    cr = {"metadata": {"namespace": "ns", "name": "a"}, "spec": spec}
    assert _core(parse_autoscaler(cr).spec, attr) == value


@pytest.mark.parametrize(("block", "body", "attr", "value"), SET)
def test_each_field_survives_the_emitted_form(block: str, body: str, attr: str,
                                              value: object) -> None:
    spec = parse_spec(_with(block, body))
    assert _core(parse_spec(yaml.safe_dump(spec_to_dict(spec))), attr) == value


# (block, YAML body, the error's field, the allowed range it must state). Ranges are the
# issue's: the band 0.5..1, up to 10 cold starts, thresholds fractions above 0.
BAD = [
    pytest.param("predictive", "scaleDownBand: 0.4", "predictive.scaleDownBand",
                 ">= 0.5 and <= 1", id="band below 0.5"),
    pytest.param("predictive", "scaleDownBand: 1.2", "predictive.scaleDownBand",
                 ">= 0.5 and <= 1", id="band above 1"),
    pytest.param("predictive", "keepIdleColdStarts: -1", "predictive.keepIdleColdStarts",
                 ">= 0 and <= 10", id="negative cold starts"),
    pytest.param("predictive", "keepIdleColdStarts: 11", "predictive.keepIdleColdStarts",
                 ">= 0 and <= 10", id="eleven cold starts"),
    pytest.param("predictive", "learnCapacity: 'yes'", "predictive.learnCapacity",
                 "bool", id="learnCapacity a string"),
    pytest.param("predictive", "learnCapacity: 1", "predictive.learnCapacity",
                 "bool", id="learnCapacity a number"),
    pytest.param("keda", "activationThreshold: -0.5", "keda.activationThreshold",
                 ">= 0", id="negative activation"),
    pytest.param("keda", "cooldownPeriod: 90000", "keda.cooldownPeriod",
                 "<= 86400", id="cooldown over a day"),
    pytest.param("keda", "cooldownPeriod: true", "keda.cooldownPeriod",
                 "a number", id="cooldown true"),
    pytest.param("wva", "kvCacheThreshold: 0", "wva.kvCacheThreshold",
                 "> 0 and <= 1", id="kv threshold zero"),
    pytest.param("wva", "scaleUpThreshold: 1.5", "wva.scaleUpThreshold",
                 "> 0 and <= 1", id="up threshold above 1"),
    # Cross-field: the default scale-up threshold is 0.85, so 0.9 is above the allowed range.
    pytest.param("wva", "scaleDownThreshold: 0.9", "wva.scaleDownThreshold",
                 "> 0 and <= 0.85", id="down above up"),
    pytest.param("wva", "scaleUpThreshold: 0.6", "wva.scaleDownThreshold",
                 "> 0 and <= 0.6", id="up below the default down"),
    pytest.param("keda", "pollingInterval: 30", "keda.pollingInterval",
                 "no such field", id="unknown keda field"),
]


@pytest.mark.parametrize(("block", "body", "field", "allowed"), BAD)
def test_a_bad_value_names_the_field_and_its_range(block: str, body: str, field: str,
                                                   allowed: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_with(block, body), source="s.yaml")
    text = str(info.value)
    assert info.value.field == field
    assert "\n" not in text
    # The block starts on line 4, its only field on line 5.
    assert text.startswith(f"s.yaml:5: {field}") or text.startswith(f"s.yaml:4: {field}"), text
    assert allowed in text, text


@pytest.mark.parametrize(("block", "body", "field", "allowed"), BAD)
def test_a_bad_value_in_a_custom_resource_names_the_field(block: str, body: str, field: str,
                                                          allowed: str) -> None:
    spec = yaml.safe_load(_with(block, body))
    spec["scaleTargetRef"] = {"name": "web"}
    with pytest.raises(SpecError) as info:
        parse_autoscaler({"metadata": {"namespace": "ns", "name": "a"}, "spec": spec})
    assert info.value.field == "spec." + field
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("block", "body", "field", "allowed"), BAD[:2] + BAD[-3:-1])
def test_the_cli_exits_2_with_one_line(tmp_path: Path, block: str, body: str, field: str,
                                       allowed: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(_with(block, body))
    proc = subprocess.run([sys.executable, "-m", "autoscaler.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert field in lines[0] and allowed in lines[0]
    assert "Traceback" not in proc.stderr

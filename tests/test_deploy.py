"""The deploy/ artifacts: the CRD generated from the model, RBAC, the controller's
Deployment, the example CRs, the Grafana dashboard, kustomize and Helm.

The CRD is checked three ways: it is exactly what ``build_crd()`` generates now (so it
cannot drift from the model), it is structural (what the API server demands of a v1 CRD),
and a small OpenAPI validator written here (independently of pydantic) reaches the same
verdict as ``parse_autoscaler`` on every bound and enum of the schema. Applying these files
to a real API server is the e2e tier's job.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.controller.crd import FIELD_DESCRIPTIONS, build_crd, main, render_crd_yaml
from autoscaler.controller.resource import GROUP, KIND, PLURAL, VERSION, parse_autoscaler
from autoscaler.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "inference-autoscaler"
CONTROLLER_NS = "inference-autoscaler"
SA_NAME = "inference-autoscaler-controller"


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def kustomize_docs(folder: Path) -> list[dict[str, Any]]:
    """What ``kubectl apply -k folder`` applies: every resource file, recursively (kustomize
    itself is not installed here; our kustomizations use only ``resources`` and
    ``namespace``/``images``, which do not change which objects there are)."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: list[dict[str, Any]] = []
    for entry in kust["resources"]:
        target = (folder / entry).resolve()
        docs += kustomize_docs(target) if target.is_dir() else load_docs(target)
    return docs


@functools.cache
def crd_root_schema() -> dict[str, Any]:
    """deploy/crd.yaml's schema, parsed once (callers must not change it)."""
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text(encoding="utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd_root_schema()["properties"]["spec"]
    return schema


# --- the CRD is the model's ------------------------------------------------------------

def test_the_checked_in_crd_is_exactly_what_build_crd_generates() -> None:
    text = (DEPLOY / "crd.yaml").read_text(encoding="utf-8")
    assert text == render_crd_yaml(), (
        "deploy/crd.yaml is stale: python -m autoscaler.controller.crd deploy/crd.yaml "
        "deploy/helm/inference-autoscaler/crds/crd.yaml")
    assert yaml.safe_load(text) == build_crd()
    assert text.startswith("# GENERATED")


def test_the_helm_chart_ships_the_same_crd() -> None:
    assert (CHART / "crds" / "crd.yaml").read_text(encoding="utf-8") == (
        DEPLOY / "crd.yaml").read_text(encoding="utf-8")


def test_the_entry_point_writes_the_crd_to_every_path_given(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert main([str(a), str(b)]) == 0
    assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8") == render_crd_yaml()


def test_the_crd_names_group_version_kind_and_columns() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"]["kind"] == KIND and spec["names"]["shortNames"] == ["ias"]
    (version,) = spec["versions"]
    assert version["name"] == VERSION and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["jsonPath"], c["type"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Target": (".spec.scaleTargetRef.name", "string"),
        "Mode": (".spec.mode", "string"),
        "Current": (".status.currentReplicas", "integer"),
        "Desired": (".status.desiredReplicas", "integer"),
        "Reason": (".status.reason", "string"),
        "Age": (".metadata.creationTimestamp", "date"),
    }
    # Every column's path exists in the schema (a typo would show an empty column).
    root = version["schema"]["openAPIV3Schema"]
    for path, _ in columns.values():
        parts = path.strip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = root
        for part in parts:
            node = node["properties"][part]


# --- structural ---------------------------------------------------------------------------

_FORBIDDEN = ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title",
              "nullable", "const", "prefixItems")
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_problems(node: Any, path: str = "") -> list[str]:
    """What makes a schema non-structural (or not OpenAPI v3.0) for the API server: a node
    without a type, a reference or a type-level combinator, ``properties`` together with
    ``additionalProperties``, ``additionalProperties: false`` (forbidden in v1), numeric
    exclusive bounds (2020-12 style), a ``required`` name with no property."""
    if not isinstance(node, dict):
        return [f"{path}: not a schema object"]
    problems = [f"{path}: {key}" for key in _FORBIDDEN if key in node]
    open_ended = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields")
    kind = node.get("type")
    if kind not in _TYPES and not open_ended:
        problems.append(f"{path}: type {kind!r}")
    for excl in ("exclusiveMinimum", "exclusiveMaximum"):
        if excl in node and not isinstance(node[excl], bool):
            problems.append(f"{path}: {excl} must be a boolean")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties")
    if node.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties false")
    if (kind != "object") and ("properties" in node or "additionalProperties" in node):
        problems.append(f"{path}: properties on a non-object")
    if kind == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{path}: array without a single items schema")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{path}: required {name!r} is not a property")
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]")
    return problems


def test_the_crd_schema_is_structural() -> None:
    assert structural_problems(crd_root_schema()) == []


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        pytest.param({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "$ref",
                     id="a reference left in"),
        pytest.param({"type": "object", "properties": {"a": {"anyOf": [
            {"type": "integer"}, {"type": "null"}]}}}, "anyOf", id="optional as anyOf"),
        pytest.param({"type": "object", "properties": {"a": {"description": "x"}}}, "type",
                     id="a node without a type"),
        pytest.param({"type": "number", "exclusiveMinimum": 0}, "boolean",
                     id="2020-12 exclusive bound"),
        pytest.param({"type": "object", "additionalProperties": False}, "false",
                     id="additionalProperties false"),
        pytest.param({"type": "array", "items": {"type": "object", "properties": {
            "x": {"type": "string"}}, "additionalProperties": {"type": "string"}}},
                     "additionalProperties", id="properties and a map at once"),
        pytest.param({"type": "object", "required": ["a"]}, "required", id="required ghost"),
    ],
)
def test_the_structural_checker_catches(schema: dict[str, Any], problem: str) -> None:
    problems = structural_problems(schema)
    assert problems and any(problem in p for p in problems), problems


def test_the_status_schema_is_explicit_with_a_condition_map() -> None:
    status = crd_root_schema()["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    assert set(status["properties"]) == {
        "observedGeneration", "currentReplicas", "desiredReplicas", "lastScaleTime",
        "lastDecisionTime", "reason", "message", "forecastRps", "demandRps", "forecastModel",
        "conditions", "learnedCapacity"}
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status"}
    assert status["properties"]["lastScaleTime"]["format"] == "date-time"


def property_paths(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path below spec, schema) for every property, ``[]`` for list items (the notation of
    ``FIELD_DESCRIPTIONS``)."""
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here, sub
        yield from property_paths(sub, here)
        if isinstance(sub.get("items"), dict):
            yield from property_paths(sub["items"], f"{here}[]")


def test_every_spec_field_is_described_and_no_description_is_orphaned() -> None:
    paths = dict(property_paths(spec_schema()))
    assert [p for p, node in paths.items() if not node.get("description")] == []
    orphans = set(FIELD_DESCRIPTIONS) - set(paths) - {"(spec)"}
    assert orphans == set(), "FIELD_DESCRIPTIONS names fields the model does not have"


def test_bounds_and_defaults_come_from_the_model() -> None:
    spec = spec_schema()["properties"]
    # Field(1, ge=0, le=100000): inclusive bounds and the default.
    assert spec["minReplicas"] == {**spec["minReplicas"], "type": "integer", "minimum": 0,
                                   "maximum": 100_000, "default": 1}
    assert "exclusiveMinimum" not in spec["minReplicas"]
    # requestsPerSecond: float, gt=0 -> a number above 0, zero excluded.
    rps = spec["capacity"]["properties"]["requestsPerSecond"]
    assert (rps["type"], rps["minimum"], rps["exclusiveMinimum"]) == ("number", 0, True)
    # Optional[int] with bounds: an integer, not required, not nullable.
    window = spec["behavior"]["properties"]["scaleUp"]["properties"][
        "stabilizationWindowSeconds"]
    assert (window["type"], window["minimum"], window["maximum"]) == ("integer", 0, 3600)
    assert "stabilizationWindowSeconds" not in spec["behavior"]["properties"]["scaleUp"].get(
        "required", [])
    assert spec["mode"]["enum"] == ["Scale", "Metrics", "Shadow"]
    assert spec["mode"]["default"] == "Scale"
    assert spec["metricsSource"]["properties"]["queries"]["additionalProperties"] == {
        "type": "string"}
    assert set(spec_schema()["required"]) == {"maxReplicas", "scaleTargetRef"}


def test_the_cel_rules_keep_min_below_max_with_a_readable_message() -> None:
    rules = {r["rule"]: r for r in spec_schema()["x-kubernetes-validations"]}
    rule = rules["self.minReplicas <= self.maxReplicas"]
    assert rule["message"] == "minReplicas must be <= maxReplicas"
    # The rule reads minReplicas unguarded: only safe because the API server defaults it.
    assert spec_schema()["properties"]["minReplicas"]["default"] == 1
    assert any("self.fallback.replicas" in r for r in rules)


# --- an independent OpenAPI validator, and agreement with the model ----------------------

def schema_errors(value: Any, node: dict[str, Any], path: str = "spec") -> list[str]:
    """Validate like the API server's OpenAPI v3.0 validation (plus strict field validation:
    unknown fields are errors), for the keywords our CRD uses. CEL rules are not run."""
    kind = node["type"]
    checks = {"object": isinstance(value, dict), "array": isinstance(value, list),
              "string": isinstance(value, str), "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, int | float) and not isinstance(value, bool)}
    if not checks[kind]:
        return [f"{path}: not a {kind}"]
    errors: list[str] = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: not one of {node['enum']}")
    if "minimum" in node and (value <= node["minimum"] if node.get("exclusiveMinimum")
                              else value < node["minimum"]):
        errors.append(f"{path}: below minimum")
    if "maximum" in node and (value >= node["maximum"] if node.get("exclusiveMaximum")
                              else value > node["maximum"]):
        errors.append(f"{path}: above maximum")
    if kind == "string":
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", 1e9):
            errors.append(f"{path}: length")
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{path}: pattern")
    if kind == "object":
        errors += [f"{path}.{k}: required" for k in node.get("required", []) if k not in value]
        props = node.get("properties")
        for key, sub in value.items():
            if props is not None:
                if key not in props:
                    errors.append(f"{path}.{key}: unknown field")
                else:
                    errors += schema_errors(sub, props[key], f"{path}.{key}")
            elif "additionalProperties" in node:
                errors += schema_errors(sub, node["additionalProperties"], f"{path}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(item, node["items"], f"{path}[{i}]")
    return errors


def test_the_validator_rejects_what_it_should() -> None:
    node = {"type": "object", "required": ["n"], "properties": {
        "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}}}
    assert schema_errors({"n": 1}, node) == []
    assert schema_errors({"n": 0}, node) == ["spec.n: below minimum"]
    assert schema_errors({"n": 1.5}, node) == ["spec.n: not a integer"]
    assert schema_errors({"n": True}, node) == ["spec.n: not a integer"]
    assert schema_errors({}, node) == ["spec.n: required"]
    assert schema_errors({"n": 1, "m": 2}, node) == ["spec.m: unknown field"]


def test_every_default_in_the_schema_is_valid_for_its_own_field() -> None:
    # The API server refuses a CRD whose default does not validate.
    for path, node in property_paths(spec_schema()):
        if "default" in node:
            assert schema_errors(node["default"], node, path) == [], path


# A spec that sets every object the schema has, so each leaf can be varied alone. min 0 and
# max 100000 leave every replica-count leaf free to reach its own bounds without tripping
# the model's cross-field checks (min <= max, staticReplicas within them).
FULL_SPEC: dict[str, Any] = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
    "mode": "Scale", "policy": "hpa", "minReplicas": 0, "maxReplicas": 100_000,
    "metrics": [{"metric": "concurrency", "target": {"type": "AverageValue", "value": 16}}],
    "behavior": {side: {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                        "tolerance": 0.1,
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}
                 for side in ("scaleUp", "scaleDown")},
    "slo": {"ttftSeconds": 2, "targetAttainment": 0.99},
    "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
    "coldStartSeconds": 120, "syncPeriodSeconds": 15, "maxMetricAgeSeconds": 60,
    "kpa": {"metric": "concurrency", "targetUtilization": 0.7, "stableWindowSeconds": 60,
            "panicWindowPercentage": 10, "panicThresholdPercentage": 200,
            "maxScaleUpRate": 1000, "maxScaleDownRate": 2, "scaleDownDelaySeconds": 0},
    "predictive": {"headroomQuantile": 0.9, "targetUtilization": 0.85, "historySeconds": 1800,
                   "backlogDrainSeconds": 30, "scaleDownWindowSeconds": 120,
                   "forecaster": "trend", "scaleDownBand": 0.85, "keepIdleColdStarts": 1,
                   "learnCapacity": True},
    "keda": {"activationThreshold": 0, "cooldownPeriod": 300},
    # wva.scaleDownThreshold <= scaleUpThreshold is a CEL rule (not run here): up at 1 and
    # down at its smallest probe (1e-6) let each reach its own bounds without crossing.
    "wva": {"kvCacheThreshold": 0.8, "scaleUpThreshold": 1.0, "scaleDownThreshold": 1e-6},
    "metricsSource": {"preset": "vllm", "selector": "", "namespaceLabel": "namespace",
                      "workloadLabel": "workload", "workload": "web", "window": "1m",
                      "queries": {}},
    "fallback": {"failureThreshold": 3, "replicas": 0},
}


def probes() -> Iterator[Any]:
    """(path, value, id) at and just past every bound, and every enum value and one more."""
    for path, node in property_paths(spec_schema()):
        kind = node["type"]
        if kind not in ("integer", "number"):
            step: float = 1
        else:
            # Past a float bound by a step it can represent: 1e9 + 1e-6 rounds to 1e9.
            bounds = [abs(node.get(k, 0)) for k in ("minimum", "maximum")]
            step = 1 if kind == "integer" else max(1e-6, max(bounds) * 1e-9)
        for bound, sign, excl in (("minimum", -1, "exclusiveMinimum"),
                                  ("maximum", 1, "exclusiveMaximum")):
            if bound in node:
                b = node[bound]
                inside = b - sign * step if node.get(excl) else b
                for value in (inside, inside + sign * step):
                    yield pytest.param(path, value, id=f"{path}={value}")
        for value in node.get("enum", []):
            yield pytest.param(path, value, id=f"{path}={value}")
        if "enum" in node:
            yield pytest.param(path, "NotAnOption", id=f"{path}=NotAnOption")
        if kind == "string" and "maxLength" in node:
            for n in (node["maxLength"], node["maxLength"] + 1):
                yield pytest.param(path, "a" * n, id=f"{path}=len{n}")
        if kind == "string" and node.get("minLength"):
            yield pytest.param(path, "", id=f"{path}=empty")
        if "pattern" in node:
            for value in ("90s", "250ms", "1 m", "1d"):
                yield pytest.param(path, value, id=f"{path}={value}")


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.replace("[]", ".[]").split(".")
    node: Any = doc
    for part in parts[:-1]:
        node = node[0] if part == "[]" else node[part]
    node[parts[-1]] = value


def model_accepts(spec: dict[str, Any]) -> bool:
    try:
        parse_autoscaler({"metadata": {"namespace": "ns", "name": "x"}, "spec": spec})
    except SpecError:
        return False
    return True


def test_the_full_spec_is_valid_both_ways() -> None:
    assert model_accepts(FULL_SPEC)
    assert schema_errors(FULL_SPEC, spec_schema()) == []


@pytest.mark.parametrize(("path", "value"), list(probes()))
def test_the_crd_schema_and_the_model_agree_at_every_bound_and_enum(path: str,
                                                                    value: Any) -> None:
    spec = copy.deepcopy(FULL_SPEC)
    if not path.startswith("fallback"):
        # fallback.replicas must lie within [minReplicas, maxReplicas] (a CEL rule, which
        # schema_errors does not run): keep it out of probes of the other fields.
        spec.pop("fallback", None)
    set_path(spec, path, value)
    by_schema = schema_errors(spec, spec_schema()) == []
    assert by_schema == model_accepts(spec), (
        f"{path}={value!r}: the API server would {'accept' if by_schema else 'reject'} "
        f"what the model {'rejects' if by_schema else 'accepts'}")


def test_a_field_the_schema_leaves_unbounded_is_unbounded_for_the_model_too() -> None:
    # Else the API server stores a CR the controller can only mark invalid. Every number
    # is bounded today (fallback.replicas by maxReplicas, through a CEL rule), so this
    # guards fields added later.
    unbounded = [p for p, node in property_paths(spec_schema())
                 if node["type"] in ("integer", "number") and "maximum" not in node
                 and p != "fallback.replicas"]
    for path in unbounded:
        spec = _with(path, 10**15)
        assert schema_errors(spec, spec_schema()) == [], path
        assert model_accepts(spec), path


def test_probes_cover_both_verdicts() -> None:
    # The agreement test is only worth something if it sees rejections as well.
    verdicts = Counter(
        model_accepts(s) for s in (
            _with(p.values[0], p.values[1]) for p in probes()))
    assert verdicts[True] > 20 and verdicts[False] > 20, verdicts


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(FULL_SPEC)
    set_path(spec, path, value)
    return spec


# --- example CRs --------------------------------------------------------------------------

EXAMPLE_CRS = sorted((DEPLOY / "examples").glob("*-autoscaler.yaml"))


def test_there_are_vllm_and_triton_examples() -> None:
    assert {p.name for p in EXAMPLE_CRS} >= {"vllm-autoscaler.yaml", "triton-autoscaler.yaml"}


@pytest.mark.parametrize("path", EXAMPLE_CRS, ids=lambda p: p.name)
def test_every_example_cr_is_valid_for_the_model_and_the_crd(path: Path) -> None:
    (doc,) = load_docs(path)
    assert (doc["apiVersion"], doc["kind"]) == (f"{GROUP}/{VERSION}", KIND)
    autoscaler = parse_autoscaler(doc)
    assert schema_errors(doc["spec"], spec_schema()) == []
    # What the CEL rules check (not run by the validator above).
    spec = autoscaler.spec
    assert spec.min_replicas <= spec.max_replicas
    if autoscaler.fallback is not None:
        assert spec.min_replicas <= autoscaler.fallback.replicas <= spec.max_replicas


def test_the_examples_show_what_they_promise() -> None:
    vllm = parse_autoscaler(load_docs(DEPLOY / "examples" / "vllm-autoscaler.yaml")[0])
    triton = parse_autoscaler(load_docs(DEPLOY / "examples" / "triton-autoscaler.yaml")[0])
    assert (vllm.mode, vllm.spec.policy.value, vllm.source.preset, vllm.target.kind) == (
        "Scale", "predictive", "vllm", "Deployment")
    assert (triton.mode, triton.source.preset) == ("Shadow", "triton")
    assert triton.fallback is not None


# --- RBAC ---------------------------------------------------------------------------------

CLUSTER_RULES = {
    ("inference.autoscaler.dev", "inferenceautoscalers"): {"get", "list", "watch"},
    ("inference.autoscaler.dev", "inferenceautoscalers/status"): {"get", "update", "patch"},
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "statefulsets"): {"get", "list", "watch"},
    ("apps", "deployments/scale"): {"get", "update", "patch"},
    ("apps", "statefulsets/scale"): {"get", "update", "patch"},
    # Read only: pods Pending for want of GPUs stop scale-ups (CapacityAvailable).
    ("", "pods"): {"get", "list"},
    # Read only: an HPA or KEDA ScaledObject on the same workload stops our writes.
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch"},
    ("keda.sh", "scaledobjects"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update",
                                                   "patch"}}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def rbac_objects(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs if d["apiVersion"].startswith("rbac.")}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [pytest.param("ClusterRole", CLUSTER_RULES, id="cluster role: CRs, scale, events"),
     pytest.param("Role", LEASE_RULES, id="namespaced role: leases only")],
)
def test_rbac_grants_exactly_the_listed_verbs(kind: str,
                                              expected: dict[tuple[str, str], set[str]]) -> None:
    role = rbac_objects(load_docs(DEPLOY / "rbac.yaml"))[kind]
    assert grants(role["rules"]) == expected


@pytest.mark.parametrize("resource", ["secrets", "pods/exec", "pods/log", "pods/status", "*",
                                      "configmaps", "serviceaccounts/token"])
def test_rbac_grants_nothing_on(resource: str) -> None:
    """Nothing at all on these; pods themselves are read only (checked verb by verb in
    ``CLUSTER_RULES``: get and list, no write, no watch)."""
    text = (DEPLOY / "rbac.yaml").read_text(encoding="utf-8")
    docs = load_docs(DEPLOY / "rbac.yaml")
    for role in rbac_objects(docs).values():
        for (_, res), verbs in grants(role.get("rules", [])).items():
            assert res != resource
            assert "*" not in verbs and "delete" not in verbs and "deletecollection" not in verbs
    # Only comments may mention these words.
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert f'"{resource}"' not in code


def test_rbac_bindings_point_at_the_controller_service_account() -> None:
    objs = rbac_objects(load_docs(DEPLOY / "rbac.yaml"))
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = objs[binding]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role,
                                "name": objs[role]["metadata"]["name"]}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME,
                                  "namespace": CONTROLLER_NS}]
    # Leases in the controller's namespace only.
    assert objs["Role"]["metadata"]["namespace"] == CONTROLLER_NS
    assert objs["RoleBinding"]["metadata"]["namespace"] == CONTROLLER_NS


# --- the controller Deployment ------------------------------------------------------------

def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def check_controller(docs: list[dict[str, Any]]) -> None:
    """The Deployment and Service of the controller, as kustomize or Helm renders them."""
    objs = by_kind(docs)
    deploy, service = objs["Deployment"], objs["Service"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deploy["spec"]["replicas"] == 2
    assert container["command"] == ["autoscaler"]
    args = container["args"]
    assert args[0] == "controller" and "--leader-elect" in args
    assert args[args.index("--metrics-port") + 1] == "8080"
    assert args[args.index("--prometheus-url") + 1] == "http://prometheus-operated.monitoring:9090"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["OPENBLAS_NUM_THREADS"]["value"] == "1"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "https": 6443}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == 8080
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"memory": "512Mi"}}
    sc, psc = container["securityContext"], pod["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True
    assert sc.get("runAsUser", psc.get("runAsUser")) == 65532
    assert sc.get("seccompProfile", psc.get("seccompProfile")) == {"type": "RuntimeDefault"}
    assert "privileged" not in sc and "hostNetwork" not in pod and "hostPID" not in pod
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The Service reaches these pods, on the named ports.
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "metrics": (8080, "metrics"), "https": (6443, "https")}
    assert pod["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"]


def test_the_controller_deployment_has_probes_limits_and_a_locked_down_context() -> None:
    check_controller(kustomize_docs(DEPLOY))


def test_the_service_monitor_scrapes_the_metrics_port() -> None:
    (monitor,) = load_docs(DEPLOY / "servicemonitor.yaml")
    service = by_kind(kustomize_docs(DEPLOY))["Service"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


# --- kustomize ----------------------------------------------------------------------------

BASE_KINDS = Counter({"CustomResourceDefinition": 1, "Namespace": 1, "ServiceAccount": 1,
                      "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
                      "Deployment": 1, "Service": 1, "NetworkPolicy": 1,
                      "PodDisruptionBudget": 1})


def test_the_kustomization_lists_files_that_exist() -> None:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kust["namespace"] == CONTROLLER_NS
    for entry in kust["resources"]:
        assert (DEPLOY / entry).is_file(), entry
        assert load_docs(DEPLOY / entry), entry


def test_kubectl_kustomize_renders_the_base() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl (its built-in kustomize renders the base)")
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert Counter(d["kind"] for d in docs) == BASE_KINDS
    check_controller(docs)
    assert by_kind(docs)["CustomResourceDefinition"] == build_crd()


def check_guards(docs: list[dict[str, Any]]) -> None:
    """The NetworkPolicy and PodDisruptionBudget select exactly the controller's pods, and
    the policy opens exactly the ports the controller uses."""
    objs = by_kind(docs)
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    policy, pdb = objs["NetworkPolicy"], objs["PodDisruptionBudget"]
    for selector in (policy["spec"]["podSelector"], pdb["spec"]["selector"]):
        match = selector["matchLabels"]
        assert match and match.items() <= pod_labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    container = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    served = {p["containerPort"] for p in container["ports"]}
    ingress = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress == served == {8080, 6443}
    egress = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"]
              for p in rule["ports"]}
    # DNS both ways, the API server (Service 443, endpoint 6443), Prometheus (9090, 9091).
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (9090, "TCP"),
                      (9091, "TCP")}
    # With 2 replicas, a drain may take one at a time: the standby keeps the lease.
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]


def test_the_base_has_a_network_policy_and_a_disruption_budget() -> None:
    check_guards(kustomize_docs(DEPLOY))


def test_the_base_holds_the_controller_and_nothing_else() -> None:
    docs = kustomize_docs(DEPLOY)
    assert Counter(d["kind"] for d in docs) == BASE_KINDS
    namespaced = [d for d in docs if d["kind"] not in {
        "CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}]
    assert {d["metadata"]["namespace"] for d in namespaced} == {CONTROLLER_NS}
    assert by_kind(docs)["Namespace"]["metadata"]["name"] == CONTROLLER_NS


# --- Grafana ------------------------------------------------------------------------------

COUNTERS = {"autoscaler_decisions_total", "autoscaler_errors_total"}
HISTOGRAMS = {"autoscaler_cycle_seconds", "autoscaler_prometheus_query_seconds"}
GAUGES = {"autoscaler_desired_replicas", "autoscaler_current_replicas",
          "autoscaler_forecast_rps", "autoscaler_demand_rps", "autoscaler_is_leader",
          "autoscaler_learned_capacity_rps", "autoscaler_learned_capacity_lower_rps",
          "autoscaler_learned_capacity_upper_rps", "autoscaler_learned_capacity_relative_sd"}
ALLOWED_SERIES = COUNTERS | GAUGES | {h + s for h in HISTOGRAMS
                                      for s in ("_bucket", "_sum", "_count")}
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                 "bool", "and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions (followed by
    ``(``), keywords, label names inside ``{}`` / ``by ()``, or template variables. Grafana's
    ``label_values(expr, label)`` is read as ``expr``."""
    expr = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr.strip())
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                     # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                    # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)                   # $namespace, $__rate_interval
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        word = match.group(0)
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d*e\d*", word):                    # 1e6 split by the regex
            continue
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param('sum by (reason) (rate(autoscaler_decisions_total{ns=~"$ns"}[5m]))',
                     {"autoscaler_decisions_total"}, id="counter rate"),
        pytest.param("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))",
                     {"x_bucket"}, id="histogram quantile"),
        pytest.param("a and on (instance) (b == 1)", {"a", "b"}, id="set operation"),
        pytest.param('label_values(up{job="x"}, namespace)', {"up"}, id="grafana variable"),
    ],
)
def test_the_promql_name_extractor(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    out = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"${var['name']}", var["query"]["query"]))
    return out


def test_the_dashboard_queries_only_the_controllers_metrics_and_all_of_them() -> None:
    used: set[str] = set()
    for title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names and names <= ALLOWED_SERIES, (title, names - ALLOWED_SERIES)
        used |= names
    # Every metric the controller exports has a panel (histograms through any series).
    for metric in COUNTERS | GAUGES:
        assert metric in used, metric
    for metric in HISTOGRAMS:
        assert used & {metric + "_bucket", metric + "_sum", metric + "_count"}, metric


def test_the_dashboard_is_templated_on_namespace_and_autoscaler() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"namespace", "autoscaler"} <= variables
    per_autoscaler = [e for _, e in dashboard_exprs() if re.search(
        r"autoscaler_(decisions_total|desired_replicas|current_replicas|forecast_rps|"
        r"demand_rps)\{", e)]
    assert per_autoscaler
    for expr in per_autoscaler:
        if expr.startswith("label_values"):
            continue
        assert '"$namespace"' in expr and '"$autoscaler"' in expr, expr
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


# --- Dockerfile ---------------------------------------------------------------------------

def test_the_dockerfile_runs_the_controller_as_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8")
             .splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")):]
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["autoscaler"]' in final and 'CMD ["controller"]' in final
    assert any(line.startswith("RUN pip install") and line.endswith(" .") for line in lines)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".cache", "tests"} <= set(ignored)
    assert "autoscaler" not in ignored and "pyproject.toml" not in ignored


# --- Helm ---------------------------------------------------------------------------------

def helm_binary() -> str | None:
    for candidate in (os.environ.get("HELM"), str(ROOT / ".cache" / "bin" / "helm"),
                      shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    helm = helm_binary()
    if helm is None:
        pytest.skip("no helm binary (HELM, .cache/bin/helm or PATH): "
                    "GOBIN=.cache/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0")
    return subprocess.run([helm, "template", "inference-autoscaler", str(CHART),
                           "--namespace", CONTROLLER_NS, "--kube-version", "1.35.0", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_chart_values_name_what_the_brief_asks_for() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert {"image", "replicas", "prometheus", "resources", "leaderElection",
            "serviceMonitor"} <= set(values)
    assert values["serviceMonitor"]["enabled"] is False
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["name"] == CHART.name


def test_helm_renders_the_same_objects_as_the_kustomize_base() -> None:
    result = helm_template("--include-crds")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    # Helm leaves the namespace to `--create-namespace`; everything else is the base's.
    assert Counter(d["kind"] for d in docs) == BASE_KINDS - Counter({"Namespace": 1})
    check_controller(docs)
    check_guards(docs)
    base = kustomize_docs(DEPLOY)
    for kind in ("ClusterRole", "Role"):
        assert grants(by_kind(docs)[kind]["rules"]) == grants(by_kind(base)[kind]["rules"])
    for d in docs:
        base_doc = next(b for b in base if b["kind"] == d["kind"])
        assert d["metadata"]["name"] == base_doc["metadata"]["name"], d["kind"]
    assert by_kind(docs)["CustomResourceDefinition"] == build_crd()


def test_helm_adds_the_service_monitor_and_extra_scale_targets_on_request() -> None:
    result = helm_template("--set", "serviceMonitor.enabled=true",
                           "--set", "rbac.extraScaleTargets[0].apiGroup=lws.x-k8s.io",
                           "--set", "rbac.extraScaleTargets[0].resource=leaderworkersets")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert by_kind(docs)["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "metrics"
    rules = grants(by_kind(docs)["ClusterRole"]["rules"])
    assert rules[("lws.x-k8s.io", "leaderworkersets/scale")] == {"get", "update", "patch"}
    assert rules[("lws.x-k8s.io", "leaderworkersets")] == {"get", "list", "watch"}


def test_helm_refuses_two_replicas_without_leader_election() -> None:
    result = helm_template("--set", "leaderElection.enabled=false")
    assert result.returncode != 0
    assert "leaderElection" in result.stderr
    single = helm_template("--set", "leaderElection.enabled=false", "--set", "replicas=1")
    assert single.returncode == 0, single.stderr
    (deploy,) = [d for d in yaml.safe_load_all(single.stdout) if d and d["kind"] == "Deployment"]
    assert "--leader-elect" not in deploy["spec"]["template"]["spec"]["containers"][0]["args"]

"""The spec fields added for issue 13 against a real API server: the CRD's schema and CEL
rules accept what the model accepts and refuse what it refuses, with a readable message.
No controller runs here: this is the API server's verdict alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from test_controller_e2e import (  # noqa: F401 - installed is a fixture used here
    autoscaler_cr,
    create_cr,
    installed,
    read_cr,
)

NO_CAPACITY = object()
"""Marks a spec whose ``capacity`` is removed."""


def _body(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = autoscaler_cr(namespace, "fields")
    if spec.pop("capacity", None) is NO_CAPACITY:
        del body["spec"]["capacity"]
    body["spec"].update(spec)
    return body


@pytest.mark.parametrize("spec", [
    pytest.param({"predictive": {"scaleDownBand": 0.6, "keepIdleColdStarts": 2.5,
                                 "learnCapacity": False}}, id="predictive fields"),
    pytest.param({"keda": {"activationThreshold": 3, "cooldownPeriod": 45}}, id="keda"),
    pytest.param({"wva": {"kvCacheThreshold": 0.6, "scaleUpThreshold": 0.9,
                          "scaleDownThreshold": 0.5}}, id="wva"),
    pytest.param({"capacity": NO_CAPACITY}, id="predictive without capacity"),
])
def test_the_new_fields_are_stored_as_given(
        api_client: k8s.ApiClient, installed: Path, namespace: str,  # noqa: F811
        spec: dict[str, Any]) -> None:
    body = _body(namespace, dict(spec))
    create_cr(api_client, namespace, body)
    stored = read_cr(api_client, namespace, "fields")["spec"]
    for block, fields in spec.items():
        if fields is NO_CAPACITY:
            assert "capacity" not in stored
            continue
        for key, value in fields.items():
            assert stored[block][key] == value, (block, key)


@pytest.mark.parametrize(("spec", "words"), [
    pytest.param({"predictive": {"scaleDownBand": 0.4}}, "spec.predictive.scaleDownBand",
                 id="band below 0.5"),
    pytest.param({"keda": {"cooldownPeriod": 90000}}, "spec.keda.cooldownPeriod",
                 id="cooldown over a day"),
    pytest.param({"wva": {"scaleDownThreshold": 0.9}},
                 "wva.scaleDownThreshold must be <= wva.scaleUpThreshold",
                 id="wva down above up (CEL)"),
    pytest.param({"policy": "wva", "capacity": NO_CAPACITY}, "capacity is required",
                 id="wva without capacity (CEL)"),
    pytest.param({"predictive": {"learnCapacity": False}, "capacity": NO_CAPACITY},
                 "capacity is required", id="predictive not learning without capacity"),
])
def test_bad_values_are_refused_by_the_api_server_with_readable_messages(
        api_client: k8s.ApiClient, installed: Path, namespace: str,  # noqa: F811
        spec: dict[str, Any], words: str) -> None:
    with pytest.raises(ApiException) as info:
        create_cr(api_client, namespace, _body(namespace, dict(spec)))
    assert info.value.status == 422
    assert words in json.loads(info.value.body)["message"]

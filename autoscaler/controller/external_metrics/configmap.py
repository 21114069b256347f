"""The request-header settings the cluster publishes for aggregated API servers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: serving the API needs no cluster client at import time
    from autoscaler.controller.kube import RawConfigMap

AUTH_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


def request_header_auth(get: Callable[[str], RawConfigMap | None], directory: str
                        ) -> tuple[str, tuple[str, ...]]:
    """The request-header CA (written to a file in ``directory``) and allowed names that the
    cluster publishes in kube-system/extension-apiserver-authentication, as every
    aggregated API server reads them (deploy/external-metrics/rbac.yaml grants the read).

    ``get(path)`` returns the parsed JSON of a GET on the API server. The allowed names are
    a JSON list in the ConfigMap (``["front-proxy-client"]``); empty means any CN.
    """
    configmap = get(AUTH_CONFIGMAP)
    data = (configmap.get("data") if configmap else None) or {}
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        raise ValueError("kube-system/extension-apiserver-authentication has no "
                         "requestheader-client-ca-file: the API server runs without "
                         "--requestheader-client-ca-file, so it cannot proxy to us")
    names = tuple(str(n) for n in json.loads(data.get("requestheader-allowed-names") or "[]"))
    path = os.path.join(directory, "requestheader-client-ca.crt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(ca)
    return path, names

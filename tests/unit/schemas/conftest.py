"""Builders for schema tests: fresh manifest dicts and the locs a validation error carries."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import parse_object

_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "capstan.local/busybox:1",
                        "command": ["httpd", "-f", "-p", "8080"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                        },
                    }
                ]
            },
        },
    },
}

_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "one", "namespace": "default"},
    "spec": {"containers": [{"name": "main", "image": "capstan.local/busybox:1"}]},
}

_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
}

_NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "worker-1", "labels": {"zone": "a"}},
    "spec": {
        "address": "127.0.0.2",
        "ssh": {"user": "capstan", "identityFile": "~/.ssh/id_ed25519"},
        "hostKey": "SHA256:" + "A" * 43,
    },
}


@pytest.fixture
def deployment() -> dict[str, Any]:
    return copy.deepcopy(_DEPLOYMENT)


@pytest.fixture
def pod() -> dict[str, Any]:
    return copy.deepcopy(_POD)


@pytest.fixture
def service() -> dict[str, Any]:
    return copy.deepcopy(_SERVICE)


@pytest.fixture
def node() -> dict[str, Any]:
    return copy.deepcopy(_NODE)


def _error_locs(doc: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as info:
        parse_object(doc)
    return {tuple(error["loc"]): error["type"] for error in info.value.errors()}


@pytest.fixture
def error_locs() -> Callable[[dict[str, Any]], dict[tuple[str | int, ...], str]]:
    """Validate a document that must fail; return {loc: error type} of all its errors."""
    return _error_locs

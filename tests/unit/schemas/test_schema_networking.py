"""Ingress and IngressClass (schemas/networking.py) through the loader: accepted as real
repositories write them, refused with file, line and field path otherwise; which Ingresses
are Capstan's."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.source import ManifestErrors, load_repository
from schemas.networking import Ingress, IngressClass, is_capstan_class

GOOD = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: capstan
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: capstan.io/ingress
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: capstan
  defaultBackend:
    service: {name: web, port: {number: 80}}
  tls:
    - hosts: [shop.example.com, "*.example.com"]
      secretName: shop-tls
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend: {service: {name: api, port: {name: http}}}
          - pathType: ImplementationSpecific
            backend: {service: {name: web, port: {number: 80}}}
    - host: "*.example.com"
      http:
        paths:
          - path: /
            pathType: Exact
            backend: {service: {name: web, port: {number: 80}}}
"""

BAD = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bad
spec:
  rules:
    - host: 10.0.0.1
      http:
        paths:
          - path: relative
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80, name: http}}}
          - path: /x
            pathType: Regex
            backend: {resource: {kind: Bucket, name: b}}
    - host: "shop.example.com:8080"
"""


def test_real_ingresses_and_classes_load(tmp_path: Path) -> None:
    (tmp_path / "ingress.yaml").write_text(GOOD)
    loaded = {type(o.obj).__name__: o.obj for o in load_repository(tmp_path).objects}
    ingress = loaded["Ingress"]
    assert isinstance(ingress, Ingress)
    assert [b.name for b in ingress.spec.backends()] == ["web", "api", "web", "web"]
    assert isinstance(loaded["IngressClass"], IngressClass)


def test_bad_ingresses_are_refused_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    with pytest.raises(ManifestErrors) as caught:
        load_repository(tmp_path)
    found = {(e.line, e.field_path): e.message for e in caught.value.errors}
    assert sorted(found) == [
        (7, "spec.rules[0].host"),
        (10, "spec.rules[0].http.paths[0].path"),
        (12, "spec.rules[0].http.paths[0].backend.service.port"),
        (14, "spec.rules[0].http.paths[1].pathType"),
        (15, "spec.rules[0].http.paths[1].backend.resource"),
        (16, "spec.rules[1].host"),
    ]
    assert "not an IP address" in found[(7, "spec.rules[0].host")]
    assert (
        "exactly one of name and number"
        in found[(12, "spec.rules[0].http.paths[0].backend.service.port")]
    )
    assert "only to Services" in found[(15, "spec.rules[0].http.paths[1].backend.resource")]
    assert "without a port" in found[(16, "spec.rules[1].host")]


def _ingress(class_name: str | None = None, annotation: str | None = None) -> Ingress:
    return Ingress.model_validate(
        {
            "metadata": {
                "name": "i",
                "namespace": "default",
                "annotations": {"kubernetes.io/ingress.class": annotation} if annotation else {},
            },
            "spec": {
                "ingressClassName": class_name,
                "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            },
        }
    )


def _class(name: str, controller: str, *, default: bool = False) -> IngressClass:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return IngressClass.model_validate(
        {"metadata": {"name": name, "annotations": annotations}, "spec": {"controller": controller}}
    )


def test_which_ingresses_are_capstans() -> None:
    nginx = _class("nginx", "k8s.io/ingress-nginx")
    ours = _class("public", "capstan.io/ingress")
    assert is_capstan_class(_ingress("capstan"), [])
    assert is_capstan_class(_ingress("public"), [ours, nginx])
    assert not is_capstan_class(_ingress("nginx"), [ours, nginx])
    assert not is_capstan_class(_ingress("traefik"), [])
    assert not is_capstan_class(_ingress("capstan"), [_class("capstan", "example.com/other")])
    assert is_capstan_class(_ingress(annotation="capstan"), [])
    assert not is_capstan_class(_ingress(annotation="nginx"), [nginx])
    # No class: the default class decides; none marked default means Capstan's.
    assert is_capstan_class(_ingress(), [nginx])
    assert not is_capstan_class(_ingress(), [_class("nginx", "k8s.io/ingress-nginx", default=True)])
    assert is_capstan_class(_ingress(), [_class("public", "capstan.io/ingress", default=True)])

"""A Kustomize overlay repository deployed end to end: ``capstan up --path overlays/prod``.

The overlay (real kustomize) puts a base Deployment and a ``type: LoadBalancer`` Service into
namespace ``prod``, which no manifest defines (created, as Argo CD's CreateNamespace=true
does). The Service gets a node port and the node's address in ``status.loadBalancer.ingress``,
and the page answers there.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from reconciler.api import NotFound
from schemas import Namespace, Pod, Service
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.fixtures.waiting import wait_until

FILES = {
    "base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - service.yaml\n",
    "base/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: capstan.local/busybox:1
          command:
            - sh
            - -c
            - mkdir -p /www && echo "$GREETING" > /www/index.html && exec httpd -f -p 8080 -h /www
          env:
            - name: GREETING
              value: hello from base
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /, port: http}
            periodSeconds: 1
""",
    "base/service.yaml": """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
status:
  loadBalancer: {}
""",
    "overlays/prod/kustomization.yaml": """\
namespace: prod
resources:
  - node.yaml
  - ../../base
patches:
  - path: greeting.yaml
""",
    "overlays/prod/node.yaml": (
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: local\nspec:\n  address: local\n"
    ),
    "overlays/prod/greeting.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: httpd
          env:
            - name: GREETING
              value: hello from prod
""",
}


def page(address: str, port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=3) as reply:
            return str(reply.read().decode().strip())
    except OSError:
        return None


@pytest.fixture
def overlay(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("kustomize overlay", FILES)
    capstan = CapstanUp(repo, tmp_path, docker_client)
    try:
        capstan.start("--path", "overlays/prod")
        yield capstan
    finally:
        capstan.close()


def test_an_overlay_deploys_with_its_load_balancer(overlay: CapstanUp) -> None:
    up = overlay

    def load_balancer() -> Service | None:
        try:
            service = up.api.get(Service, "web", namespace="prod")
        except NotFound:
            return None
        lb = service.status.load_balancer if service.status else None
        ready = lb is not None and lb.ingress and service.spec.ports[0].node_port
        return service if ready else None

    service = wait_until(load_balancer, timeout=90, what="the Service with node port and ingress")
    assert up.api.get(Namespace, "prod").name == "prod"
    node_port = service.spec.ports[0].node_port
    assert node_port is not None
    (ingress,) = service.status.load_balancer.ingress  # type: ignore[union-attr]
    assert ingress.ip is not None
    wait_until(
        lambda: page(ingress.ip, node_port) == "hello from prod",
        timeout=90,
        what="the overlay's page on the load balancer address",
    )

    def ready_pods() -> list[Pod] | None:
        pods = up.api.list(Pod, namespace="prod").items
        ready = [p for p in pods if p.status and p.status.ready]
        return ready if len(ready) == 2 else None

    # The page answers as soon as one replica is Ready; the overlay asks for two.
    wait_until(ready_pods, timeout=90, what="both of the overlay's replicas Ready")

"""A StatefulSet's stable per-pod names through its headless Service, from inside another pod.

``capstan up`` on Docker runs a StatefulSet ``web`` (each pod's httpd answers with its own
hostname) behind the headless Service ``web``, and a plain client pod. From inside the client
(``docker exec``: the pod's own hosts file and in-pod forwarder, nothing of the test's),
``web-0.web``, ``web-1.web.default`` and ``web-0.web.default.svc.cluster.local`` each reach
exactly that pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import MANAGED_LABEL, CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE
from tests.fixtures.local_agent import BUSYBOX
from tests.fixtures.waiting import wait_until

MANIFESTS = f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 2
  serviceName: web
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: {BUSYBOX}
          command:
            - sh
            - -c
            - >-
              mkdir -p /tmp/www && hostname > /tmp/www/index.html &&
              exec httpd -f -p 8080 -h /tmp/www
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {BUSYBOX}
      command: ["sleep", "3600"]
"""


@pytest.fixture
def cluster(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("web and a client", {"node.yaml": NODE, "web.yaml": MANIFESTS})
    up = CapstanUp(repo, tmp_path, docker_client)
    try:
        up.start()
        yield up
    finally:
        up.close()


def _in_client(up: CapstanUp, *command: str) -> tuple[int, str]:
    (container,) = up.docker.containers.list(
        filters={
            "label": [
                f"{MANAGED_LABEL}={up.node}",
                "io.capstan.pod-name=client",
                "io.capstan.container=main",
            ]
        }
    )
    code, output = container.exec_run(list(command))
    return code, output.decode(errors="replace").strip()


def test_a_pod_reaches_each_statefulset_pod_by_its_own_name(cluster: CapstanUp) -> None:
    up = cluster
    wait_until(lambda: len(up.ready_pods("web")) == 2, timeout=90, what="web-0 and web-1 Ready")
    assert all(p.spec.subdomain == "web" for p in up.pods("web"))

    def answer(name: str) -> str | None:
        # WARNING: this busybox-static's wget crashes (SIGSEGV) when given -T.
        code, text = _in_client(up, "wget", "-qO-", f"http://{name}/")
        return text if code == 0 else None

    # The client's hosts file follows the endpoints (rewritten in place by the agent).
    try:
        wait_until(
            lambda: answer("web-0.web") == "web-0" and answer("web-1.web") == "web-1",
            timeout=30,
            what="web-0.web and web-1.web answering from the client pod",
        )
    except AssertionError:
        seen = {
            name: _in_client(up, "wget", "-O-", f"http://{name}/") for name in ("web-0.web", "web")
        }
        hosts = _in_client(up, "cat", "/etc/hosts")
        raise AssertionError(f"names not answering: {seen}\nhosts file: {hosts}") from None
    assert answer("web-1.web.default") == "web-1"
    assert answer("web-0.web.default.svc") == "web-0"
    assert answer("web-0.web.default.svc.cluster.local") == "web-0"
    # Each name is that pod's alone: many requests, never the other pod.
    assert {answer("web-0.web") for _ in range(10)} == {"web-0"}
    code, hosts = _in_client(up, "cat", "/etc/hosts")
    assert code == 0
    assert "web-0.web.default.svc.cluster.local" in hosts, hosts

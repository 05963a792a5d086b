"""Ingress end to end: ``capstan up`` on Docker, the agent's ingress proxy on high ports.

Two Deployments behind two Services; one Ingress routes ``a.example.test`` to one and
``b.example.test`` (TLS, a ``kubernetes.io/tls`` Secret made here) to the other. The test
reads both hosts over HTTP, the TLS host over HTTPS with SNI (verified against the test's own
CA), checks the Ingress's status and ``capstan get ingress``, and then rolls one Deployment
while a client loop counts failed requests through the ingress: there must be none.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schemas.networking import Ingress
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE
from tests.fixtures.waiting import wait_until

HTTP_PORT = random.randint(20000, 24999)
HTTPS_PORT = HTTP_PORT + 5000


def backend(app: str, version: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: page-{app}-{version}
data:
  index.html: "hello {app} {version}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{app}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web-{app}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web-{app}
      annotations:
        example.com/version: "{version}"
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: capstan.local/busybox:1
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: http
            periodSeconds: 1
          volumeMounts:
            - name: page
              mountPath: /www
      volumes:
        - name: page
          configMap:
            name: page-{app}-{version}
---
apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector:
    app: web-{app}
  ports:
    - name: http
      port: 80
      targetPort: http
"""


INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: sites
spec:
  ingressClassName: capstan
  tls:
    - hosts: [b.example.test]
      secretName: b-tls
  rules:
    - host: a.example.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: a
                port:
                  number: 80
    - host: b.example.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: b
                port:
                  name: http
"""


def tls_secret(host: str) -> tuple[str, bytes]:
    """A ``kubernetes.io/tls`` Secret manifest for ``host`` and the certificate (PEM) to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    manifest = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: b-tls
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(key_pem).decode()}
"""
    return manifest, chain


def get(address: str, host: str, path: str = "/") -> tuple[int, str]:
    """One request on a fresh connection to the ingress's HTTP port, with ``Host: host``."""
    connection = http.client.HTTPConnection(address, HTTP_PORT, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        connection.close()


def try_get(address: str, host: str) -> str | None:
    try:
        status, body = get(address, host)
    except (OSError, http.client.HTTPException):
        return None
    return body if status == 200 else None


def get_tls(address: str, host: str, trusted: bytes) -> str:
    """GET / over HTTPS with SNI ``host``, verifying the certificate against ``trusted``."""
    context = ssl.create_default_context(cadata=trusted.decode())
    with (
        socket.create_connection((address, HTTPS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode().strip()


@pytest.fixture
def served(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[tuple[CapstanUp, bytes]]:
    secret, trusted = tls_secret("b.example.test")
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "two sites",
        {
            "node.yaml": NODE,
            "a.yaml": backend("a", "v1"),
            "b.yaml": backend("b", "v1"),
            "ingress.yaml": INGRESS,
            "b-tls.yaml": secret,
        },
    )
    capstan = CapstanUp(repo, tmp_path, docker_client)
    try:
        capstan.start(
            f"--agent-arg=--ingress-http-port={HTTP_PORT}",
            f"--agent-arg=--ingress-https-port={HTTPS_PORT}",
        )
        yield capstan, trusted
    finally:
        capstan.close()


def _versions(up: CapstanUp, app: str) -> set[str | None]:
    return {p.metadata.annotations.get("example.com/version") for p in up.ready_pods(app)}


def test_ingress_routes_two_hosts_with_tls_and_no_failure_during_a_rollout(
    served: tuple[CapstanUp, bytes],
) -> None:
    up, trusted = served
    wait_until(
        lambda: (
            try_get(up.bind, "a.example.test") == "hello a v1"
            and try_get(up.bind, "b.example.test") == "hello b v1"
        ),
        timeout=90,
        what=f"the ingress on {up.bind}:{HTTP_PORT} routing both hosts",
    )
    assert get_tls(up.bind, "b.example.test", trusted) == "hello b v1"
    status, body = get(up.bind, "c.example.test")
    assert status == 404, body

    # One kept-alive client connection carries several requests.
    connection = http.client.HTTPConnection(up.bind, HTTP_PORT, timeout=5)
    try:
        for host in ("a.example.test", "b.example.test", "a.example.test"):
            connection.request("GET", "/", headers={"Host": host})
            response = connection.getresponse()
            assert response.status == 200
            assert response.read().decode().strip() == f"hello {host[0]} v1"
    finally:
        connection.close()

    def address_shown() -> bool:
        ingress = up.api.get(Ingress, "sites", namespace="default")
        balancer = ingress.status.load_balancer if ingress.status else None
        return balancer is not None and [e.ip for e in balancer.ingress] == [up.bind]

    wait_until(address_shown, timeout=30, what="the node's address in the Ingress status")
    table = up.cli("get", "ingress")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], table
    assert row.split()[:6] == [
        "sites",
        "capstan",
        "a.example.test,b.example.test",
        up.bind,
        "80,",
        "443",
    ]

    answers: list[str | None] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answers.append(try_get(up.bind, "a.example.test"))
            stop.wait(0.01)  # paces the client; ends it at once when told

    client = threading.Thread(target=hammer, daemon=True)
    client.start()
    try:
        up.repo.commit("a v2", {"a.yaml": backend("a", "v2")})
        wait_until(
            lambda: _versions(up, "web-a") == {"v2"} and len(up.pods("web-a")) == 2,
            timeout=90,
            what="web-a rolled out to v2",
        )
        wait_until(
            lambda: answers and answers[-1] == "hello a v2", timeout=15, what="ingress serving v2"
        )
    finally:
        stop.set()
        client.join()
    failed = [a for a in answers if a not in ("hello a v1", "hello a v2")]
    assert len(answers) > 50, f"only {len(answers)} requests ran during the rollout"
    assert not failed, f"{len(failed)} of {len(answers)} requests failed during the rollout"
    # The other host was never disturbed.
    assert try_get(up.bind, "b.example.test") == "hello b v1"

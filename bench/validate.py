"""Benchmark: render and validate a generated repository of 1,000 apps (5,000 objects).

Each app is a Deployment, Service, ConfigMap, ServiceAccount and Secret in
its own directory; every fourth app's Deployment and ConfigMap are Jinja2
templates reading values.yaml. The real ``load_repository`` runs twice: once
for time, once under tracemalloc for the loader's peak memory (tracemalloc
slows Python down, so it does not share a run with the clock).

    .venv/bin/python bench/validate.py [--apps N]

Prints a table and, as the last line, {"objects": N, "objects_per_s": X, "peak_mb": Y}.
Never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from reconciler.source import load_repository

VALUES = """\
image: capstan.local/busybox:1
version: "2.3.1"
replicas: 2
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  namespace: default
  labels: &labels
    app: {app}
    tier: {tier}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels: *labels
    spec:
      serviceAccountName: {app}
      containers:
        - name: main
          image: {image}
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: VERSION
              value: "{version}"
            - name: MODE
              valueFrom:
                configMapKeyRef:
                  name: {app}-config
                  key: mode
            - name: TOKEN
              valueFrom:
                secretKeyRef:
                  name: {app}-secret
                  key: token
          readinessProbe:
            httpGet:
              path: /
              port: http
          livenessProbe:
            tcpSocket:
              port: http
          resources:
            requests:
              cpu: 50m
              memory: 32Mi
            limits:
              cpu: "1"
              memory: 128Mi
          volumeMounts:
            - name: config
              mountPath: /www
      volumes:
        - name: config
          configMap:
            name: {app}-config
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector:
    app: {app}
  ports:
    - name: http
      port: 80
      targetPort: http
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-config
data:
  mode: fast
  version: "{version}"
  index.html: |
    <h1>{app}</h1>
    <p>version {version}</p>
"""

SERVICE_ACCOUNT = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {app}
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {app}-secret
type: Opaque
data:
  token: c2VjcmV0LXRva2Vu
"""


def generate(root: Path, *, apps: int) -> int:
    """Write the repository; returns the number of objects it holds."""
    (root / "values.yaml").write_text(VALUES)
    for index in range(apps):
        app = f"app-{index:04d}"
        directory = root / "apps" / app
        directory.mkdir(parents=True)
        templated = index % 4 == 0
        plain = {
            "app": app,
            "tier": "web" if index % 2 else "api",
            "image": "capstan.local/busybox:1",
            "version": "2.3.1",
            "replicas": 2,
        }
        if templated:
            jinja = dict(
                plain,
                image="{{ values.image }}",
                version="{{ values.version }}",
                replicas="{{ values.replicas }}",
            )
            (directory / "deployment.yaml.j2").write_text(DEPLOYMENT.format(**jinja))
            (directory / "configmap.yaml.j2").write_text(CONFIGMAP.format(**jinja))
        else:
            (directory / "deployment.yaml").write_text(DEPLOYMENT.format(**plain))
            (directory / "configmap.yaml").write_text(CONFIGMAP.format(**plain))
        (directory / "service.yaml").write_text(SERVICE.format(**plain))
        # Two objects in one file, as people write them.
        (directory / "access.yaml").write_text(
            SERVICE_ACCOUNT.format(**plain) + "---\n" + SECRET.format(**plain)
        )
    return apps * 5


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}   {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="capstan-bench-") as directory:
        root = Path(directory)
        expected = generate(root, apps=args.apps)
        files = sum(1 for path in root.rglob("*") if path.is_file())

        started = time.perf_counter()
        repository = load_repository(root)
        seconds = time.perf_counter() - started
        objects = len(repository.objects)
        if objects != expected:
            sys.exit(f"loaded {objects} objects, generated {expected}")

        tracemalloc.start()
        load_repository(root)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    peak_mb = peak / (1024 * 1024)
    # ru_maxrss is in KiB on Linux: the whole process, interpreter and imports included.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    objects_per_s = objects / seconds
    templates = sum(1 for index in range(args.apps) if index % 4 == 0) * 2
    print(
        table(
            [
                ("apps", f"{args.apps}"),
                ("files", f"{files} ({templates} Jinja2 templates)"),
                ("objects", f"{objects}"),
                ("load_repository", f"{seconds:.2f} s"),
                ("objects/s", f"{objects_per_s:,.0f}"),
                ("peak memory (tracemalloc)", f"{peak_mb:.1f} MB"),
                ("peak RSS of the process", f"{rss_mb:.1f} MB"),
            ]
        )
    )
    print(
        json.dumps(
            {
                "objects": objects,
                "objects_per_s": round(objects_per_s, 1),
                "peak_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

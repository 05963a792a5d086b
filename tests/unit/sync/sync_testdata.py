"""Manifests and helpers of the sync engine tests: repositories as dicts of files."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from reconciler.source import LoadedRepository, load_repository
from reconciler.source.git import CommitInfo, CommitSha

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: {password}
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
"""


def app_files(
    *, image: str = "capstan.local/busybox:1", replicas: int = 2, password: str = "hunter2-secret"
) -> dict[str, str]:
    return {
        "namespace.yaml": NAMESPACE,
        "settings.yaml": CONFIGMAP,
        "secret.yaml": SECRET.format(password=password),
        "service.yaml": SERVICE,
        "deployment.yaml": DEPLOYMENT.format(image=image, replicas=replicas),
    }


class RepoWriter:
    """Writes a fresh directory per 'commit' and loads it, as the loop does with a snapshot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def load(self, files: dict[str, str]) -> tuple[LoadedRepository, CommitInfo]:
        self.count += 1
        tree = self.root / f"commit-{self.count}"
        if tree.exists():
            shutil.rmtree(tree)
        for name, text in files.items():
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        tree.mkdir(parents=True, exist_ok=True)
        return load_repository(tree), commit_info(self.count)


def commit_info(n: int) -> CommitInfo:
    return CommitInfo(
        sha=CommitSha(f"{n:040x}"),
        author="Test Author <author@example.com>",
        message=f"commit {n}\n\nbody",
        time=datetime(2026, 1, 1, 12, n % 60, tzinfo=UTC),
    )

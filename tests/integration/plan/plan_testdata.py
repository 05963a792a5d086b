"""A real Git repository for plan/rollback tests, with deterministic commits.

Commit dates and identities are fixed (and step one minute per commit), so the same content
always gives the same SHAs — the markdown golden file names them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_BASE_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._commits = 0
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        when = f"{_BASE_EPOCH + 60 * self._commits} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        out = subprocess.run(
            ["git", "-C", str(self.path), *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def write(self, name: str, text: str) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, name: str) -> None:
        (self.path / name).unlink()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self._commits += 1
        return self.git("rev-parse", "HEAD")

    def status(self) -> str:
        return self.git("status", "--porcelain", "--untracked-files=all")

    def refs(self) -> str:
        return self.git("show-ref")


NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"""

NODES = """\
apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  address: 127.0.0.1
  capacity: {cpu: "2", memory: 4Gi, pods: "10"}
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
spec:
  address: 127.0.0.2
  capacity: {cpu: "2", memory: 4Gi, pods: "10"}
"""


def deployment(
    *,
    image: str = "capstan.local/busybox:1",
    replicas: int = 2,
    cpu: str = "500m",
    annotations: str = "",
    name: str = "web",
) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop{annotations}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: main
          image: {image}
          command: ["sleep", "3600"]
          resources:
            requests: {{cpu: {cpu}, memory: 256Mi}}
"""


SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
"""


def secret(password_b64: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
data:
  password: {password_b64}
"""


def configmap(name: str, value: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: shop
data:
  setting: "{value}"
"""


def shop_v1(repo: GitRepo) -> str:
    repo.write("namespace.yaml", NAMESPACE)
    repo.write("nodes.yaml", NODES)
    repo.write("web/deployment.yaml", deployment())
    repo.write("web/service.yaml", SERVICE)
    repo.write("db/secret.yaml", secret("aHVudGVyMg=="))  # hunter2
    repo.write("config/old.yaml", configmap("old-settings", "a"))
    repo.write("README.md", "the shop\n")
    return repo.commit("v1: the shop")


def shop_v2(repo: GitRepo) -> str:
    """Changed: web image, the secret's value. Added: a ConfigMap. Removed: old-settings.
    Unchanged: namespace, nodes, service."""
    repo.write("web/deployment.yaml", deployment(image="capstan.local/busybox:2"))
    repo.write("db/secret.yaml", secret("czNjcjN0LXYy"))  # s3cr3t-v2
    repo.write("config/new.yaml", configmap("new-settings", "b"))
    repo.remove("config/old.yaml")
    return repo.commit("v2: new image, new settings")

"""Shared data of the loader tests: paths and small valid manifests to break."""

from __future__ import annotations

from pathlib import Path

MAIN = Path(__file__).resolve().parents[3]
EXAMPLE_REPO = MAIN / "example-repo"
# The shared corpus sits beside the checkout (../shared/corpus), as the issue names it.
CORPUS = MAIN.parent / "shared" / "corpus"
ORDINARY = Path(__file__).resolve().parent / "fixtures" / "ordinary"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
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
          image: capstan.local/busybox:1
          resources:
            requests:
              cpu: 100m
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
"""


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root

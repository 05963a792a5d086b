"""Shared data of the CLI tests: paths and a valid Deployment to break one line at a time."""

from __future__ import annotations

from pathlib import Path

MAIN = Path(__file__).resolve().parents[3]
EXAMPLE_REPO = MAIN / "example-repo"
# The shared corpus sits beside the checkout (../shared/corpus), as the issue names it.
CORPUS = MAIN.parent / "shared" / "corpus"
ORDINARY = MAIN / "tests" / "unit" / "source" / "fixtures" / "ordinary"

# Line numbers matter: the defect tests point at them.
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


def corpus_folders() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(path for path in CORPUS.iterdir() if path.is_dir())

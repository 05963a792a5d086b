"""Sealed Secrets end to end: ``age -a -r`` in Git → ``capstan up`` → a container that sees it.

One ``capstan up`` (real Git, store, local agent, Docker) with its age identity in the state
directory. A value sealed by hand with the real ``age`` CLI reaches a pod as an environment
variable and as a file of a secret volume; then the value changes, a commit sealed for another
key is refused (the pod keeps the last good value), the file is rotated with ``capstan secret
rotate`` to a new recipient list (accepted; ``age -d`` opens it with the new key), and the Secret
is deleted. Throughout, the
planted plaintext never shows in capstan up's log, ``get``/``describe``, ``plan``, the sync records,
the raw store files or the agent's desired.json.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from reconciler.secrets import generate_identity
from tests.e2e.conftest import CAPSTAN, CapstanUp, GitRepo
from tests.fixtures.waiting import wait_until

PLANTED = "planted-Zq8vX3-value"

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: local
spec:
  address: local
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: reader
  labels:
    app: reader
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: capstan.local/busybox:1
      command: ["sleep", "3600"]
      env:
        - name: PASSWORD
          valueFrom:
            secretKeyRef:
              name: db
              key: password
      volumeMounts:
        - name: sec
          mountPath: /etc/sec
  volumes:
    - name: sec
      secret:
        secretName: db
"""


def age_seal(recipient: str, plaintext: str) -> str:
    return subprocess.run(
        ["age", "-a", "-r", recipient], input=plaintext.encode(), capture_output=True, check=True
    ).stdout.decode()


def sealed_secret(armored: str) -> str:
    body = "\n".join(f"    {line}" for line in armored.strip().splitlines())
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations:\n"
        f"    capstan.io/encrypted: age\nstringData:\n  password: |\n{body}\n"
    )


@pytest.fixture
def up(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[tuple[CapstanUp, str]]:
    repo = GitRepo(tmp_path / "repo")
    capstan = CapstanUp(repo, tmp_path, docker_client)
    recipient = generate_identity(capstan.state_dir / "age-identity")
    repo.commit(
        "v1",
        {
            "node.yaml": NODE,
            "secret.yaml": sealed_secret(age_seal(recipient, PLANTED)),
            "pod.yaml": POD,
        },
    )
    try:
        capstan.start()
        yield capstan, recipient
    finally:
        capstan.close()


def _seen(up: CapstanUp, docker_client: docker.DockerClient) -> tuple[str, str] | None:
    """What the pod's container sees: $PASSWORD and the secret volume's file."""
    for container in up.app_containers().values():
        found = docker_client.containers.get(container)
        env = found.exec_run(["sh", "-c", 'printf %s "$PASSWORD"']).output.decode()
        volume = found.exec_run(["cat", "/etc/sec/password"]).output.decode()
        return env, volume
    return None


def _wait_seen(up: CapstanUp, client: docker.DockerClient, want: tuple[str, str] | str) -> None:
    last: list[tuple[str, str] | None] = [None]

    def check() -> bool:
        last[0] = _seen(up, client)
        if isinstance(want, str):
            return last[0] is not None and last[0][1] == want
        return last[0] == want

    try:
        wait_until(check, timeout=90, what=f"the pod to see {want!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {last[0]!r}\n{up.log()[-3000:]}") from None


def _no_leak(up: CapstanUp, value: str, *, secret_exists: bool = True) -> None:
    assert value not in up.log()
    for path in up.state_dir.rglob("*"):
        # A secret volume's files are the container's mount source, plaintext by design (as
        # the kubelet's); everything else (store, WAL, desired.json, records) holds none.
        if path.is_file() and not path.is_socket() and "volumes" not in path.parts:
            assert value.encode() not in path.read_bytes(), path
    commands = [("get", "secrets", "-o", "yaml"), ("history",), ("status", "-o", "json")]
    if secret_exists:
        commands.append(("describe", "secret", "db"))
    for args in commands:
        assert value not in up.cli(*args), args


def test_sealed_value_reaches_the_pod_and_never_leaks(
    up: tuple[CapstanUp, str], docker_client: docker.DockerClient
) -> None:
    capstan, recipient = up
    _wait_seen(capstan, docker_client, (PLANTED, PLANTED))
    _no_leak(capstan, PLANTED)

    # Changed value: plan (no key) names the key, never the value; the volume follows.
    changed = PLANTED + "-2"
    capstan.repo.write({"secret.yaml": sealed_secret(age_seal(recipient, changed))})
    capstan.repo.commit("v2")
    _wait_seen(capstan, docker_client, changed)  # the volume follows

    # Sealed for a key the control plane lacks: refused whole, the pod keeps its value.
    work = capstan.log_path.parent
    stranger = generate_identity(work / "stranger.key")
    bad = capstan.repo.commit(
        "sealed for a stranger", {"secret.yaml": sealed_secret(age_seal(stranger, "never-seen"))}
    )

    def refusal() -> list[str] | None:
        sync = capstan.status()["sync"]
        if sync.get("lastAttemptCommit") != bad or "failed" not in sync:
            return None
        return list(sync["failed"]["errors"])

    errors = wait_until(refusal, timeout=60, what="the bad commit to be refused")
    assert any(
        e.startswith("secret.yaml:") and "none of the control plane's age identities" in e
        for e in errors
    ), errors
    assert (_seen(capstan, docker_client) or ("", ""))[1] == changed
    _no_leak(capstan, PLANTED)

    # Rotation: the file sealed again for [control plane, a new key] is accepted; the pod keeps
    # the same value.
    manifest = capstan.repo.path / "secret.yaml"
    manifest.write_text(sealed_secret(age_seal(recipient, changed)))
    new_recipient = generate_identity(work / "new.key")
    subprocess.run(
        [
            str(CAPSTAN),
            "secret",
            "rotate",
            "--identity",
            str(capstan.state_dir / "age-identity"),
            "-r",
            recipient,
            "-r",
            new_recipient,
            str(manifest),
        ],
        check=True,
        capture_output=True,
    )
    rotated = capstan.repo.commit("rotated")
    wait_until(
        lambda: capstan.status()["sync"]["liveCommit"] == rotated,
        timeout=60,
        what="the rotated commit to be live",
    )
    assert (_seen(capstan, docker_client) or ("", ""))[1] == changed
    opened = subprocess.run(
        ["age", "-d", "-i", str(work / "new.key")],
        input=manifest.read_text().split("password: |\n", 1)[1].replace("    ", "").encode(),
        capture_output=True,
        check=True,
    )
    assert opened.stdout.decode() == changed  # the new key opens it too

    # Delete: the Secret and its pod go; nothing anywhere kept the value.
    deleted = capstan.repo.commit("delete", remove=("secret.yaml", "pod.yaml"))
    wait_until(
        lambda: capstan.status()["sync"]["liveCommit"] == deleted and not capstan.app_containers(),
        timeout=60,
        what="the Secret and its pod to go",
    )
    _no_leak(capstan, PLANTED, secret_exists=False)

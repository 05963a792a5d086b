"""Fetching and pushing over ssh:// against a real sshd on loopback, host key pinned."""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
from gitops_testdata import commit_files, init_repo

from reconciler.source.credentials import GitCredentials
from reconciler.source.git import GitSource, GitSourceError

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshRepo:
    url: str
    key: Path
    known_hosts: Path
    wrong_known_hosts: Path
    head: str
    bare: Path


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ssh_repo(tmp_path: Path) -> Iterator[SshRepo]:
    root = tmp_path / "sshd"
    root.mkdir()
    host_pub = _keygen(root / "host")
    client_pub = _keygen(root / "client")
    other_pub = _keygen(root / "other-host")
    (root / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    (root / "sshd_config").write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {root / 'host'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "",
            ]
        )
    )
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
    wrong = root / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {' '.join(other_pub.split()[:2])}\n")
    work = init_repo(tmp_path / "work")
    head = commit_files(work, {"a.yaml": "x: 1\n"})
    bare = tmp_path / "served.git"
    git.Repo.clone_from(work.working_tree_dir, bare, bare=True).close()
    work.close()
    log = (root / "sshd.log").open("ab")
    sshd = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or sshd.poll() is not None:
                    pytest.fail("sshd did not start: " + (root / "sshd.log").read_text())
                time.sleep(0.05)
        yield SshRepo(
            f"ssh://{getpass.getuser()}@127.0.0.1:{port}{bare}",
            root / "client",
            known,
            wrong,
            head,
            bare,
        )
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)


def test_fetch_and_push_over_ssh_with_a_pinned_host_key(ssh_repo: SshRepo, cache_dir: Path) -> None:
    creds = GitCredentials(ssh_key_file=ssh_repo.key, known_hosts_file=ssh_repo.known_hosts)
    source = GitSource(ssh_repo.url, cache_dir=cache_dir, credentials=creds)
    assert source.local_path is None
    assert source.fetch().sha == ssh_repo.head
    reverted = source.revert([ssh_repo.head], message="Revert everything")
    assert source.push() == reverted
    with git.Repo(ssh_repo.bare) as served:
        assert served.heads.main.commit.hexsha == reverted


def test_an_unknown_host_key_is_refused(ssh_repo: SshRepo, cache_dir: Path) -> None:
    creds = GitCredentials(ssh_key_file=ssh_repo.key, known_hosts_file=ssh_repo.wrong_known_hosts)
    source = GitSource(ssh_repo.url, cache_dir=cache_dir, credentials=creds)
    with pytest.raises(GitSourceError, match=r"(?i)host key"):
        source.fetch()

"""Sealed Secrets through the real sync loop: real Git, real store, the real ``age`` CLI.

A value sealed by hand with ``age -a -r`` is opened at sync; a commit no identity opens, a
truncated message or a mix of sealed and plain values is refused whole with file:line while
the last good commit stays live; rotation to a new recipient list is accepted by a control
plane holding both identities. The planted plaintext never reaches a sync record.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import git
import pytest
from gitops_testdata import NAMESPACE, commit_files

from reconciler.api import Api
from reconciler.secrets import generate_identity, load_identities
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import SyncLoop, SyncOptions, list_sync_records, read_sync_state
from schemas import Secret

PLANTED = "planted-Zq8vX3-value"


def age_seal(recipient: str, plaintext: str) -> str:
    """What a person does by hand: ``age -a -r RECIPIENT``."""
    done = subprocess.run(
        ["age", "-a", "-r", recipient], input=plaintext.encode(), capture_output=True, check=True
    )
    return done.stdout.decode()


def sealed_secret(*values: tuple[str, str], plain: dict[str, str] | None = None) -> str:
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        "  name: db",
        "  namespace: shop",
        "  annotations:",
        "    capstan.io/encrypted: age",
        "stringData:",
    ]
    for key, armored in values:
        lines.append(f"  {key}: |")
        lines.extend(f"    {line}" for line in armored.strip().splitlines())
    for key, value in (plain or {}).items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def _password(api: Api) -> bytes:
    return api.get(Secret, "db", namespace="shop").decoded()["password"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    made = {}
    for name in ("old", "new", "stranger"):
        path = tmp_path / f"{name}.key"
        made[name] = (path, generate_identity(path))
    return made


def _loop(
    upstream: git.Repo, cache_dir: Path, api: Api, identities: list[Path]
) -> tuple[SyncLoop, BranchWatch]:
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False)
    options = SyncOptions(resync_s=3600, age_identities=load_identities(identities))
    return SyncLoop(api, source, watch=watch, options=options), watch


def test_hand_sealed_value_is_opened_and_bad_commits_are_refused_whole(
    upstream: git.Repo, cache_dir: Path, api: Api, keys: dict[str, tuple[Path, str]]
) -> None:
    old_key, old_recipient = keys["old"]
    loop, watch = _loop(upstream, cache_dir, api, [old_key])
    good = commit_files(
        upstream,
        {
            "ns.yaml": NAMESPACE,
            "secret.yaml": sealed_secret(("password", age_seal(old_recipient, PLANTED))),
        },
    )
    result = loop.step()
    assert result is not None
    assert result.succeeded
    assert _password(api) == PLANTED.encode()

    stranger = keys["stranger"][1]
    for files, expected in [
        (
            {"secret.yaml": sealed_secret(("password", age_seal(stranger, "other")))},
            "none of the control plane's age identities can open it",
        ),
        (
            {
                "secret.yaml": sealed_secret(
                    ("password", "\n".join(age_seal(old_recipient, "x").splitlines()[:-2]))
                )
            },
            "truncated",
        ),
        (
            {
                "secret.yaml": sealed_secret(
                    ("password", age_seal(old_recipient, "x")), plain={"user": "admin"}
                )
            },
            "must be an age message",
        ),
    ]:
        bad = commit_files(upstream, files, message="bad")
        watch.trigger()
        loop.step()
        record = list_sync_records(api)[0]
        assert (record.commit, record.outcome) == (bad, "Failed")
        assert any(re.match(r"secret\.yaml:\d+:", e) and expected in e for e in record.errors), (
            record.errors
        )
        assert _password(api) == PLANTED.encode()  # the last good commit stays live
        assert read_sync_state(api).live_commit == good
        for error in record.errors:
            assert PLANTED not in error


def test_rotation_to_a_new_recipient_list(
    upstream: git.Repo,
    cache_dir: Path,
    api: Api,
    keys: dict[str, tuple[Path, str]],
    tmp_path: Path,
) -> None:
    (old_key, old_recipient), (new_key, new_recipient) = keys["old"], keys["new"]
    manifest = tmp_path / "secret.yaml"
    manifest.write_text(sealed_secret(("password", age_seal(old_recipient, PLANTED))))
    capstan = str(Path(__file__).resolve().parents[3] / ".venv" / "bin" / "capstan")
    subprocess.run(
        [
            capstan,
            "secret",
            "rotate",
            "--identity",
            str(old_key),
            "-r",
            new_recipient,
            str(manifest),
        ],
        check=True,
        capture_output=True,
    )
    rotated = manifest.read_text()
    assert PLANTED not in rotated
    # The old identity no longer opens it; age itself opens it with the new one.
    refused = subprocess.run(
        [capstan, "secret", "decrypt", "--identity", str(old_key), str(manifest)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert "none of the control plane's age identities" in refused.stderr
    # During rotation the control plane holds both identities.
    loop, _ = _loop(upstream, cache_dir, api, [old_key, new_key])
    commit_files(upstream, {"ns.yaml": NAMESPACE, "secret.yaml": rotated})
    result = loop.step()
    assert result is not None
    assert result.succeeded
    assert _password(api) == PLANTED.encode()
    stored = api.get(Secret, "db", namespace="shop")
    assert base64.b64decode(stored.data["password"]) == PLANTED.encode()
    assert "capstan.io/encrypted" not in stored.metadata.annotations
    # The same commit again changes nothing: sealed values compare by ciphertext digest.
    again = loop.converge(trigger="manual")
    assert again is not None
    assert again.succeeded
    assert not again.applied

"""``capstan secret`` against the real ``age`` CLI: keygen, encrypt, decrypt, edit, rotate, and
``validate``'s view of sealed and plaintext Secrets; plus plan's view without the key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.diff import SEALED_MASK
from reconciler.secrets import generate_identity, load_identities, open_secret
from reconciler.sync import managed_object, plan_sync
from schemas import Secret

PLANTED = "planted-Zq8vX3-value"

PLAIN = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: default
data:
  cert: aGVsbG8=
stringData:
  password: {PLANTED}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
data:
  colour: blue
"""


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "keys" / "age.key"
    path.parent.mkdir()
    code, out, _ = run("secret", "keygen", "-o", str(path))
    assert code == 0
    return path, out.strip()


def test_keygen_writes_0600_and_prints_the_recipient(key: tuple[Path, str]) -> None:
    path, recipient = key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert recipient.startswith("age1")
    # age itself reads the identity and agrees on its recipient.
    shown = subprocess.run(
        ["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == recipient
    code, _, err = run("secret", "keygen", "-o", str(path))
    assert code == 1
    assert "refusing to overwrite" in err


def test_encrypt_uses_the_nearest_recipients_file_and_age_opens_it(
    tmp_path: Path, key: tuple[Path, str]
) -> None:
    path, recipient = key
    (tmp_path / ".capstan-recipients").write_text(f"# the control plane\n{recipient}\n")
    manifest = tmp_path / "apps" / "db.yaml"
    manifest.parent.mkdir()
    manifest.write_text(PLAIN)
    code, out, _ = run("secret", "encrypt", "-i", str(manifest))
    assert (code, out) == (0, "")
    sealed_text = manifest.read_text()
    assert PLANTED not in sealed_text
    docs = list(yaml.safe_load_all(sealed_text))
    secret = docs[0]
    assert secret["metadata"]["annotations"] == {"capstan.io/encrypted": "age"}
    assert docs[1]["data"] == {"colour": "blue"}  # not a Secret: untouched
    # Capstan's messages are plain age messages: `age -d -i` opens each one.
    for field, key_name, expected in [
        ("stringData", "password", PLANTED.encode()),
        ("data", "cert", b"hello"),
    ]:
        opened = subprocess.run(
            ["age", "-d", "-i", str(path)],
            input=secret[field][key_name].encode(),
            capture_output=True,
            check=True,
        )
        assert opened.stdout == expected
    # Encrypting again keeps every sealed value as it is (no churn in Git).
    code, out, _ = run("secret", "encrypt", str(manifest))
    assert code == 0
    assert out == sealed_text
    code, out, _ = run("secret", "decrypt", "--identity", str(path), str(manifest))
    assert code == 0
    assert list(yaml.safe_load_all(out)) == list(yaml.safe_load_all(PLAIN))
    # validate accepts it without any key.
    code, _, err = run("validate", str(tmp_path / "apps"), "--require-encrypted-secrets")
    assert code == 0
    assert "warning" not in err


def test_encrypt_without_recipients_says_how_to_give_them(tmp_path: Path) -> None:
    manifest = tmp_path / "db.yaml"
    manifest.write_text(PLAIN)
    code, _, err = run("secret", "encrypt", str(manifest))
    assert code == 1
    assert ".capstan-recipients" in err


def test_identity_readable_by_others_is_refused(tmp_path: Path, key: tuple[Path, str]) -> None:
    path, recipient = key
    manifest = tmp_path / "db.yaml"
    manifest.write_text(PLAIN)
    run("secret", "encrypt", "-i", "-r", recipient, str(manifest))
    path.chmod(0o644)
    code, out, err = run("secret", "decrypt", "--identity", str(path), str(manifest))
    assert code == 1
    assert "0644 are too open" in err
    assert PLANTED not in out + err


def test_edit_reseals_only_the_changed_values(tmp_path: Path, key: tuple[Path, str]) -> None:
    path, recipient = key
    manifest = tmp_path / "db.yaml"
    manifest.write_text(PLAIN)
    run("secret", "encrypt", "-i", "-r", recipient, str(manifest))
    before = yaml.safe_load_all(manifest.read_text()).__next__()
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen-mode"
    editor.write_text(
        "import os, sys\n"
        f"open({str(seen)!r}, 'w').write(oct(os.stat(sys.argv[1]).st_mode & 0o777))\n"
        f"open({str(tmp_path / 'tmpname')!r}, 'w').write(sys.argv[1])\n"
        "text = open(sys.argv[1]).read().replace('aGVsbG8=', 'aGVsbG8gd29ybGQ=')\n"
        "open(sys.argv[1], 'w').write(text)\n"
    )
    code, _, err = run(
        "secret",
        "edit",
        "--identity",
        str(path),
        "-r",
        recipient,
        str(manifest),
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )
    assert code == 0, err
    after = yaml.safe_load_all(manifest.read_text()).__next__()
    assert seen.read_text() == "0o600"
    assert not os.path.exists((tmp_path / "tmpname").read_text())  # the plaintext is gone
    assert after["stringData"]["password"] == before["stringData"]["password"]
    assert after["data"]["cert"] != before["data"]["cert"]
    opened = subprocess.run(
        ["age", "-d", "-i", str(path)],
        input=after["data"]["cert"].encode(),
        capture_output=True,
        check=True,
    )
    assert opened.stdout == b"hello world"


def test_validate_warns_on_plaintext_and_can_forbid_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "db.yaml").write_text(PLAIN)
    code, out, err = run("validate", str(repo))
    assert code == 0
    assert "db.yaml:1:1: Secret default/db is in plaintext" in err
    code, out, err = run("validate", str(repo), "--require-encrypted-secrets")
    assert code == 1
    assert "requires encrypted Secrets" in err
    (repo / ".capstan.yaml").write_text("requireEncryptedSecrets: true\n")
    code, out, err = run("validate", str(repo))
    assert code == 1
    assert "db.yaml:1:1" in err
    for output in (out, err):
        assert PLANTED not in output


def _sealed(recipient: str, value: str) -> Secret:
    armored = subprocess.run(
        ["age", "-a", "-r", recipient], input=value.encode(), capture_output=True, check=True
    ).stdout.decode()
    return Secret.model_validate(
        {
            "metadata": {
                "name": "db",
                "namespace": "default",
                "annotations": {"capstan.io/encrypted": "age"},
            },
            "stringData": {"password": armored, "user": armored},
        }
    )


def test_plan_without_the_key_says_which_keys_change_never_a_value(tmp_path: Path) -> None:
    recipient = generate_identity(tmp_path / "k")
    desired = _sealed(recipient, PLANTED)
    opened, _ = open_secret(desired, load_identities([tmp_path / "k"]))
    live = managed_object(opened)
    assert plan_sync([desired], [live]).empty  # same ciphertext: unchanged, no key needed
    changed = desired.model_copy(
        update={
            "string_data": {
                **desired.string_data,
                "password": _sealed(recipient, "other").string_data["user"],
            }
        }
    )
    plan = plan_sync([changed], [live])
    (change,) = plan.changes
    assert [(f.path, f.before, f.after) for f in change.fields] == [
        ("data.password", SEALED_MASK, f"{SEALED_MASK} (changed)")
    ]
    assert PLANTED not in repr(plan)


def test_rotate_data_key_puts_a_new_key_first(tmp_path: Path) -> None:
    from schemas.datakeys import DataKeys

    first = DataKeys.load_or_create(tmp_path / "data-keys")
    sealed = first.seal(PLANTED.encode(), context=b"k")
    code, out, err = run("secret", "rotate-data-key", "--state-dir", str(tmp_path))
    assert code == 0, err
    assert "key2 now seals" in out
    rotated = DataKeys.load(tmp_path / "data-keys")
    assert rotated.writer == "key2"
    assert rotated.open(sealed, context=b"k") == PLANTED.encode()
    assert stat.S_IMODE((tmp_path / "data-keys").stat().st_mode) == 0o600


def test_plan_and_render_never_show_a_value(tmp_path: Path) -> None:
    import git

    recipient = generate_identity(tmp_path / "k")
    repo_dir = tmp_path / "repo"
    repo = git.Repo.init(repo_dir, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "T")
        config.set_value("user", "email", "t@example.com")

    def commit(sealed_value: str, plain_value: str) -> None:
        sealed = _sealed(recipient, sealed_value).model_dump(by_alias=True, exclude_none=True)
        sealed["stringData"] = {"password": sealed["stringData"]["password"]}
        plain = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "plain", "namespace": "default"},
            "stringData": {"token": plain_value},
        }
        (repo_dir / "secrets.yaml").write_text(
            yaml.safe_dump_all(
                [
                    {
                        k: v
                        for k, v in sealed.items()
                        if k in ("apiVersion", "kind", "metadata", "stringData")
                    },
                    plain,
                ]
            )
        )
        repo.index.add(["secrets.yaml"])
        repo.index.commit("change")

    commit(PLANTED, PLANTED + "-plain")
    commit(PLANTED + "-2", PLANTED + "-plain-2")
    for output in ("text", "markdown", "json"):
        code, out, err = run("plan", str(repo_dir), "--git-only", "-o", output)
        assert code == 2, err  # 2: the plan has changes
        assert "password" in out
        assert PLANTED not in out + err
    code, out, _ = run("plan", str(repo_dir), "--git-only")
    assert f"{SEALED_MASK} (changed)" in out
    for output in ("yaml", "json"):
        code, out, err = run("render", str(repo_dir), "-o", output)
        assert code == 0, err
        assert PLANTED not in out + err
    repo.close()

"""``capstan plan``: file names from a pull request cannot inject Markdown or lines."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from plan_testdata import GitRepo, configmap, shop_v1

from reconciler.cli import cli

# Ends the <details> HTML block (a blank line), then a heading and an image of its own.
INJECTED = "x\n\n### ✅ Approved by security\n![](evil.png) `|` <b>"
ESCAPED = "x\\n\\n### ✅ Approved by security\\n![](evil.png) `|` &lt;b&gt;"


def plan(repo: GitRepo, *args: str) -> Result:
    return CliRunner().invoke(cli, ["plan", str(repo.path), "--git-only", *args])


def test_a_file_name_with_newlines_stays_in_its_place(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "shop")
    shop_v1(repo)
    repo.write(f"{INJECTED}.yaml", configmap("new-settings", "b"))
    repo.commit("a file with a hostile name")
    markdown = plan(repo, "-o", "markdown")
    assert markdown.exit_code == 2, markdown.output
    lines = markdown.output.splitlines()
    [summary] = [line for line in lines if "ConfigMap shop/new-settings" in line]
    assert summary.endswith(f"{ESCAPED}.yaml:1:1</summary>")
    assert not any(line.startswith(("###", "![")) and "Approved" in line for line in lines)
    assert "\n\n### ✅ Approved" not in markdown.output
    text = plan(repo)
    assert "+ ConfigMap shop/new-settings (x\\n\\n### ✅ Approved by security\\n" in text.output
    assert not any(line.startswith("### ✅") for line in text.output.splitlines())


def test_an_error_in_a_file_with_a_hostile_name_is_one_list_entry(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "shop")
    shop_v1(repo)
    repo.write(f"{INJECTED} ``` .yaml", "apiVersion: v1\nkind: ConfigMap\ndata: 3\n")
    repo.commit("broken, with a hostile name")
    markdown = plan(repo, "-o", "markdown")
    assert markdown.exit_code == 1, markdown.output
    errors = markdown.output.split("#### Errors in the head\n\n", 1)[1].split("\n\n", 1)[0]
    assert errors.splitlines()
    assert all(line.startswith("- ````") for line in errors.splitlines())
    assert "Approved by security" in errors
    text = plan(repo)
    assert not any(line.startswith("### ✅") for line in text.output.splitlines())

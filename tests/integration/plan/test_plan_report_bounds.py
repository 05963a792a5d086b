"""``capstan plan`` on changes too big to list: unfit pods grouped, the PR comment bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from plan_testdata import GitRepo

from reconciler.cli import cli
from reconciler.plan.render import COMMENT_LIMIT

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: one
spec:
  address: 127.0.0.1
  capacity: {cpu: "1", memory: 64Gi, pods: "100000"}
---
apiVersion: v1
kind: Namespace
metadata:
  name: hello
"""


def hello(replicas: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: hello
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      containers:
        - name: main
          image: busybox
          resources:
            requests: {{cpu: 50m, memory: 1Mi}}
"""


def plan(repo: GitRepo, *args: str) -> Result:
    return CliRunner().invoke(cli, ["plan", str(repo.path), "--git-only", *args])


def scaled(tmp_path: Path, replicas: int) -> GitRepo:
    repo = GitRepo(tmp_path / "hello")
    repo.write("cluster.yaml", NODE)
    repo.commit("v1: no app yet")
    repo.write("hello.yaml", hello(replicas))
    repo.commit(f"v2: {replicas} replicas")
    return repo


def utf8_size(text: str) -> int:
    return len(text.encode())


def test_pods_that_do_not_fit_are_one_line_per_owner_and_reason(tmp_path: Path) -> None:
    repo = scaled(tmp_path, 1000)
    text = plan(repo)
    assert text.exit_code == 1, text.output
    # 1 CPU holds 20 pods of 50m: the other 980 are one sentence, as the scheduler's events.
    line = (
        "hello/hello: 980 of 1000 new pods do not fit: 0/1 nodes are available: 1 Insufficient cpu."
    )
    assert text.output.count(line) == 1, text.output
    assert "-new" not in text.output.split("Capacity:", 1)[1]
    assert len(text.output.splitlines()) < 80  # was one line per pod: over 1,000
    markdown = plan(repo, "-o", "markdown").output
    assert markdown.count(line) == 1, markdown
    assert "-new" not in markdown.split("#### Capacity", 1)[1]
    doc = json.loads(plan(repo, "-o", "json").output)
    unfit = doc["capacity"]["unschedulable"]
    assert len(unfit) == 980  # every pod, for programs
    assert unfit[0]["owner"] == {"kind": "Deployment", "namespace": "hello", "name": "hello"}
    [group] = doc["capacity"]["unschedulableGroups"]
    assert (group["count"], group["of"], group["summary"]) == (980, 1000, line)


def test_ten_thousand_replicas_stay_a_short_comment(tmp_path: Path) -> None:
    repo = scaled(tmp_path, 10_000)
    markdown = plan(repo, "-o", "markdown")
    assert markdown.exit_code == 1
    assert utf8_size(markdown.output) < 5_000, markdown.output
    assert "9980 of 10000 new pods do not fit" in markdown.output


@pytest.fixture
def huge_change(tmp_path: Path) -> GitRepo:
    """On 300 nodes, a change touching 3,100 objects: 2,700 ConfigMaps, 300 Deployments
    that fit and 100 that do not."""
    repo = GitRepo(tmp_path / "many")
    repo.write("cluster.yaml", NODE)
    repo.write(
        "nodes.yaml",
        "---\n".join(
            f"apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{i}\nspec:\n"
            f"  address: 127.0.1.{i % 250 + 1}\n  capacity: {{cpu: '1', memory: 1Gi}}\n"
            for i in range(300)
        ),
    )
    repo.commit("v1")
    repo.write(
        "pages.yaml",
        "---\n".join(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page-{i}\n  namespace: hello\n"
            f'data:\n  index.html: "<p>page {i} of the site, with a little text</p>"\n'
            for i in range(2_700)
        ),
    )
    repo.write(
        "apps.yaml",
        "---\n".join(
            hello(2).replace("name: hello\n  namespace", f"name: app-{i}\n  namespace")
            for i in range(300)
        ),
    )
    repo.write(
        "big-apps.yaml",
        "---\n".join(
            hello(1)
            .replace("name: hello\n  namespace", f"name: big-{i}\n  namespace")
            .replace("cpu: 50m", "cpu: '2'")
            for i in range(100)
        ),
    )
    repo.commit("v2: everything")
    return repo


def test_a_change_touching_thousands_of_objects_fits_one_comment(huge_change: GitRepo) -> None:
    markdown = plan(huge_change, "-o", "markdown")
    assert markdown.exit_code == 1, markdown.output[-2000:]
    output = markdown.output
    assert utf8_size(output) < COMMENT_LIMIT
    assert len(output) > 30_000  # it uses the room it has, not a bare summary
    # The summary and the verdict always come through; cut sections say what they left out
    # and how to see everything.
    assert "| Objects to add | 3100 |" in output
    assert "| Capacity | DOES NOT FIT: 100 pod(s) do not fit |" in output
    assert output.rstrip().endswith("_Result: changes that do not fit the cluster (exit 1)._")
    for section in ("objects", "rollouts", "nodes"):
        assert f" {section} not shown" in output, section
    assert (
        output.count(
            "this comment stays under GitHub's 65,536-character limit. "
            "`capstan plan -o text` (or `-o json`) on this change shows "
            "everything."
        )
        == 3
    )
    assert output.count("301 Insufficient cpu.") == 100  # each owner that does not fit
    assert_clean_markdown(output)
    everything = json.loads(plan(huge_change, "-o", "json").output)
    assert len(everything["changes"]) == 3100
    assert len(everything["capacity"]["unschedulableGroups"]) == 100


def test_one_huge_object_is_shortened_inside_its_block(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "big")
    repo.write("cluster.yaml", NODE)
    repo.commit("v1")
    script = "\n".join(f"    line {i} of a long script" for i in range(6_000))
    repo.write(
        "big.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n"
        f"  namespace: hello\ndata:\n  script: |\n{script}\n"
        f"  one-line: {'x' * 200_000}\n",
    )
    repo.commit("v2")
    output = plan(repo, "-o", "markdown").output
    assert utf8_size(output) < COMMENT_LIMIT
    assert "line 100 of a long script" in output
    assert "more lines not shown" in output
    assert "one entry shortened" in output
    assert "xxx … (199,014 more characters)" in output  # a 200,000-character line, cut
    assert_clean_markdown(output)


def test_every_budget_gives_whole_markdown_within_it(tmp_path: Path) -> None:
    from reconciler.plan import make_plan, render_markdown

    repo = GitRepo(tmp_path / "mixed")
    repo.write("cluster.yaml", NODE)
    repo.commit("v1")
    script = "\n".join(f"    line {i}" for i in range(3_000))
    repo.write(
        "big.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n"
        f"  namespace: hello\ndata:\n  script: |\n{script}\n",
    )
    repo.write(
        "apps.yaml",
        "---\n".join(
            hello(30).replace("name: hello\n  namespace", f"name: app-{i}\n  namespace")
            for i in range(60)
        ),
    )
    repo.commit("v2")
    result = make_plan(repo.path, base="HEAD~1", head="HEAD")
    for budget in range(3_000, 40_000, 2_900):
        output = render_markdown(result, budget=budget)
        assert utf8_size(output) <= budget, budget
        assert_clean_markdown(output)
        assert output.rstrip().endswith("(exit 1)._")


def assert_clean_markdown(output: str) -> None:
    """Every <details> opened is closed, every fence too: a cut leaves valid Markdown."""
    assert output.count("<details>") == output.count("</details>")
    fences = [line for line in output.splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0

"""``capstan plan`` on a real Git repository: diffs, rollouts, capacity, exit codes, outputs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from plan_testdata import (
    SERVICE,
    GitRepo,
    configmap,
    deployment,
    shop_v1,
    shop_v2,
)

from reconciler.api import Api, ManualClock
from reconciler.cli import cli
from reconciler.plan import load_sides
from reconciler.plan._git import RepoReader
from reconciler.source import load_repository
from schemas import Namespace, ObjectMeta
from tests.fixtures.hollow import HollowCluster, temp_api

GOLDEN = Path(__file__).parent / "golden" / "plan-v1-v2.md"
SECRETS = ("hunter2", "aHVudGVyMg==", "s3cr3t", "czNjcjN0LXYy")


def plan(repo: GitRepo, *args: str) -> Result:
    return CliRunner().invoke(cli, ["plan", str(repo.path), *args])


@pytest.fixture
def shop(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "shop")
    shop_v1(repo)
    shop_v2(repo)
    return repo


def test_two_refs_show_added_changed_removed_and_unchanged(shop: GitRepo) -> None:
    result = plan(shop, "--base", "HEAD~1", "--head", "HEAD", "-o", "json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.output)
    actions = {(c["action"], c["kind"], c["name"]) for c in doc["changes"]}
    assert actions == {
        ("add", "ConfigMap", "new-settings"),
        ("remove", "ConfigMap", "old-settings"),
        ("change", "Deployment", "web"),
        ("change", "Secret", "db"),
    }
    assert doc["summary"]["unchanged"] == 4  # namespace, two nodes, service
    web = next(c for c in doc["changes"] if c["name"] == "web")
    assert [f["path"] for f in web["fields"]] == ["spec.template.spec.containers[name=main].image"]
    assert web["fields"][0]["after"] == "capstan.local/busybox:2"
    assert web["source"] == "web/deployment.yaml:1:1"
    [rollout] = doc["rollouts"]
    assert rollout["action"] == "new-replicaset"
    assert (rollout["replicasBefore"], rollout["replicasAfter"]) == (2, 2)
    assert rollout["steps"][0] == {"new": 0, "old": 2}
    assert rollout["steps"][-1] == {"new": 2, "old": 0}
    started = [p for n in doc["nodes"] for p in n["start"]]
    stopped = [p for n in doc["nodes"] for p in n["stop"]]
    assert len(started) == 2
    assert len(stopped) == 2
    assert all(p.startswith(f"shop/{rollout['replicaSet']}-") for p in started)
    assert doc["capacity"]["fits"] is True
    assert doc["loadStrategy"] == "incremental"


def test_incremental_base_equals_a_full_load(shop: GitRepo, tmp_path: Path) -> None:
    sides = load_sides(shop.path, base="HEAD~1", head="HEAD")
    assert sides.strategy == "incremental"
    reader = RepoReader(shop.path)
    exported = reader.export(reader.tree(reader.resolve("HEAD~1").sha), tmp_path / "base")
    full = load_repository(exported)
    assert [(o.obj.to_dict(), str(o.source)) for o in sides.base.objects] == [
        (o.obj.to_dict(), str(o.source)) for o in full.objects
    ]


def test_template_change_loads_the_base_in_full(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "t")
    repo.write("values.yaml", "replicas: 1\n")
    repo.write(
        "web.yaml.j2",
        deployment(name="web")
        .replace("shop", "default")
        .replace("replicas: 2", "replicas: {{ values.replicas }}"),
    )
    repo.commit("one")
    repo.write("values.yaml", "replicas: 3\n")
    repo.commit("three")
    sides = load_sides(repo.path, base="HEAD~1", head="HEAD")
    assert sides.strategy == "full"
    [base_web] = [o.obj for o in sides.base.objects]
    [head_web] = [o.obj for o in sides.head.objects]
    assert (base_web.spec.replicas, head_web.spec.replicas) == (1, 3)  # type: ignore[attr-defined]


def test_secret_values_are_masked_in_every_output(shop: GitRepo) -> None:
    for output in ("text", "markdown", "json"):
        result = plan(shop, "--base", "HEAD~1", "--head", "HEAD", "-o", output)
        assert result.exit_code == 2
        for secret in SECRETS:
            assert secret not in result.output, (output, secret)
        assert "***" in result.output
        assert "data.password" in result.output


def test_unschedulable_change_exits_1_with_the_schedulers_reason(shop: GitRepo) -> None:
    shop.write("web/deployment.yaml", deployment(image="capstan.local/busybox:2", cpu="3"))
    shop.commit("v3: too big")
    result = plan(shop, "--head", "HEAD")
    assert result.exit_code == 1, result.output
    assert "0/2 nodes are available: 2 Insufficient cpu." in result.output
    assert "DOES NOT FIT: 2 pod(s) do not fit" in result.output


def test_host_port_and_node_port_conflicts_exit_1(shop: GitRepo) -> None:
    shop.write(
        "web/deployment.yaml",
        deployment(replicas=3).replace(
            '          command: ["sleep", "3600"]',
            '          command: ["sleep", "3600"]\n          ports:\n'
            "            - containerPort: 8080\n              hostPort: 8080",
        ),
    )
    shop.write(
        "web/service.yaml",
        SERVICE.replace("spec:\n", "spec:\n  type: NodePort\n").replace(
            "targetPort: 8080", "targetPort: 8080\n      nodePort: 30080"
        ),
    )
    shop.write(
        "web/service2.yaml",
        SERVICE.replace("name: web", "name: web2", 1)
        .replace("spec:\n", "spec:\n  type: NodePort\n")
        .replace("targetPort: 8080", "targetPort: 8080\n      nodePort: 30080"),
    )
    shop.commit("v3: ports")
    result = plan(shop, "--head", "HEAD", "-o", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    [unfit] = doc["capacity"]["unschedulable"]
    assert "free ports" in unfit["message"]
    assert doc["capacity"]["conflicts"] == [
        "nodePort 30080/TCP is requested by Service shop/web and Service shop/web2"
    ]


def test_exit_codes_no_change_and_invalid_head(shop: GitRepo) -> None:
    assert plan(shop, "--base", "HEAD", "--head", "HEAD").exit_code == 0
    shop.write("README.md", "only the readme changes\n")
    shop.commit("docs")
    result = plan(shop, "--head", "HEAD")
    assert result.exit_code == 0, result.output
    assert "Result: no changes (exit 0)." in result.output
    broken = deployment().replace("replicas: 2", "replicas: 2\n  replica: 3")
    shop.write("web/deployment.yaml", broken)
    shop.commit("broken")
    result = plan(shop, "--head", "HEAD")
    assert result.exit_code == 1
    assert "web/deployment.yaml:8:3: spec.replica: unknown field" in result.output


def test_markdown_matches_the_golden_file(shop: GitRepo) -> None:
    result = plan(shop, "--base", "HEAD~1", "--head", "HEAD", "-o", "markdown")
    assert result.exit_code == 2
    if os.environ.get("CAPSTAN_UPDATE_GOLDEN"):
        GOLDEN.write_text(result.output)
    assert result.output == GOLDEN.read_text()
    summary_at = result.output.index("| Objects to add | 1 |")
    assert summary_at < result.output.index("<details>")  # the summary table comes first


def test_worktree_plans_uncommitted_edits_and_changes_nothing(shop: GitRepo) -> None:
    shop.write("config/new.yaml", configmap("new-settings", "c"))
    before = (shop.status(), shop.refs(), (shop.path / ".git" / "index").read_bytes())
    result = plan(shop, "--worktree")
    assert result.exit_code == 2, result.output
    assert "~ ConfigMap shop/new-settings (config/new.yaml:1:1)" in result.output
    assert "Objects: 0 to add, 1 to change, 0 to remove, 6 unchanged" in result.output
    assert (shop.status(), shop.refs(), (shop.path / ".git" / "index").read_bytes()) == before


@contextmanager
def _one_small_node(tmp_path: Path) -> Iterator[Api]:
    """A cluster store in ``tmp_path`` with the shop namespace and one 900m-CPU node."""
    clock = ManualClock()
    with temp_api(tmp_path, clock) as api:
        api.create(Namespace(metadata=ObjectMeta(name="shop")))
        hollow = HollowCluster(api, clock=clock, background=False)
        hollow.add_node("small", cpu="900m", memory="1Gi", pods=10)
        yield api


def test_plan_against_a_cluster_store_reads_only(shop: GitRepo, tmp_path: Path) -> None:
    with _one_small_node(tmp_path) as api:
        revision = api.current_revision()
        url = f"sqlite:///{tmp_path / 'state.db'}"
        result = plan(shop, "--head", "HEAD", "--cluster", url)
        assert api.current_revision() == revision
    assert result.exit_code == 1, result.output  # 2 x 500m CPU on one 900m node
    assert f"Observed: cluster {url}" in result.output
    assert "0/1 nodes are available: 1 Insufficient cpu." in result.output
    assert shop.status() == ""


def test_plan_finds_the_cluster_from_a_state_directory(shop: GitRepo, tmp_path: Path) -> None:
    # The demo prints `capstan plan ... --state-dir DIR`, as for every other command.
    with _one_small_node(tmp_path):
        result = plan(shop, "--head", "HEAD", "--state-dir", str(tmp_path))
        both = plan(shop, "--state-dir", str(tmp_path), "--cluster", "sqlite:///x.db")
    assert result.exit_code == 1, result.output
    assert f"Observed: cluster {tmp_path}" in result.output
    assert "0/1 nodes are available: 1 Insufficient cpu." in result.output
    assert both.exit_code == 1, "2 would read as 'changes' in a pipeline"
    assert "exclude each other" in both.output
    typo = plan(shop, "--state-dri", str(tmp_path))
    assert typo.exit_code == 1
    assert "No such option" in typo.output
    missing = plan(shop, "--state-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1
    assert "no capstan found" in missing.output


def test_plan_observes_the_cluster_every_other_command_finds(
    shop: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the control-plane host: no flag, the cluster is found as `capstan status` finds it.
    from reconciler.client import client_config_path, write_config

    with _one_small_node(tmp_path):
        monkeypatch.setenv("CAPSTAN_STATE_DIR", str(tmp_path))
        from_env = plan(shop, "--head", "HEAD")
        git_only = plan(shop, "--head", "HEAD", "--git-only")
        monkeypatch.delenv("CAPSTAN_STATE_DIR")
        write_config(client_config_path(), None, name="lab", state_dir=tmp_path)
        from_context = plan(shop, "--head", "HEAD")
        offline = plan(shop, "--head", "HEAD", "--offline", "-o", "json")
    for result, origin in ((from_env, "$CAPSTAN_STATE_DIR"), (from_context, "context lab")):
        assert result.exit_code == 1, result.output  # 2 x 500m CPU on one 900m node
        assert f"Observed: cluster {tmp_path} ({origin})" in result.output
        assert "0/1 nodes are available: 1 Insufficient cpu." in result.output
    # CI: the base commit's two Node manifests, said so.
    assert git_only.exit_code == 2, git_only.output
    assert "(Node manifests in Git; no cluster observed: --git-only)" in git_only.output
    assert json.loads(offline.output)["capacity"]["nodes"] == 2
    both = plan(shop, "--git-only", "--state-dir", str(tmp_path))
    assert both.exit_code == 1
    assert "exclude each other" in both.output


def test_plan_names_the_state_dir_it_could_not_read(
    shop: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTAN_STATE_DIR", str(tmp_path / "nowhere"))
    result = plan(shop, "--head", "HEAD")
    assert result.exit_code == 1
    assert f"cannot read the cluster at {tmp_path / 'nowhere'} ($CAPSTAN_STATE_DIR)" in (
        result.output
    )
    assert "no capstan found" in result.output


def test_snapshot_file_feeds_the_plan_and_holds_no_secret(shop: GitRepo, tmp_path: Path) -> None:
    clock = ManualClock()
    snapshot = tmp_path / "snap.json"
    with temp_api(tmp_path, clock) as api:
        api.create(Namespace(metadata=ObjectMeta(name="shop")))
        hollow = HollowCluster(api, clock=clock, background=False)
        hollow.add_nodes(3, cpu="4", memory="8Gi", pods=10)
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "db",
                    "namespace": "shop",
                    "labels": {"capstan.io/managed-by": "capstan"},
                },
                "data": {"password": "aHVudGVyMg=="},
            }
        )
        url = f"sqlite:///{tmp_path / 'state.db'}"
        result = CliRunner().invoke(cli, ["snapshot", "-o", str(snapshot), "--store", url])
        assert result.exit_code == 0, result.output
    text = snapshot.read_text()
    assert "aHVudGVyMg==" not in text
    [saved] = [o for o in json.loads(text)["objects"] if o["kind"] == "Secret"]
    assert "data" not in saved
    assert saved["metadata"]["annotations"]["capstan.io/snapshot-secret-keys"] == "password"
    result = plan(shop, "--head", "HEAD", "--snapshot", str(snapshot), "-o", "json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.output)
    assert doc["capacity"]["nodes"] == 3
    assert {n["node"] for n in doc["nodes"]} <= {"hollow-0", "hollow-1", "hollow-2"}


def test_server_plan_provider_plans_a_ref_against_the_live_commit(
    shop: GitRepo, tmp_path: Path
) -> None:
    from reconciler.plan.provider import plan_provider
    from reconciler.source.git import GitSource
    from reconciler.sync import update_sync_state

    clock = ManualClock()
    with temp_api(tmp_path, clock) as api:
        first = shop.git("rev-parse", "HEAD~1")
        update_sync_state(api, live_commit=first)
        source = GitSource(shop.path, branch="main", cache_dir=tmp_path / "cache")
        revision = api.current_revision()
        doc = plan_provider(api, source)(None)
        assert api.current_revision() == revision
    assert doc["base"]["commit"] == first
    assert doc["summary"]["change"] == 2
    assert doc["exitCode"] == 1  # this cluster has no node yet: the new pods cannot run
    assert len(doc["capacity"]["unschedulable"]) == 2
    assert doc["capacity"]["observed"] == "cluster (live, through the API)"


def test_host_port_rollout_that_cannot_surge_is_flagged(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "ports")
    from plan_testdata import NAMESPACE, NODES

    def with_host_port(image: str) -> str:
        return deployment(image=image).replace(
            '          command: ["sleep", "3600"]',
            '          command: ["sleep", "3600"]\n          ports:\n'
            "            - containerPort: 8080\n              hostPort: 8080",
        )

    repo.write("namespace.yaml", NAMESPACE)
    repo.write("nodes.yaml", NODES)
    repo.write("web.yaml", with_host_port("capstan.local/busybox:1"))
    repo.commit("v1")
    repo.write("web.yaml", with_host_port("capstan.local/busybox:2"))
    repo.commit("v2")
    result = plan(repo, "--head", "HEAD", "-o", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert doc["capacity"]["unschedulable"] == []  # the end state fits: old pods are gone
    [stall] = doc["capacity"]["conflicts"]
    assert stall.startswith("rollout of Deployment shop/web would stall: maxUnavailable is 0")
    assert "free ports" in stall
    # With room to take one old pod down first, the same change rolls out.
    repo.write(
        "web.yaml",
        with_host_port("capstan.local/busybox:3").replace(
            "spec:\n  replicas: 2",
            "spec:\n  strategy:\n    rollingUpdate: {maxUnavailable: 1}\n  replicas: 2",
        ),
    )
    repo.commit("v3")
    assert plan(repo, "--head", "HEAD").exit_code == 2


def test_added_and_removed_secrets_show_keys_never_values(shop: GitRepo) -> None:
    shop.remove("db/secret.yaml")
    shop.write(
        "db/api-key.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-key\n"
        "  namespace: shop\nstringData:\n  key: plain-text-key-42\n",
    )
    shop.commit("v3: new secret")
    for output in ("text", "markdown", "json"):
        result = plan(shop, "--head", "HEAD", "-o", output)
        assert result.exit_code == 2
        assert "plain-text-key-42" not in result.output
        for secret in SECRETS:
            assert secret not in result.output
    doc = json.loads(plan(shop, "--head", "HEAD", "-o", "json").output)
    documents = {c["name"]: c["object"] for c in doc["changes"]}
    assert documents["api-key"]["stringData"] == {"key": "***"}
    assert documents["db"]["data"] == {"password": "***"}

"""Real manifests from public repositories (tests/corpus/): each document of a supported kind
alone, and each folder as a whole, through ``capstan validate`` and the loader.

Prints the acceptance rate; fails below 97 % of the documents not refused on purpose, or if a
document other than the ``refused-*`` ones (kept to show the message) is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import ManifestErrors, load_repository
from reconciler.source.yamlpos import load_documents
from schemas import KubeObject, UnsupportedKindError, model_for

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
VALID_FOLDERS = [
    "online-boutique",
    "argocd-guestbook",
    "argocd-kustomize-guestbook",
    "kubernetes-guestbook",
]


# Folders measured as a whole only: a Helm chart, node agents that need their namespace's
# Pod Security level (their DaemonSet alone is refused, as Kubernetes' baseline refuses it),
# and manifests committed with another tool's placeholders in them.
FOLDERS_ONLY = ("argocd-helm-guestbook", "sock-shop-node-exporter", "kubernetes-vitess-templates")


def corpus_documents() -> list[tuple[str, str]]:
    """(file and index, document text) for every document of a supported kind."""
    found: list[tuple[str, str]] = []
    for path in sorted(CORPUS.rglob("*.yaml")):
        relative = path.relative_to(CORPUS)
        if relative.parts[0] in FOLDERS_ONLY or path.name == "kustomization.yaml":
            continue
        documents, problems = load_documents(path.read_text(), file=str(relative))
        assert not problems, problems
        for index, data in enumerate(document.data for document in documents):
            if isinstance(data, dict) and _modelled(data):
                found.append((f"{relative}#{index}", yaml.safe_dump(data, sort_keys=False)))
    return found


def _modelled(data: dict[str, object]) -> bool:
    try:
        model_for(str(data.get("apiVersion")), str(data.get("kind")))
    except UnsupportedKindError:
        return False
    return True


# The documents refused on purpose, and words their refusal must say.
REFUSED = {
    "documents/refused-kubernetes-aws-ebs-web.yaml": "removed its in-tree driver in v1.27",
    "documents/refused-gke-samples-dra-resource-claims.yaml": "runs no DRA drivers",
    "documents/refused-istio-helloworld-dual-stack.yaml": (
        "this cluster is not configured for dual-stack services: the Service network of a "
        "Capstan cluster is IPv4 only (single-stack)"
    ),
}


def test_documents_of_supported_kinds_are_accepted_unchanged(tmp_path: Path):
    documents = corpus_documents()
    assert len(documents) >= 40, "the corpus is there"
    refused: dict[str, list[str]] = {}
    for index, (name, text) in enumerate(documents):
        root = tmp_path / str(index)
        root.mkdir()
        (root / "doc.yaml").write_text(text)
        try:
            load_repository(root)
        except ManifestErrors as exc:
            refused[name] = [error.message for error in exc.errors]
    # The refused-* files are refused on purpose (Kubernetes refuses them too, or they cannot
    # mean anything on a Docker host); the rate that counts is of the others, as in
    # scripts/corpus-measure's honest rate.
    meant = [name for name, _ in documents if name.split("#")[0] not in REFUSED]
    accepted = len(documents) - len(refused)
    rate = len([name for name in meant if name not in refused]) / len(meant)
    print(
        f"corpus: {accepted}/{len(documents)} documents accepted; {rate:.1%} of the "
        f"{len(meant)} in files not refused on purpose"
    )
    assert {name.split("#")[0] for name in refused} == set(REFUSED), refused
    assert rate >= 0.97
    for name, messages in refused.items():
        assert any(REFUSED[name.split("#")[0]] in message for message in messages), messages


def test_a_node_agent_folder_needs_a_privileged_namespace(tmp_path: Path):
    result = CliRunner().invoke(cli, ["validate", str(CORPUS / "sock-shop-node-exporter")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "violates PodSecurity" in line]
    daemon_set = "25-prometheus-node-exporter-daemonset.yaml"
    assert [line.split(": ")[0].rsplit("/", 1)[1] for line in errors] == [
        f"{daemon_set}:{at}" for at in ("53:7", "54:7", "64:9", "67:9")
    ], errors
    assert all('namespace "monitoring" enforces baseline' in line for line in errors)
    assert "host namespaces (hostPID=true)" in errors[1], errors[1]
    assert 'hostPath volumes (volume "sys")' in errors[2], errors[2]
    # The one change a user makes: the namespace says which level it needs.
    folder = tmp_path / "node-exporter"
    shutil.copytree(CORPUS / "sock-shop-node-exporter", folder)
    namespace = folder / "00-monitoring-ns.yaml"
    namespace.write_text(
        namespace.read_text() + "  labels:\n    pod-security.kubernetes.io/enforce: privileged\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    loaded = {item.obj.kind: item.obj for item in load_repository(folder).objects}
    spec = loaded["DaemonSet"].spec.template.spec  # type: ignore[attr-defined]
    assert (spec.host_pid, spec.host_network) == (True, True)
    assert [v.host_path.path for v in spec.volumes] == ["/sys", "/"]
    assert {m.mount_propagation for m in spec.containers[0].volume_mounts} == {"HostToContainer"}


@pytest.mark.parametrize("folder", VALID_FOLDERS)
def test_whole_folders_validate_as_they_stand(folder: str):
    result = CliRunner().invoke(cli, ["validate", str(CORPUS / folder)])
    assert result.exit_code == 0, result.output
    assert ": valid," in result.output


def test_the_helm_chart_folder_is_refused_with_what_to_commit():
    result = CliRunner().invoke(cli, ["validate", str(CORPUS / "argocd-helm-guestbook")])
    assert result.exit_code == 1
    assert "a Helm chart: Capstan does not run Helm" in result.output
    assert "helm template RELEASE" in result.output


def test_online_boutique_keeps_its_grpc_probes_and_load_balancer():
    repository = load_repository(CORPUS / "online-boutique")
    kinds = {(item.obj.kind, item.obj.name): item.obj for item in repository.objects}
    frontend = kinds[("Service", "frontend-external")]
    assert frontend.spec.type == "LoadBalancer"  # type: ignore[attr-defined]
    probes = [
        c.readiness_probe
        for (kind, _), obj in kinds.items()
        if kind == "Deployment"
        for c in obj.spec.template.spec.containers  # type: ignore[attr-defined]
        if c.readiness_probe is not None and c.readiness_probe.grpc is not None
    ]
    assert len(probes) >= 8


def test_what_the_measured_corpus_needed_loads_with_its_kubernetes_meaning(tmp_path: Path):
    """Forms public repositories use that Capstan refused before: an autoscaling/v1 HPA, a
    hook Job with generateName, clusterIPs, an empty serviceAccountName."""
    documents = CORPUS / "documents"

    def only(name: str, kind: str) -> KubeObject:
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text((documents / name).read_text())
        return next(i.obj for i in load_repository(folder).objects if i.obj.kind == kind)

    hpa = only("sockshop-cart-hpa-autoscaling-v1.yaml", "HorizontalPodAutoscaler")
    assert hpa.api_version == "autoscaling/v2"
    metric = hpa.spec["metrics"][0]  # type: ignore[attr-defined]
    assert metric["resource"]["target"]["averageUtilization"] == 50
    only("argocd-helm-hooks-generatename.yaml", "Job")
    jobs = load_repository(tmp_path / "argocd-helm-hooks-generatename.yaml").objects
    generated = [i.obj.name for i in jobs if i.obj.name.startswith("upgrade-sql-schema")]
    assert len(generated) == 1
    assert len(generated[0]) == len("upgrade-sql-schema") + 5
    again = load_repository(tmp_path / "argocd-helm-hooks-generatename.yaml").objects
    assert generated[0] in {i.obj.name for i in again}, "the same manifest keeps its name"
    service = only("linkerd-nginx-statefulset-clusterips.yaml", "Service")
    assert service.spec.cluster_ip == "None"  # type: ignore[attr-defined]
    limit = only("istio-rate-limit-empty-serviceaccount.yaml", "Deployment")
    assert limit.spec.template.spec.service_account_name is None  # type: ignore[attr-defined]


def test_services_get_the_families_an_ipv4_single_stack_api_server_gives(tmp_path: Path):
    """Istio's tcp-echo sample in its IPv4 form loads with the families Kubernetes sets; a
    Service without them gets SingleStack and IPv4, as the API server defaults them."""
    shutil.copy(CORPUS / "documents" / "istio-tcp-echo-ipv4-single-stack.yaml", tmp_path)
    shutil.copy(CORPUS / "documents" / "podinfo-service.yaml", tmp_path)
    services = [i.obj for i in load_repository(tmp_path).objects if i.obj.kind == "Service"]
    assert {s.name: s.to_dict()["spec"]["ipFamilies"] for s in services} == {
        "tcp-echo": ["IPv4"],
        "podinfo": ["IPv4"],
    }
    assert {s.spec.ip_family_policy for s in services} == {"SingleStack"}  # type: ignore[attr-defined]


def test_a_dual_stack_service_is_refused_at_each_field_saying_the_cluster_is_ipv4(
    tmp_path: Path,
):
    """What an IPv4 single-stack Kubernetes API server says of Istio's dual-stack sample, with
    what to write instead."""
    shutil.copy(CORPUS / "documents" / "refused-istio-helloworld-dual-stack.yaml", tmp_path)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    where = f"{tmp_path}/refused-istio-helloworld-dual-stack.yaml"
    assert result.output.splitlines()[:2] == [
        f"{where}:10:3: spec.ipFamilyPolicy: this cluster is not configured for dual-stack "
        "services: the Service network of a Capstan cluster is IPv4 only (single-stack); write "
        "PreferDualStack (IPv4 here, both families on a dual-stack cluster) or SingleStack",
        f"{where}:12:5: spec.ipFamilies[0]: IPv6 is not configured on this cluster: the Service "
        "network of a Capstan cluster is IPv4 only (single-stack); list IPv4 only, or leave "
        "ipFamilies out",
    ]


def test_a_plain_folder_builds_the_kustomize_folder_inside_it_as_flux_does(tmp_path: Path):
    """argocd-example-apps' layout: a plain folder (guestbook/) beside a Kustomize one
    (kustomize-guestbook/), pointed at as a whole. The Kustomize folder is built by kustomize
    (its namePrefix applied), its files not read again as plain manifests."""
    shutil.copytree(CORPUS / "argocd-guestbook", tmp_path / "guestbook")
    shutil.copytree(CORPUS / "argocd-kustomize-guestbook", tmp_path / "kustomize-guestbook")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    repository = load_repository(tmp_path)
    placed = {str(i.obj.key): (i.source.file, i.source.line) for i in repository.objects}
    assert placed == {
        "Service/default/guestbook-ui": ("guestbook/guestbook-ui-svc.yaml", 2),
        "Deployment/default/guestbook-ui": ("guestbook/guestbook-ui-deployment.yaml", 2),
        "Service/default/kustomize-guestbook-ui": (
            "kustomize-guestbook/guestbook-ui-svc.yaml",
            2,
        ),
        "Deployment/default/kustomize-guestbook-ui": (
            "kustomize-guestbook/guestbook-ui-deployment.yaml",
            2,
        ),
    }
    assert "kustomize-guestbook/kustomization.yaml" in repository.files


def test_a_manifest_with_template_placeholders_is_refused_as_a_template():
    result = CliRunner().invoke(cli, ["validate", str(CORPUS / "kubernetes-vitess-templates")])
    assert result.exit_code == 1
    assert (
        "kubernetes-vitess-templates/etcd-service-template.yaml:8:12: '{{cell}}' looks like a "
        "template placeholder (Helm, Go or Jinja): this file must be rendered before it is "
        "committed"
    ) in result.output
    assert "unhashable" not in result.output
    assert "1 error" in result.output, "the other file, without placeholders, is valid"

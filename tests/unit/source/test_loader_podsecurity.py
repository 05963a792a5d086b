"""The loader enforces each namespace's Pod Security level: file:line, field and level, and
the whole repository is refused."""

from __future__ import annotations

import pytest
from source_testdata import CONFIGMAP, DEPLOYMENT

from reconciler.source import ManifestErrors, load_repository

HOSTILE = DEPLOYMENT.replace(
    "          image: capstan.local/busybox:1\n",
    "          image: capstan.local/busybox:1\n"
    "          securityContext:\n"
    "            allowPrivilegeEscalation: true\n"
    "            capabilities:\n"
    "              add: [SYS_ADMIN]\n",
).replace("  name: web\n", "  name: web\n  namespace: shop\n", 1)


def namespace(level: str | None) -> str:
    labels = f"  labels:\n    pod-security.kubernetes.io/enforce: {level}\n" if level else ""
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n{labels}"


def errors(root) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root)
    return [str(error) for error in caught.value.errors]


def test_an_added_capability_refuses_the_whole_repository(make_repo):
    root = make_repo({"ns.yaml": namespace(None), "web.yaml": HOSTILE, "cm.yaml": CONFIGMAP})
    assert errors(root) == [
        "web.yaml:22:21: spec.template.spec.containers[0].securityContext.capabilities.add[0]: "
        'violates PodSecurity "baseline:latest": non-default capabilities (container "web" '
        'must not include "SYS_ADMIN" in securityContext.capabilities.add); namespace "shop" '
        'enforces baseline; to admit it, give Namespace "shop" (ns.yaml:1:1) the label '
        "pod-security.kubernetes.io/enforce: privileged"
    ]


def test_a_privileged_namespace_admits_it(make_repo):
    root = make_repo({"ns.yaml": namespace("privileged"), "web.yaml": HOSTILE})
    loaded = load_repository(root)
    assert {item.obj.kind for item in loaded.objects} == {"Namespace", "Deployment"}


def test_a_restricted_namespace_names_every_field_it_needs(make_repo):
    root = make_repo({"ns.yaml": namespace("restricted"), "web.yaml": HOSTILE})
    found = errors(root)
    assert all('violates PodSecurity "restricted:latest"' in line for line in found)
    fields = [line.split(": ")[1] for line in found]
    assert fields == [
        "spec.template.spec.containers[0].securityContext.runAsNonRoot",
        "spec.template.spec.containers[0].securityContext.seccompProfile.type",
        "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
        "spec.template.spec.containers[0].securityContext.capabilities.drop",
        "spec.template.spec.containers[0].securityContext.capabilities.add[0]",
    ]


def test_a_restricted_pod_loads_in_a_restricted_namespace(make_repo):
    restricted = DEPLOYMENT.replace(
        "          image: capstan.local/busybox:1\n",
        "          image: capstan.local/busybox:1\n"
        "          securityContext:\n"
        "            runAsNonRoot: true\n"
        "            runAsUser: 1000\n"
        "            allowPrivilegeEscalation: false\n"
        "            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}\n"
        "            seccompProfile: {type: RuntimeDefault}\n",
    ).replace("  name: web\n", "  name: web\n  namespace: shop\n", 1)
    root = make_repo({"ns.yaml": namespace("restricted"), "web.yaml": restricted})
    assert len(load_repository(root).objects) == 2


def test_the_default_namespace_is_baseline(make_repo):
    hostile = HOSTILE.replace("  namespace: shop\n", "")
    assert "enforces baseline" in errors(make_repo({"web.yaml": hostile}))[0]


_TEMPLATE = """    metadata:
      labels: {app: w}
    spec:
      restartPolicy: RESTART
      containers:
        - name: w
          image: capstan.local/busybox:1
          securityContext:
            privileged: true
"""


def _indented(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(True))


WORKLOADS = {
    "DaemonSet": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: w\n  namespace: shop\n"
    "spec:\n  selector:\n    matchLabels: {app: w}\n  template:\n"
    + _TEMPLATE.replace("RESTART", "Always"),
    "StatefulSet": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: w\n"
    "  namespace: shop\nspec:\n  serviceName: w\n  selector:\n    matchLabels: {app: w}\n"
    "  template:\n" + _TEMPLATE.replace("RESTART", "Always"),
    "Job": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: w\n  namespace: shop\n"
    "spec:\n  template:\n" + _TEMPLATE.replace("RESTART", "Never"),
    "CronJob": "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: w\n  namespace: shop\n"
    "spec:\n  schedule: '*/5 * * * *'\n  jobTemplate:\n    spec:\n      template:\n"
    + _indented(_TEMPLATE.replace("RESTART", "Never"), 4),
}


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_every_kind_that_makes_pods_is_held_to_the_level(make_repo, kind):
    # A privileged container in any pod template refuses the commit, whatever the kind.
    root = make_repo({"ns.yaml": namespace(None), "w.yaml": WORKLOADS[kind]})
    [line] = errors(root)
    assert 'violates PodSecurity "baseline:latest": privileged' in line, line
    assert "containers[0].securityContext.privileged" in line, line
    assert line.startswith("w.yaml:"), line


NODE_AGENT = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-exporter
  namespace: shop
spec:
  selector:
    matchLabels: {app: node-exporter}
  template:
    metadata:
      labels: {app: node-exporter}
    spec:
      hostPID: true
      containers:
        - name: exporter
          image: capstan.local/busybox:1
          volumeMounts:
            - name: root
              mountPath: /host/root
              readOnly: true
              mountPropagation: HostToContainer
      volumes:
        - name: root
          hostPath:
            path: /
"""


def test_host_fields_are_refused_below_privileged_at_file_line_and_field(make_repo):
    root = make_repo({"ns.yaml": namespace("baseline"), "agent.yaml": NODE_AGENT})
    assert errors(root) == [
        'agent.yaml:13:7: spec.template.spec.hostPID: violates PodSecurity "baseline:latest": '
        'host namespaces (hostPID=true); namespace "shop" enforces baseline; to admit it, give '
        'Namespace "shop" (ns.yaml:1:1) the label pod-security.kubernetes.io/enforce: '
        "privileged",
        "agent.yaml:24:11: spec.template.spec.volumes[0].hostPath: violates PodSecurity "
        '"baseline:latest": hostPath volumes (volume "root"); namespace "shop" enforces '
        'baseline; to admit it, give Namespace "shop" (ns.yaml:1:1) the label '
        "pod-security.kubernetes.io/enforce: privileged",
    ]
    root = make_repo({"ns.yaml": namespace("restricted"), "agent.yaml": NODE_AGENT})
    assert (
        "agent.yaml:24:11: spec.template.spec.volumes[0].hostPath: violates PodSecurity "
        '"restricted:latest": restricted volume types (volume "root" uses restricted volume '
        'type "hostPath"); namespace "shop" enforces restricted; to admit it, give Namespace '
        '"shop" (ns.yaml:1:1) the label pod-security.kubernetes.io/enforce: privileged'
    ) in errors(root)


def test_host_fields_load_in_a_privileged_namespace(make_repo):
    root = make_repo({"ns.yaml": namespace("privileged"), "agent.yaml": NODE_AGENT})
    (daemon_set,) = [i.obj for i in load_repository(root).objects if i.obj.kind == "DaemonSet"]
    spec = daemon_set.spec.template.spec  # type: ignore[attr-defined]
    assert spec.host_pid is True
    assert spec.volumes[0].host_path.path == "/"
    assert spec.containers[0].volume_mounts[0].mount_propagation == "HostToContainer"

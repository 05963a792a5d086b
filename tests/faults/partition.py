"""A node cut off from the control plane for real: its sshd in a network namespace, then DROP.

``NetNamespace`` makes a network namespace joined to this host by a veth pair on a private
``10.213.X.0/30`` (the host end .1, the namespace end .2; nothing routes it further, so the
traffic stays on this machine). ``PartitionRig`` is the fault rig (``fault_rig``: etcd,
supervised replicas, the local agent as the *other* node) plus a second node whose sshd runs
in that namespace while its ``capstan-agent serve`` runs on this host (it publishes pod ports
on a loopback address and programs its own proxy table, as a node would). The control plane
reaches that node only over SSH to the namespace address; ``cut`` adds ``iptables -j DROP``
on INPUT and OUTPUT inside the namespace (both directions: a one-way DROP still lets the
node's status leak out for a while), ``heal`` deletes those two rules. Nothing is added to
this host's own iptables.

The app is ``web`` at ``REPLICAS`` whose pages answer with the pod's own name (its host
name), so a request through a node's NodePort says which pod the proxy picked. Two Services
select its pods (``SERVICES``): the NodePort ``web`` and the ClusterIP ``web-peers``.
``ServiceProbe`` asks the other node's NodePort in a loop and keeps every answer.

Used by tests/faults/test_partition.py and bench/faults.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

from reconciler.api import Api, NotFound
from reconciler.controllers.endpoints import read_endpoints
from schemas import ConfigMap, Node, Pod
from tests.e2e.test_gitops_loop import NODE_PORT, SERVICE, deployment, page
from tests.faults.scenario import FaultRig, fault_rig
from tests.fixtures.local_agent import cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNode, SshNodeFarm
from tests.fixtures.waiting import wait_until

REPLICAS = 4
LOCAL = "local"  # the rig's own node (tests.e2e.test_gitops_loop.NODE)

PEERS_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web-peers
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 8080
      targetPort: http
"""
#: Every Service that selects the web pods (the NodePort one the probe asks first).
SERVICES = ("web", "web-peers")


class NetNamespace:
    """A network namespace with one veth link to this host on a private /30."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000:05d}{random.randint(0, 99):02d}"
        self.name = f"capp-{tag}"
        self.host_link = f"cph{tag}"
        self.ns_link = f"cpn{tag}"
        octet = self._free_octet()
        self.host_address = f"10.213.{octet}.1"
        self.address = f"10.213.{octet}.2"
        self.cut_now = False

    @staticmethod
    def _free_octet() -> int:
        used = subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], check=True, capture_output=True, text=True
        ).stdout
        free = [n for n in range(1, 255) if f" 10.213.{n}." not in used]
        return random.choice(free)

    def _ns(self, *command: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, *command], check=True, capture_output=True
        )

    def create(self) -> NetNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link,
             "netns", self.name],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link],
            check=True,
            capture_output=True,
        )
        subprocess.run(["ip", "link", "set", self.host_link, "up"], check=True, capture_output=True)
        self._ns("ip", "addr", "add", f"{self.address}/30", "dev", self.ns_link)
        self._ns("ip", "link", "set", self.ns_link, "up")
        self._ns("ip", "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        """Drop every packet into and out of the namespace (its sshd's address)."""
        self._ns("iptables", "-A", "INPUT", "-j", "DROP")
        self._ns("iptables", "-A", "OUTPUT", "-j", "DROP")
        self.cut_now = True

    def heal(self) -> None:
        if not self.cut_now:
            return
        self._ns("iptables", "-D", "INPUT", "-j", "DROP")
        self._ns("iptables", "-D", "OUTPUT", "-j", "DROP")
        self.cut_now = False

    def close(self) -> None:
        # Deleting the host end deletes its peer; the namespace itself goes with ``del``.
        subprocess.run(["ip", "link", "del", self.host_link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


_HTTPD = 'command: ["httpd", "-f", "-p", "8080", "-h", "/www"]'
_WHO = (
    'command: ["sh", "-c", '
    '"mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]'
)


def who_deployment(version: str) -> str:
    """The e2e ``web`` Deployment at ``REPLICAS`` whose page is the pod's host name (its pod
    name) instead of the ``page-<version>`` ConfigMap it still mounts."""
    web = deployment(version, replicas=REPLICAS)
    assert _HTTPD in web
    return web.replace(_HTTPD, _WHO)


def who_files(version: str) -> dict[str, str]:
    return {"page.yaml": page(version), "web/deployment.yaml": who_deployment(version)}


def fetch_name(address: str, port: int, *, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=timeout) as response:
        return str(response.read().decode().strip())


@dataclass
class Answer:
    at: float
    """``time.monotonic()`` when the request was sent."""
    pod: str | None
    """The pod that answered, or None."""
    error: str | None = None
    """``refused`` (nothing listens where the proxy sent it), ``timeout`` or another error."""


@dataclass
class ServiceProbe:
    """Asks ``address``'s NodePort for the Service in a loop; keeps every answer."""

    address: str
    port: int = NODE_PORT
    answers: list[Answer] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ServiceProbe:
        self._thread = threading.Thread(target=self._run, daemon=True, name="service-probe")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.wait(0.1):
            at = time.monotonic()
            try:
                self.answers.append(Answer(at, fetch_name(self.address, self.port)))
            except urllib.error.URLError as exc:
                reason = exc.reason
                kind = "refused" if isinstance(reason, ConnectionRefusedError) else repr(reason)
                self.answers.append(Answer(at, None, kind))
            except ConnectionError as exc:
                kind = "refused" if isinstance(exc, ConnectionRefusedError) else repr(exc)
                self.answers.append(Answer(at, None, kind))
            except TimeoutError:
                self.answers.append(Answer(at, None, "timeout"))

    def since(self, at: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= at]

    def last_pods(self, count: int) -> list[str | None] | None:
        """The pods of the last ``count`` answers, or None while there are fewer."""
        answers = list(self.answers)
        return [a.pod for a in answers[-count:]] if len(answers) >= count else None

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@dataclass
class PartitionRig:
    rig: FaultRig
    netns: NetNamespace
    victim: SshNode
    """The node behind the namespace: the one the partition cuts off."""
    version: str = "v1"
    """The app's version in Git."""

    @property
    def api(self) -> Api:
        return self.rig.plane.api

    def web_pods(self) -> list[Pod]:
        return [p for p in self.api.list(Pod).items if p.metadata.labels.get("app") == "web"]

    def live_pods(self) -> list[Pod]:
        return [p for p in self.web_pods() if p.metadata.deletion_timestamp is None]

    def endpoint_pods(self) -> dict[str, set[str]]:
        """The pods in each of ``SERVICES``' endpoints."""
        return {service: self._endpoint_pods(service) for service in SERVICES}

    def in_any_endpoints(self) -> set[str]:
        """The pods some Service still routes to."""
        return set().union(*self.endpoint_pods().values())

    def endpoints_are(self, pods: set[str]) -> bool:
        """Every Service's endpoints hold exactly ``pods``."""
        return all(found == pods for found in self.endpoint_pods().values())

    def _endpoint_pods(self, service: str) -> set[str]:
        try:
            config_map = self.api.get(ConfigMap, f"{service}.endpoints", namespace="default")
        except NotFound:
            return set()
        endpoints = read_endpoints(config_map)
        if endpoints is None:
            return set()
        return {t.pod for p in endpoints.ports for t in p.targets if t.pod is not None}

    def node_ready(self, name: str) -> str | None:
        try:
            node = self.api.get(Node, name)
        except NotFound:  # not synced from Git yet
            return None
        ready = node.status.condition("Ready") if node.status is not None else None
        return ready.status if ready is not None else None

    def serving(self, version: str) -> bool:
        """``REPLICAS`` live web pods of ``version``, all Ready, and nothing else left."""
        pods = self.web_pods()
        return (
            len(pods) == REPLICAS
            and all(p.metadata.annotations.get("example.com/version") == version for p in pods)
            and all(p.status is not None and p.status.ready for p in pods)
        )

    def spread(self) -> dict[str, list[Pod]]:
        by_node: dict[str, list[Pod]] = {}
        for pod in self.live_pods():
            by_node.setdefault(pod.spec.node_name or "", []).append(pod)
        return by_node

    def victim_containers(self, pod_names: set[str]) -> list[str]:
        """Running ``httpd`` containers on the victim node of the pods in ``pod_names``."""
        found = []
        for container in self.rig.agent.docker.api.containers(
            filters={
                "label": [
                    f"io.capstan.managed-by={self.victim.name}",
                    "io.capstan.container=httpd",
                ]
            }
        ):
            labels = container["Labels"]
            if labels.get("io.capstan.pod-name", "") in pod_names:
                found.append(container["Id"])
        return found

    def running_app_containers(self) -> int:
        """Running ``httpd`` containers on both nodes."""
        total = 0
        for node in (self.rig.agent.node, self.victim.name):
            total += len(
                self.rig.agent.docker.api.containers(
                    filters={
                        "label": [f"io.capstan.managed-by={node}", "io.capstan.container=httpd"]
                    }
                )
            )
        return total

    def spread_out(self) -> None:
        """Both nodes Ready and the web pods on both (a rollout made while both are Ready
        spreads them; pods made before a node first reported may all sit on the other)."""
        wait_until(
            lambda: {self.node_ready(LOCAL), self.node_ready(self.victim.name)} == {"True"},
            timeout=120,
            what="both nodes Ready",
        )
        wait_until(lambda: self.serving(self.version), timeout=240, what="the app serving")
        if len(self.spread()) < 2:
            self.version = f"v{int(self.version[1:]) + 1}"
            self.rig.repo.commit(self.version, who_files(self.version))
            wait_until(lambda: self.serving(self.version), timeout=240, what="a rollout")
        assert len(self.spread()) == 2, f"web pods on one node only: {self.spread().keys()}"
        wait_until(
            lambda: self.endpoints_are({p.name for p in self.live_pods()}),
            timeout=60,
            what="every web pod in every Service's endpoints",
        )


def _away_from_victim(prig: PartitionRig, victims: set[str]) -> bool:
    """The victims are gone or being deleted, and ``REPLICAS`` Ready pods run on the other
    node."""
    live = prig.live_pods()
    return (
        not {p.name for p in live} & victims
        and len(live) == REPLICAS
        and all(p.spec.node_name == LOCAL for p in live)
        and all(p.status is not None and p.status.ready for p in live)
    )


#: Consecutive answers from other pods that show the proxy's rules no longer hold a victim
#: (with about half the pods cut off, a proxy still routing there passes with p < 1e-5).
SWITCHED_AFTER = 20


@dataclass
class PartitionRun:
    """What one partition did, in ``time.monotonic()`` seconds unless said otherwise."""

    victims: set[str]
    """The partitioned node's web pods."""
    probe: ServiceProbe
    cut_at: float
    out_at: float
    """The victims were seen out of the Service's endpoints."""
    switched_at: float
    """The other node's proxy was seen sending ``SWITCHED_AFTER`` requests elsewhere."""
    replaced_at: float
    """The victims were seen evicted and ``REPLICAS`` Ready pods on the other node."""
    healed_at: float
    """The node was Ready again, the moved pods' containers stopped, no duplicates left."""
    unknown_after_cut_s: float
    """From the cut to the node's Unknown transition (API clock, this machine's)."""
    unknown_after_renewal_s: float
    """From the node's last lease renewal to its Unknown transition (API clock)."""
    evicted_after_unknown_s: float
    """From the Unknown transition to the first eviction (API clock)."""


def _node_unknown_since(prig: PartitionRig) -> float:
    node = prig.api.get(Node, prig.victim.name)
    ready = node.status.condition("Ready") if node.status is not None else None
    assert ready is not None
    assert ready.status == "Unknown"
    assert ready.last_transition_time is not None
    return ready.last_transition_time.timestamp()


def _first_eviction(prig: PartitionRig, victims: set[str]) -> float:
    stamps = [
        e.first_timestamp.timestamp()
        for e in prig.api.list_events(namespace="default")
        if e.reason == "NodeControllerEviction" and e.involved_object.name in victims
    ]
    assert stamps, "no NodeControllerEviction event for the partitioned node's pods"
    return min(stamps)


def run_partition(prig: PartitionRig, *, grace_s: float, eviction_s: float) -> PartitionRun:
    """Cut the victim node off, follow it through NotReady, eviction and heal, checking on
    the way what must hold whatever the timing; returns when it ran and the probe."""
    prig.spread_out()
    victims = {p.name for p in prig.spread()[prig.victim.name]}
    probe = ServiceProbe(prig.rig.agent.bind).start()
    try:
        wait_until(
            lambda: victims & {a.pod for a in list(probe.answers)},
            timeout=60,
            what="the other node's proxy sending to the victim node's pods",
        )
        prig.netns.cut()
        cut_at, cut_wall = time.monotonic(), time.time()

        wait_until(
            lambda: not prig.in_any_endpoints() & victims,
            timeout=grace_s + 60,
            what="the partitioned node's pods out of every Service's endpoints",
        )
        out_at = time.monotonic()
        # Out of the endpoints at once, evicted later: the same pods, NotReady, the node
        # Unknown; its containers run on (the node has heard of none of this).
        pods = {p.name: p for p in prig.web_pods()}
        assert victims <= pods.keys()
        assert all(pods[v].metadata.deletion_timestamp is None for v in victims)
        assert not any(pods[v].status is not None and pods[v].status.ready for v in victims)
        unknown_since = _node_unknown_since(prig)
        lease = prig.api.get_node_lease(prig.victim.name)
        assert lease is not None
        assert prig.endpoint_pods() == dict.fromkeys(SERVICES, set(pods) - victims)
        assert len(prig.victim_containers(victims)) == len(victims)

        wait_until(
            lambda: (last := probe.last_pods(SWITCHED_AFTER)) and not set(last) & victims,
            timeout=60,
            what="the other node's proxy no longer sending to the partitioned node",
        )
        switched_at = time.monotonic()

        wait_until(
            lambda: _away_from_victim(prig, victims),
            timeout=eviction_s + 120,
            what="the pods evicted and running on the other node",
        )
        replaced_at = time.monotonic()
        # Still cut off: the evicted pods' containers run on, unreachable.
        assert len(prig.victim_containers(victims)) == len(victims)
        evicted_at = _first_eviction(prig, victims)

        prig.netns.heal()
        wait_until(
            lambda: prig.node_ready(prig.victim.name) == "True",
            timeout=120,
            what="the node Ready again",
        )
        wait_until(
            lambda: not prig.victim_containers(victims),
            timeout=120,
            what="the healed node's agent stopping the moved pods",
        )
        wait_until(
            lambda: prig.running_app_containers() == REPLICAS,
            timeout=60,
            what="no duplicate containers",
        )
        assert _away_from_victim(prig, victims)
        wait_until(
            lambda: prig.endpoints_are({p.name for p in prig.live_pods()}),
            timeout=60,
            what="every Service's endpoints holding the replacements only",
        )
        healed_at = time.monotonic()
        wait_until(
            lambda: len(probe.since(healed_at)) >= SWITCHED_AFTER,
            timeout=60,
            what="requests after the heal",
        )
    finally:
        probe.stop()
    return PartitionRun(
        victims=victims,
        probe=probe,
        cut_at=cut_at,
        out_at=out_at,
        switched_at=switched_at,
        replaced_at=replaced_at,
        healed_at=healed_at,
        unknown_after_cut_s=unknown_since - cut_wall,
        unknown_after_renewal_s=unknown_since - lease.renew_time.timestamp(),
        evicted_after_unknown_s=evicted_at - unknown_since,
    )


@contextlib.contextmanager
def partition_rig(
    client: docker.DockerClient, work: Path, *, grace_s: float, eviction_s: float
) -> Iterator[PartitionRig]:
    """The fault rig with ``--node-monitor-grace-period grace_s --pod-eviction-timeout
    eviction_s``, two replicas, and the namespaced node declared in Git next to ``local``."""
    netns = NetNamespace().create()
    victim_proxy = proxy_args("capn")
    try:
        with SshNodeFarm(prefix="part") as farm:
            victim_bind = f"127.0.{random.randint(1, 250)}.{random.randint(2, 250)}"
            # The agent runs on this host: it publishes pod ports on a loopback address of its
            # own (click keeps the last --bind-address, overriding the farm's sshd address).
            agent_args = ("--heartbeat", "1", "--resync", "1", "--bind-address", victim_bind)
            (victim,) = farm.start(
                1,
                addresses=[netns.address],
                agent_args=(*agent_args, *victim_proxy),
                netns=netns.name,
            )
            args = (
                "--node-monitor-grace-period",
                str(grace_s),
                "--pod-eviction-timeout",
                str(eviction_s),
            )
            files = {
                "service.yaml": SERVICE,
                "peers-service.yaml": PEERS_SERVICE,
                **who_files("v1"),
                f"nodes/{victim.name}.yaml": victim.manifest(),
            }
            with fault_rig(client, work, replicas=2, extra_args=args, files=files) as rig:
                try:
                    yield PartitionRig(rig=rig, netns=netns, victim=victim)
                finally:
                    netns.heal()
    finally:
        cleanup_proxy(victim_proxy)
        netns.close()

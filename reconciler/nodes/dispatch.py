"""The control plane's side of the nodes: desired sets out to the agents, their status back in.

Run by the ``ControllerManager`` as a component. It sits at the "nodes" step of the data
flow: after the scheduler has bound pods to nodes, and before the agents run them.

Out: a :class:`~reconciler.controllers.runtime.Controller` keyed by Node. ``reconcile(node)``
keeps the ``NodePool``'s connection in line with the Node object (a deleted Node's host is
drained with an empty set, then disconnected), recomputes the node's complete
``DesiredSet`` *from the informer caches* (``reconciler.nodes.desired``) and pushes it; the
pool drops a push that changes nothing, so a spurious visit costs one comparison. What
enqueues a node: its Node object; its pods (old and new node of a pod) after a short
debounce (``add_after``: a rollout touches many objects at once); a ConfigMap or Secret, the
nodes whose pods use it, after the same debounce (the pods' ``config`` index; one no pod
uses, such as the sync state, enqueues none); and anything every node's set depends on —
Services with their endpoints (the endpoints ConfigMaps), Ingresses, IngressClasses and the
Secrets their ``tls`` names — which enqueues every node at most once per
``everything_interval_s`` (kube-proxy's ``minSyncPeriod``). New Service rules reach a node
at most once per ``rules_interval``, which grows with the rules' bytes times the nodes: in
between, the node's pushes carry the rules it has. The controller's resync enqueues every
Node. The queue runs on the system clock: debounce is real time whatever clock the API uses.

In: every ``status`` says its node is alive; one that carries nothing new (an idle node's
heartbeat: no pods, no node status) stops there. Otherwise the pool's callbacks park the
newest ``status`` per node (a delta is merged into the parked one) and the newest connection
state per node, and add the node to the report queue; report workers turn them into API
writes (``reconciler.nodes.reports``): the Node's status, each reported pod's status (only
for pods that exist with that uid and are bound to that node), and the ``AgentConnected``
Node condition. Status writes start from the cache and re-read on Conflict. Each node's last
pod reports are held (``HeldReports``); when its Node's Ready turns from Unknown back, they
are written again, restoring the pods the node controller marked not Ready meanwhile.

Heartbeat leases are renewed on a thread of their own, so a backlog of status writes never
makes a live node look stale: every ``lease_renew_s`` it writes, in one store transaction,
the lease of every node heard since, stamped with when it was last heard. A fleet at idle
then costs one store commit per ``lease_renew_s``, not one per node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler.api import ApiError, Conflict, NotFound, SystemClock, now_utc
from reconciler.controllers.runtime import (
    Controller,
    ControllerContext,
    InformerEvent,
    Result,
    TerminalError,
    WorkQueue,
)
from reconciler.nodes import _wire
from reconciler.nodes.connection import AGENT_CONNECTED, ConnectionSettings, NodeState
from reconciler.nodes.desired import (
    PodWireCache,
    bound_pods,
    desired_set,
    referenced_names,
    service_rule,
)
from reconciler.nodes.endpoint import DEFAULT_AGENT_COMMAND, NodeEndpoint, NodeName
from reconciler.nodes.pool import NodePool, UnknownNode
from reconciler.nodes.reports import (
    HeldReports,
    agent_condition,
    node_status_update,
    pod_report_applies,
    pod_status_update,
    with_condition,
)
from reconciler.workloads.endpoints import endpoints_config_map_name, read_endpoints
from schemas import ConfigMap, Node, Pod, Secret, Service
from schemas.meta import KubeObject, ObjectKey
from schemas.networking import Ingress, IngressClass, is_capstan_class, tls_secret_names
from schemas.node import NodeStatus
from schemas.protocol import Endpoint, PodReport, ServiceRule, Status

__all__ = ["DispatchSettings", "NodeDispatcher"]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=KubeObject)
_Versions = tuple[str | None, str | None]
#: Every Service's rule in wire order, and their wire JSON comma-joined.
_Rules = tuple[list[ServiceRule], str]


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    #: Wait this long after the first change before computing: a burst becomes one push.
    debounce_s: float = 0.05
    #: A change that matters to every node (a Service or its endpoints, an Ingress)
    #: recomputes every node at most this often, as kube-proxy's minSyncPeriod batches
    #: endpoint churn; a node's own pods, and the ConfigMaps and Secrets they use, still
    #: push it after ``debounce_s``.
    everything_interval_s: float = 0.5
    #: New Service rules go to a node at most once per ``everything_interval_s``, or less
    #: often on a fleet whose rules are large: every node gets every rule, so their bytes
    #: grow with nodes times endpoints, and each sync of new rules costs every agent a
    #: parse of them all. The rules reach each node at most once per (their bytes times nodes
    #: / this) seconds; a node's own pods are pushed meanwhile with the rules it has. The
    #: whole rules count even for an agent that gets them as a delta (``serviceDeltas``):
    #: it still persists and reprograms the whole merged set on each sync.
    rules_bytes_per_s: float = 4_000_000.0
    #: Threads writing agent reports, each a node at a time.
    report_workers: int = 4
    #: Write the heartbeat leases of the nodes heard from this often (one store transaction
    #: for all of them; a lease is then at most this plus the agent's heartbeat old), and a
    #: node's own lease before its Node is written at most this often. A quarter of the
    #: lease duration, the kubelet's 10 s of 40.
    lease_renew_s: float = 10.0
    lease_duration_s: int = 40
    #: Status writes re-read and retry this many times on Conflict.
    write_attempts: int = 5
    #: Pod status writes run on this many threads, so the store commits them in groups.
    status_writers: int = 8
    #: A deleted Node's agent gets this long to acknowledge its empty set before the
    #: connection is dropped.
    drain_timeout_s: float = 10.0
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)


PoolFactory = Callable[..., NodePool]


class NodeDispatcher(Controller):
    """Pushes each node's desired set and writes back what its agent reports.

    ``local_agent_command`` is what a ``spec.address: local`` node runs to reach its agent
    (e.g. ``capstan-agent connect --socket /run/capstan/agent.sock``); SSH nodes run
    ``DEFAULT_AGENT_COMMAND`` (or what their authorized_keys forces). ``known_hosts`` is a
    fleet-wide OpenSSH known_hosts file for nodes without ``spec.hostKey``.
    """

    name = "node-dispatcher"
    #: A push only fills the node's slot (the pool's session threads send), so two workers
    #: keep up with a fleet; they compute different nodes in parallel.
    workers = 2
    #: Every input is watched and a connection resends its newest set on reconnect: the
    #: resync (every node's set recomputed) is a rare safety net, not a heartbeat.
    resync_period_s = 300.0

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        local_agent_command: str = DEFAULT_AGENT_COMMAND,
        known_hosts: Path | None = None,
        settings: DispatchSettings | None = None,
        pool_factory: PoolFactory = NodePool,
    ) -> None:
        super().__init__(ctx)
        self.settings = settings or DispatchSettings()
        # Debounce and the every-node interval are real time, whatever clock the API has.
        self.queue = WorkQueue(SystemClock())
        self._local_agent_command = local_agent_command
        self._known_hosts = known_hosts
        self.pool = pool_factory(
            on_message=self._on_message,
            on_state=self._on_state,
            settings=self.settings.connection,
        )
        self.nodes = self.watch_own(Node)
        self.watch_events(Node, self._node_event)
        self.pods = self.watch_events(Pod, self._pod_event)
        self.pods.add_index(_CONFIG_INDEX, _config_refs)
        self.config_maps = self.watch_events(ConfigMap, self._config_event)
        self.secrets = self.watch_events(Secret, self._config_event)
        self.services = self.watch_events(Service, self._everything_event)
        self.ingresses = self.watch_events(Ingress, self._everything_event)
        self.ingress_classes = self.watch_events(IngressClass, self._everything_event)

        self._lock = threading.Lock()
        # When the pending every-node visit is due (None: none pending), and when the last
        # one was: every node is enqueued at most once per ``everything_interval_s``.
        self._everything_due: float | None = None
        self._everything_last = float("-inf")
        # Service rules, recomputed once per change of Services or endpoints, not per node.
        self._rules_epoch = 0
        self._rules: tuple[int, _Rules] | None = None
        # (namespace, name) -> ((Service rv, endpoints rv), rule, its wire JSON).
        self._rules_cache: dict[tuple[str, str], tuple[_Versions, ServiceRule, str]] = {}
        self._wire_cache = PodWireCache()
        # The rules each node was last given, and when (monotonic): see ``_rules_for``.
        self._node_rules: dict[str, tuple[float, _Rules]] = {}
        # (kind, namespace, name) -> the ConfigMap/Secret last sent to each node.
        self._sent_config: dict[str, dict[tuple[str, str, str], KubeObject]] = {}
        self._draining: set[str] = set()

        # The in-side: parked reports, the nodes to write them for, their workers.
        self._statuses: dict[NodeName, Status] = {}
        self._states: dict[NodeName, NodeState] = {}
        self._reports: WorkQueue[NodeName] = WorkQueue(SystemClock())
        self._lease_renewed: dict[NodeName, float] = {}
        # Nodes that sent a status since their lease was last renewed, and when (API clock).
        self._heard: dict[NodeName, float] = {}
        self._held = HeldReports()
        # Nodes back from Unknown whose held pod reports are to be written again.
        self._restore: set[NodeName] = set()
        self._writers = ThreadPoolExecutor(
            max_workers=self.settings.status_writers, thread_name_prefix="node-status"
        )
        self._side_threads: list[threading.Thread] = []

    # -- what enqueues a node ---------------------------------------------------------------

    def _node_event(self, event: InformerEvent[Node]) -> None:
        # Back from Unknown: the node controller marked its pods not Ready meanwhile, and an
        # agent whose link survived has no news about them. Written after the node
        # controller's pod writes (it marks pods only while the node is Unknown), which this
        # informer's shared stream delivers before this event.
        if event.old is not None and _unknown(event.old) and not _unknown(event.object):
            name = NodeName(event.object.name)
            with self._lock:
                self._restore.add(name)
            self._reports.add(name)

    def _pod_event(self, event: InformerEvent[Pod]) -> None:
        if event.type == "DELETED":
            self._wire_cache.forget(event.object.metadata.uid or "")
        old = event.old.spec.node_name if event.old is not None else None
        for node in {event.object.spec.node_name, old}:
            if node:
                self.queue.add_after(_node_key(node), self.settings.debounce_s)

    def _config_event(self, event: InformerEvent[ConfigMap] | InformerEvent[Secret]) -> None:
        """A ConfigMap or Secret reaches the nodes whose pods use it after ``debounce_s``;
        a Service's endpoints or an Ingress's TLS Secret reach every node."""
        obj = event.object
        if self._every_node_needs(obj):
            self._everything_event(event)
            return
        users = self.pods.by_index(_CONFIG_INDEX, _config_ref(obj.kind, obj.namespace, obj.name))
        for node in {pod.spec.node_name for pod in users}:
            if node:
                self.queue.add_after(_node_key(node), self.settings.debounce_s)

    def _every_node_needs(self, obj: ConfigMap | Secret) -> bool:
        if isinstance(obj, ConfigMap):
            # The endpoints of a Service: what ``_service_rules`` reads for it.
            service = obj.name.removesuffix(endpoints_config_map_name(""))
            return (
                obj.name == endpoints_config_map_name(service)
                and self.services.get(service, namespace=obj.namespace) is not None
            )
        return any(
            ingress.namespace == obj.namespace and obj.name in tls_secret_names(ingress)
            for ingress in self._capstan_ingresses()
        )

    def _everything_event(self, event: InformerEvent[Any]) -> None:
        # Services (with their endpoints) and Ingresses may matter to every node; the pool
        # drops the pushes that change nothing.
        now = time.monotonic()
        with self._lock:
            if event.object.kind in ("Service", "ConfigMap"):
                self._rules_epoch += 1
            if self._everything_due is not None and self._everything_due > now:
                return  # a visit of every node is already on its way
            due = max(now + self.settings.debounce_s, self._everything_last + self.interval)
            self._everything_due = self._everything_last = due
        for node in self.nodes.list():
            self.queue.add_after(node.key, due - now)

    @property
    def interval(self) -> float:
        return self.settings.everything_interval_s

    def resync(self) -> None:
        """Enqueue every Node; the wire cache keeps only pods that still exist."""
        self._wire_cache.retain({p.metadata.uid or "" for p in self.pods.list()})
        with self._lock:
            self._rules_epoch += 1  # a lost endpoints event must not outlive a resync
        super().resync()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        for index in range(self.settings.report_workers):
            self._side_thread(f"node-reports-{index}", self._report_worker)
        self._side_thread("node-leases", self._lease_loop)

    def _side_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._side_threads.append(thread)

    def stop(self) -> None:
        super().stop()
        self._reports.shutdown()
        for thread in self._side_threads:
            thread.join(timeout=10)
        self._side_threads.clear()
        # Closing reports every connection as Closed; say so on the Nodes, so a stopped
        # reconciler does not leave them claiming a live agent link.
        self.pool.close()
        self.flush_reports()
        self._writers.shutdown(wait=True)

    # -- out: desired sets ------------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result | None:
        """Bring the node's connection in line with its Node object and push its set."""
        name = NodeName(key.name)
        node = self.nodes.get(name)
        with self._lock:
            draining = name in self._draining
        if draining:
            return None  # the drain's end enqueues the node again
        if node is None:
            if name in self.pool.names():
                self._drain(name)
            return None
        try:
            endpoint = NodeEndpoint.from_node(
                node,
                known_hosts=self._known_hosts,
                agent_command=(
                    self._local_agent_command if node.spec.is_local else DEFAULT_AGENT_COMMAND
                ),
            )
        except ValueError as exc:
            raise TerminalError(f"cannot connect: {exc}") from exc
        self.pool.ensure(endpoint)
        try:
            future = self.pool.push(name, self._desired(name, *self._rules_for(name)))
        except UnknownNode:
            return None  # removed meanwhile: its Node event brings it back
        future.add_done_callback(_report_rejection(name))
        return None

    def _rules_for(self, name: str) -> _Rules:
        """The rules to give node ``name`` now: the current ones, unless it was given other
        rules less than ``rules_interval`` ago; then the ones it has, and the node comes
        back when the interval is over."""
        current = self._current_rules()
        now = time.monotonic()
        with self._lock:
            last = self._node_rules.get(name)
            if last is not None and last[1][1] != current[1]:
                due = last[0] + self.rules_interval(current)
                if now < due:
                    self.queue.add_after(_node_key(name), due - now)
                    return last[1]
            if last is None or last[1][1] != current[1]:
                self._node_rules[name] = (now, current)
        return current

    def rules_interval(self, rules: _Rules) -> float:
        """How long a node keeps its rules before it is given newer ones (see
        ``DispatchSettings.rules_bytes_per_s``)."""
        fleet_bytes = len(rules[1]) * max(1, len(self.pool.names()))
        return max(self.interval, fleet_bytes / self.settings.rules_bytes_per_s)

    def _current_rules(self) -> _Rules:
        with self._lock:
            epoch, memo = self._rules_epoch, self._rules
        if memo is not None and memo[0] == epoch:
            return memo[1]
        rules = self._service_rules()
        with self._lock:
            self._rules = (epoch, rules)
        return rules

    def desired_for(self, name: str) -> _wire.DesiredSet:
        """The desired set ``name`` gets now (for ``capstan describe node`` and tests)."""
        return self._desired(name, *self._service_rules())

    def _desired(self, name: str, rules: list[ServiceRule], rules_json: str) -> _wire.DesiredSet:
        # WARNING: a sync deletes a ConfigMap that left Git (page-v1) in the same pass that
        # rolls the Deployment to the new one (page-v2); the old pods keep running, and
        # still reference it, until the rollout replaces them. Sending a set without it
        # makes the agent report them CreateContainerConfigError (not Ready) mid-rollout.
        # Like a kubelet, which keeps a mounted copy, the node keeps getting the last version
        # it was sent for as long as a pod on it references the object.
        with self._lock:
            sent = dict(self._sent_config.get(name, {}))

        def config_map(ns: str, n: str) -> ConfigMap | None:
            found = self.config_maps.get(n, namespace=ns)
            if found is None:
                kept = sent.get(("ConfigMap", ns, n))
                found = kept if isinstance(kept, ConfigMap) else None
            return found

        def secret(ns: str, n: str) -> Secret | None:
            found = self.secrets.get(n, namespace=ns)
            if found is None:
                kept = sent.get(("Secret", ns, n))
                found = kept if isinstance(kept, Secret) else None
            return found

        desired = desired_set(
            bound_pods(self.pods.by_index("node", name), name),
            config_map=config_map,
            secret=secret,
            services=rules,
            services_json=rules_json,
            ingresses=self._capstan_ingresses(),
            cache=self._wire_cache,
        )
        now_sent: dict[tuple[str, str, str], KubeObject] = {
            (obj.kind, obj.namespace, obj.name): obj
            for obj in [*desired.config_maps, *desired.secrets]
        }
        with self._lock:
            self._sent_config[name] = now_sent
        return desired

    def _capstan_ingresses(self) -> list[Ingress]:
        classes = self.ingress_classes.list()
        return [
            ingress
            for ingress in self.ingresses.list()
            if ingress.metadata.deletion_timestamp is None and is_capstan_class(ingress, classes)
        ]

    def _service_rules(self) -> _Rules:
        """Every Service's rule, in wire order (namespace, name), and their JSON joined."""
        rules = []
        texts = []
        cache: dict[tuple[str, str], tuple[_Versions, ServiceRule, str]] = {}
        for service in sorted(self.services.list(), key=lambda s: (s.namespace, s.name)):
            stored = self.config_maps.get(
                endpoints_config_map_name(service.name), namespace=service.namespace
            )
            # A rule changes only with its Service or its endpoints: reuse it while neither
            # has a new resourceVersion (a pass runs on every endpoint change anywhere).
            key = (service.namespace, service.name)
            versions = (
                service.metadata.resource_version,
                stored.metadata.resource_version if stored is not None else None,
            )
            cached = self._rules_cache.get(key)
            if cached is None or cached[0] != versions or versions[0] is None:
                rule = service_rule(service, self._endpoints_of(service, stored))
                if cached is not None:
                    rule = _sharing_endpoints(rule, cached[1])
                text = rule.model_dump_json(by_alias=True, exclude_none=True)
                if cached is not None and cached[2] == text:
                    rule = cached[1]  # the same rule: the same object
                cached = (versions, rule, text)
            cache[key] = cached
            rules.append(cached[1])
            texts.append(cached[2])
        self._rules_cache = cache
        return rules, ",".join(texts)

    @staticmethod
    def _endpoints_of(service: Service, stored: ConfigMap | None) -> ServiceRule | None:
        if stored is None:
            return None
        try:
            computed = read_endpoints(stored)
        except ValueError:
            _log.warning("unreadable endpoints for Service %s/%s", service.namespace, service.name)
            return None
        return computed.to_service_rule() if computed is not None else None

    def _drain(self, name: NodeName) -> None:
        """A Node left the API: tell its agent to run nothing, then drop the connection.

        As in Kubernetes, where the pods of a deleted Node are deleted and its kubelet stops
        them, the host is left empty rather than running pods nobody manages any more. The
        empty set is pushed on the open connection; the connection closes once the agent
        acknowledges it (or after ``drain_timeout_s``) on a thread of its own, so an
        unreachable host never holds up the other nodes.
        """
        with self._lock:
            self._draining.add(name)
        try:
            future = self.pool.push(name, _wire.DesiredSet())
        except UnknownNode:
            future = None

        def finish() -> None:
            if future is not None:
                try:
                    future.result(timeout=self.settings.drain_timeout_s)
                except Exception as exc:
                    _log.warning("node %s: not drained (%s); disconnecting anyway", name, exc)
            with self._lock:
                self._draining.discard(name)
                self._lease_renewed.pop(name, None)
                self._sent_config.pop(name, None)
                self._node_rules.pop(name, None)
            self._held.forget(name)
            if self.nodes.get(name) is None:
                self.pool.remove(name)
            self.queue.add(_node_key(name))  # re-added meanwhile: connect it again

        threading.Thread(target=finish, name=f"node-drain-{name}", daemon=True).start()

    # -- in: agent messages ------------------------------------------------------------------------

    def _on_message(self, node: NodeName, message: _wire.AgentMessage) -> None:
        # On the node's session thread: note the node alive, park what is new and return.
        if isinstance(message, Status):
            heard = self.ctx.clock.time()
            with self._lock:
                self._heard[node] = heard
                parked = self._statuses.get(node)
                if parked is None and _says_nothing_new(message):
                    return  # the lease thread writes that it was heard
                if parked is not None and not message.complete:
                    message = _merged(parked, message)
                self._statuses[node] = message
            self._reports.add(node)
        elif isinstance(message, _wire.ErrorMessage):
            _log.warning("node %s: agent error %s: %s", node, message.code, message.message)

    def _on_state(self, state: NodeState) -> None:
        with self._lock:
            self._states[state.node] = state
        self._reports.add(state.node)

    def _report_worker(self) -> None:
        while not self._stopped.is_set():
            node = self._reports.get()
            if node is None:
                continue
            try:
                self._flush_node(node)
            except Exception:
                _log.exception("writing the reports of node %s failed", node)
                self._reports.retry_after(node, 0.5)
            finally:
                self._reports.done(node)

    def _lease_loop(self) -> None:
        # Leases on a thread of their own: a backlog of pod status writes (a rollout on a
        # large fleet) must never delay the heartbeat that keeps a node Ready.
        while not self._stopped.wait(self.settings.lease_renew_s):
            try:
                self._renew_leases()
            except Exception:
                _log.exception("renewing node leases failed")

    def _renew_leases(self, only: NodeName | None = None) -> None:
        """Write the lease of every node heard from since its last renewal, in one store
        transaction, each stamped with when it was last heard; with ``only``, that node's
        alone, if it was not renewed within ``lease_renew_s``."""
        now = self.ctx.clock.time()
        with self._lock:
            if only is None:
                due, self._heard = self._heard, {}
            elif (
                only in self._heard
                and now - self._lease_renewed.get(only, float("-inf"))
                >= self.settings.lease_renew_s
            ):
                due = {only: self._heard.pop(only)}
            else:
                return
        known: dict[str, float] = {n: at for n, at in due.items() if self.nodes.get(n) is not None}
        if not known:
            return
        self.api.renew_node_leases(known, duration_s=self.settings.lease_duration_s)
        with self._lock:
            self._lease_renewed.update((NodeName(name), now) for name in known)

    def flush_reports(self) -> None:
        """Write every pending agent report now (the report workers do this continuously;
        also used at stop and by tests)."""
        with self._lock:
            nodes = set(self._states) | set(self._statuses) | self._restore
        for node in sorted(nodes):
            self._flush_node(node)

    def _flush_node(self, node: NodeName) -> None:
        # One node's reports are flushed by one worker at a time (the queue hands a key to
        # one worker), so the held reports are never older than what is being written.
        with self._lock:
            state = self._states.pop(node, None)
            status = self._statuses.pop(node, None)
            restore = node in self._restore
            self._restore.discard(node)
        if state is not None:
            self._write_agent_condition(state)
        if (status is None and not restore) or self.nodes.get(node) is None:
            return  # nothing to write, or an unknown node: its pods are skipped
        pods: list[PodReport] = []
        if status is not None:
            self._held.note(node, status)
            pods = status.pods
            if status.node is not None:
                # The order matters: renew the lease before touching the Node, so the node
                # controller, woken by a Node write, never sees fresh status with a stale lease.
                self._renew_leases(node)
                self._write_node_status(node, status.node)
        if restore:
            pods = self._held.reports(node)
        # Concurrent writes let the store commit them in groups.
        list(self._writers.map(lambda r: self._write_pod_status(node, r), pods))

    def _write_pod_status(self, node: NodeName, report: PodReport) -> None:
        received = now_utc(self.ctx.clock)
        self._update_status(
            Pod, report.name, report.namespace, _pod_change(report, node=node, received=received)
        )

    def _write_agent_condition(self, state: NodeState) -> None:
        def change(node: Node) -> Node | None:
            previous = node.status.condition(AGENT_CONNECTED) if node.status else None
            condition = agent_condition(state, previous, now=now_utc(self.ctx.clock))
            updated = with_condition(node, condition)
            return None if updated is None else node.model_copy(update={"status": updated})

        self._update_status(Node, state.node, "", change)

    def _write_node_status(self, node_name: NodeName, reported: NodeStatus) -> None:
        def node_change(node: Node) -> Node | None:
            updated = node_status_update(node.status, reported)
            return None if updated is None else node.model_copy(update={"status": updated})

        self._update_status(Node, node_name, "", node_change)

    def _update_status(
        self, kind: type[T], name: str, namespace: str, change: Callable[[T], T | None]
    ) -> None:
        """Write ``change(current)`` as the object's status: from the cache first, re-read
        from the API after a Conflict. ``change`` returning None means nothing to write."""
        informer = self.ctx.informers.informer(kind)
        current: T | None = informer.get(name, namespace=namespace or None)
        for _ in range(self.settings.write_attempts):
            if current is None:
                return
            wanted = change(current)
            if wanted is None:
                return
            try:
                self.api.update_status(wanted)
                return
            except Conflict:
                try:
                    current = self.api.get(kind, name, namespace=namespace or "default")
                except NotFound:
                    return
            except NotFound:
                return
            except ApiError as exc:
                _log.warning(
                    "writing status of %s %s/%s failed: %s", kind.__name__, namespace, name, exc
                )
                return
        _log.warning(
            "writing status of %s %s/%s: still conflicting after %d attempts",
            kind.__name__,
            namespace,
            name,
            self.settings.write_attempts,
        )


def _sharing_endpoints(rule: ServiceRule, previous: ServiceRule) -> ServiceRule:
    """``rule`` with each endpoint that ``previous`` had too replaced by ``previous``'s model.

    WHY: every push compares the node's new set with its last one (``PushSlot.offer``, and
    the connection's "rules unchanged" test), once per node. Two rules built apart compare
    endpoint by endpoint through pydantic's ``__eq__``, and a rule lists the endpoints on
    every node, so the cost grew with nodes squared. With the unchanged endpoints shared,
    and an unchanged rule kept as the very object, the comparison is mostly identity checks.
    """
    seen: dict[tuple[str, int, str | None], Endpoint] = {
        (e.address, e.port, e.hostname): e for port in previous.ports for e in port.endpoints
    }
    ports = [
        port.model_copy(
            update={
                "endpoints": [seen.get((e.address, e.port, e.hostname), e) for e in port.endpoints]
            }
        )
        for port in rule.ports
    ]
    return rule.model_copy(update={"ports": ports})


def _node_key(name: str) -> ObjectKey:
    return ObjectKey("Node", "", name)


#: The pods' index of the ConfigMaps and Secrets each uses (``_config_ref`` values).
_CONFIG_INDEX = "config"


def _config_ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def _config_refs(pod: Pod) -> list[str]:
    config_maps, secrets = referenced_names(pod.spec)
    return [
        *(_config_ref("ConfigMap", pod.namespace, name) for name in config_maps),
        *(_config_ref("Secret", pod.namespace, name) for name in secrets),
    ]


def _unknown(node: Node) -> bool:
    ready = node.status.condition("Ready") if node.status is not None else None
    return ready is not None and ready.status == "Unknown"


def _says_nothing_new(status: Status) -> bool:
    """A delta with no pods, no removals and no node status: only that the node is alive."""
    return not status.complete and status.node is None and not status.pods and not status.removed


def _merged(parked: Status, delta: Status) -> Status:
    """``delta`` merged into the ``parked`` status not yet written: the pods each carries
    (the delta's newer), the removals of both, and the newest node status."""
    pods = {r.uid: r for r in parked.pods}
    pods.update((r.uid, r) for r in delta.pods)
    removed = list(dict.fromkeys([*parked.removed, *delta.removed]))
    for uid in delta.removed:
        pods.pop(uid, None)
    return delta.model_copy(
        update={
            "pods": list(pods.values()),
            "complete": parked.complete,
            "removed": [] if parked.complete else [u for u in removed if u not in pods],
            "node": delta.node if delta.node is not None else parked.node,
        }
    )


def _pod_change(report: PodReport, *, node: str, received: datetime) -> Callable[[Pod], Pod | None]:
    def change(pod: Pod) -> Pod | None:
        if not pod_report_applies(pod, report, node=node):
            return None
        updated = pod_status_update(pod.status, report.status, received=received)
        return None if updated is None else pod.model_copy(update={"status": updated})

    return change


def _report_rejection(node: str) -> Callable[[Future[_wire.Ack]], None]:
    def done(future: Future[_wire.Ack]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            _log.warning("node %s refused its desired set: %s", node, error)

    return done

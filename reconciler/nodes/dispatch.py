"""The control plane's side of the nodes: desired sets out to the agents, their status back in.

Run by the ``ControllerManager`` as a component (``NodeDispatcher(ctx)``; ``start``/``stop``).
It sits at the "nodes" step of the data flow: after the scheduler has bound pods to nodes,
and before the agents run them.

Out: for every Node object the ``NodePool`` keeps one connection (``ensure``); a deleted
Node's host is drained (an empty set) and then disconnected.
Whenever anything a node's desired set depends on changes — its pods, the ConfigMaps and
Secrets they reference, any Service or its endpoints, any Ingress or IngressClass (every node
serves the Ingresses of Capstan's class) — the node is marked dirty; after a
short debounce (a rollout touches many objects at once) its complete ``DesiredSet`` is
recomputed *from the informer caches* (``reconciler.nodes.desired``) and pushed. The event
that woke it only says which node to look at, never what to send, and an unchanged set is
not re-sent by the pool, so a spurious wake-up costs one comparison. A periodic resync
recomputes every node.

In: the pool's callbacks only park the newest ``status`` per node and the newest connection
state per node (status messages are complete, so older ones are worthless); one worker turns
them into API writes (``reconciler.nodes.reports``): the heartbeat lease the node controller
checks, the Node's status, each reported pod's status (only for pods that exist with that
uid and are bound to that node), and the ``AgentConnected`` Node condition. Status writes
start from the cache and re-read on Conflict.

Why threads, not asyncio: the pool, the informers and the controller runtime are threaded;
two threads here (dispatch, reports) keep a slow API write from delaying a push and a slow
node from delaying anything (the pool isolates nodes itself).
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

from reconciler.api import ApiError, Conflict, NotFound, now_utc
from reconciler.controllers.runtime import ControllerContext, Informer, InformerEvent
from reconciler.nodes import _wire
from reconciler.nodes.connection import AGENT_CONNECTED, ConnectionSettings, NodeState
from reconciler.nodes.desired import PodWireCache, bound_pods, desired_set, service_rule
from reconciler.nodes.endpoint import DEFAULT_AGENT_COMMAND, NodeEndpoint, NodeName
from reconciler.nodes.pool import NodePool, UnknownNode
from reconciler.nodes.reports import (
    agent_condition,
    node_status_update,
    pod_report_applies,
    pod_status_update,
    with_condition,
)
from reconciler.workloads.endpoints import endpoints_config_map_name, read_endpoints
from schemas import ConfigMap, Node, Pod, Secret, Service
from schemas.meta import KubeObject
from schemas.networking import Ingress, IngressClass, is_capstan_class
from schemas.protocol import PodReport, ServiceRule, Status

__all__ = ["DispatchSettings", "NodeDispatcher"]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=KubeObject)
_Versions = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    #: Wait this long after the first change before computing: a burst becomes one push.
    debounce_s: float = 0.05
    #: A change that may matter to every node (a Service or its endpoints, a ConfigMap, a
    #: Secret) recomputes every node at most this often, as kube-proxy's minSyncPeriod
    #: batches endpoint churn; a node's own pods still push after ``debounce_s``.
    everything_interval_s: float = 0.5
    #: Recompute every node this often even without events (real seconds).
    resync_s: float = 30.0
    #: Renew a node's heartbeat lease at most this often (API clock seconds).
    lease_renew_s: float = 5.0
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


class NodeDispatcher:
    """Pushes each node's desired set and writes back what its agent reports.

    ``local_agent_command`` is what a ``spec.address: local`` node runs to reach its agent
    (e.g. ``capstan-agent connect --socket /run/capstan/agent.sock``); SSH nodes run
    ``DEFAULT_AGENT_COMMAND`` (or what their authorized_keys forces). ``known_hosts`` is a
    fleet-wide OpenSSH known_hosts file for nodes without ``spec.hostKey``.
    """

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        local_agent_command: str = DEFAULT_AGENT_COMMAND,
        known_hosts: Path | None = None,
        settings: DispatchSettings | None = None,
        pool_factory: PoolFactory = NodePool,
    ) -> None:
        self.ctx = ctx
        self.api = ctx.api
        self.settings = settings or DispatchSettings()
        self._local_agent_command = local_agent_command
        self._known_hosts = known_hosts
        self.pool = pool_factory(
            on_message=self._on_message,
            on_state=self._on_state,
            settings=self.settings.connection,
        )
        self.nodes = ctx.informers.informer(Node)
        self.pods = ctx.informers.informer(Pod)
        self.config_maps = ctx.informers.informer(ConfigMap)
        self.secrets = ctx.informers.informer(Secret)
        self.services = ctx.informers.informer(Service)
        self.ingresses = ctx.informers.informer(Ingress)
        self.ingress_classes = ctx.informers.informer(IngressClass)

        self._cv = threading.Condition()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._statuses: dict[NodeName, Status] = {}
        self._states: dict[NodeName, NodeState] = {}
        self._lease_renewed: dict[NodeName, float] = {}
        # (namespace, name) -> ((Service rv, endpoints rv), rule): see _service_rules.
        self._rules_cache: dict[tuple[str, str], tuple[_Versions, ServiceRule]] = {}
        self._wire_cache = PodWireCache()
        # Nodes that sent a status since their lease was last renewed.
        self._heard: set[NodeName] = set()
        self._writers = ThreadPoolExecutor(
            max_workers=self.settings.status_writers, thread_name_prefix="node-status"
        )
        # (kind, namespace, name) -> the ConfigMap/Secret last sent to each node.
        self._sent_config: dict[str, dict[tuple[str, str, str], KubeObject]] = {}
        self._draining: set[str] = set()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handlers: list[tuple[Informer[Any], Callable[..., None]]] = []
        self._watch(self.nodes, self._node_event)
        self._watch(self.pods, self._pod_event)
        self._watch(self.config_maps, self._everything_event)
        self._watch(self.secrets, self._everything_event)
        self._watch(self.services, self._everything_event)
        self._watch(self.ingresses, self._everything_event)
        self._watch(self.ingress_classes, self._everything_event)

    # -- wiring: informer handlers only mark what to look at -----------------------------------

    def _watch(self, informer: Informer[Any], handler: Callable[..., None]) -> None:
        informer.add_handler(handler)
        self._handlers.append((informer, handler))

    def _mark(self, *nodes: str | None) -> None:
        with self._cv:
            self._dirty.update(n for n in nodes if n)
            self._cv.notify_all()

    def _mark_all(self) -> None:
        with self._cv:
            self._all_dirty = True
            self._cv.notify_all()

    def _node_event(self, event: InformerEvent[Node]) -> None:
        self._mark(event.object.name)

    def _pod_event(self, event: InformerEvent[Pod]) -> None:
        old = event.old.spec.node_name if event.old is not None else None
        self._mark(event.object.spec.node_name, old)

    def _everything_event(self, event: InformerEvent[KubeObject]) -> None:
        # ConfigMaps, Secrets and Services (with their endpoints) may matter to every node;
        # the pool drops the pushes that change nothing.
        self._mark_all()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("dispatch", self._dispatch_loop),
            ("reports", self._report_loop),
            ("leases", self._lease_loop),
        ):
            thread = threading.Thread(target=target, name=f"node-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopped.set()
        with self._cv:
            self._cv.notify_all()
        for informer, handler in self._handlers:
            informer.remove_handler(handler)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        # Closing reports every connection as Closed; say so on the Nodes, so a stopped
        # reconciler does not leave them claiming a live agent link.
        self.pool.close()
        self.flush_reports()
        self._writers.shutdown(wait=True)

    # -- out: desired sets ------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        next_resync = time.monotonic() + self.settings.resync_s
        next_everything = 0.0  # when a pass over every node may run again
        while not self._stopped.is_set():
            with self._cv:
                while not self._stopped.is_set():
                    now = time.monotonic()
                    if now >= next_resync:
                        self._all_dirty = True
                    if self._dirty or (self._all_dirty and now >= next_everything):
                        break
                    wake = min(next_resync, next_everything) if self._all_dirty else next_resync
                    self._cv.wait(max(0.001, wake - now))
            if self._stopped.wait(self.settings.debounce_s):
                return
            with self._cv:
                everything = self._all_dirty and time.monotonic() >= next_everything
                dirty, self._dirty = self._dirty, set()
                if everything:
                    self._all_dirty = False
            if everything:
                next_resync = time.monotonic() + self.settings.resync_s
                next_everything = time.monotonic() + self.settings.everything_interval_s
            try:
                self.dispatch(None if everything else dirty)
            except Exception:
                # Level-triggered: the next event or resync recomputes from scratch.
                _log.exception("computing node desired sets failed; retrying at the next change")
                self._stopped.wait(0.5)
                self._mark_all()

    def dispatch(self, names: set[str] | None = None) -> dict[NodeName, Future[_wire.Ack]]:
        """Bring the pool in line with the Node objects, then push the desired set of the
        given nodes (every node when None). Returns the push futures."""
        self._sync_pool()
        with self._cv:
            pooled = set(self.pool.names()) - self._draining
        chosen = pooled if names is None else pooled & set(names)
        if not chosen:
            return {}
        rules = self._service_rules()
        futures: dict[NodeName, Future[_wire.Ack]] = {}
        for name in sorted(chosen):
            desired = self._desired(name, rules)
            try:
                future = self.pool.push(NodeName(name), desired)
            except UnknownNode:
                continue  # removed between names() and push: nothing to send it
            future.add_done_callback(_report_rejection(name))
            futures[NodeName(name)] = future
        if names is None:
            # Every node was computed: the cache keeps only pods still bound somewhere.
            self._wire_cache.retain({p.metadata.uid or "" for p in self.pods.list()})
        return futures

    def desired_for(self, name: str) -> _wire.DesiredSet:
        """The desired set ``name`` gets now (for ``capstan describe node`` and tests)."""
        return self._desired(name, self._service_rules())

    def _desired(self, name: str, rules: list[ServiceRule]) -> _wire.DesiredSet:
        # WARNING: a sync deletes a ConfigMap that left Git (page-v1) in the same pass that
        # rolls the Deployment to the new one (page-v2); the old pods keep running, and
        # still reference it, until the rollout replaces them. Sending a set without it
        # makes the agent report them CreateContainerConfigError (not Ready) mid-rollout.
        # Like a kubelet, which keeps a mounted copy, the node keeps getting the last version
        # it was sent for as long as a pod on it references the object.
        with self._cv:
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
            ingresses=self._capstan_ingresses(),
            cache=self._wire_cache,
        )
        now_sent: dict[tuple[str, str, str], KubeObject] = {
            (obj.kind, obj.namespace, obj.name): obj
            for obj in [*desired.config_maps, *desired.secrets]
        }
        with self._cv:
            self._sent_config[name] = now_sent
        return desired

    def _capstan_ingresses(self) -> list[Ingress]:
        classes = self.ingress_classes.list()
        return [
            ingress
            for ingress in self.ingresses.list()
            if ingress.metadata.deletion_timestamp is None and is_capstan_class(ingress, classes)
        ]

    def _service_rules(self) -> list[ServiceRule]:
        rules = []
        cache: dict[tuple[str, str], tuple[_Versions, ServiceRule]] = {}
        for service in self.services.list():
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
            if cached is not None and cached[0] == versions and versions[0] is not None:
                cache[key] = cached
                rules.append(cached[1])
                continue
            endpoints = None
            if stored is not None:
                try:
                    computed = read_endpoints(stored)
                except ValueError:
                    _log.warning(
                        "unreadable endpoints for Service %s/%s", service.namespace, service.name
                    )
                    computed = None
                endpoints = computed.to_service_rule() if computed is not None else None
            rule = service_rule(service, endpoints)
            cache[key] = (versions, rule)
            rules.append(rule)
        self._rules_cache = cache
        return rules

    def _sync_pool(self) -> None:
        wanted: dict[NodeName, NodeEndpoint] = {}
        for node in self.nodes.list():
            try:
                wanted[NodeName(node.name)] = NodeEndpoint.from_node(
                    node,
                    known_hosts=self._known_hosts,
                    agent_command=(
                        self._local_agent_command if node.spec.is_local else DEFAULT_AGENT_COMMAND
                    ),
                )
            except ValueError as exc:
                _log.warning("node %s: cannot connect: %s", node.name, exc)
        with self._cv:
            draining = set(self._draining)
        for name in set(self.pool.names()) - set(wanted) - draining:
            self._drain(name)
        for name, endpoint in wanted.items():
            if name not in draining:
                self.pool.ensure(endpoint)

    def _drain(self, name: NodeName) -> None:
        """A Node left the API: tell its agent to run nothing, then drop the connection.

        As in Kubernetes, where the pods of a deleted Node are deleted and its kubelet stops
        them, the host is left empty rather than running pods nobody manages any more. The
        empty set is pushed on the open connection; the connection closes once the agent
        acknowledges it (or after ``drain_timeout_s``) on a thread of its own, so an
        unreachable host never holds up the other nodes.
        """
        with self._cv:
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
            with self._cv:
                self._draining.discard(name)
                self._lease_renewed.pop(name, None)
                self._sent_config.pop(name, None)
            if self.nodes.get(name) is None:
                self.pool.remove(name)
            self._mark(name)  # re-added meanwhile: the next pass connects it again

        threading.Thread(target=finish, name=f"node-drain-{name}", daemon=True).start()

    # -- in: agent messages ------------------------------------------------------------------------

    def _on_message(self, node: NodeName, message: _wire.AgentMessage) -> None:
        # On the node's reader thread: park it and return.
        if isinstance(message, Status):
            with self._cv:
                parked = self._statuses.get(node)
                if parked is not None and not message.complete:
                    # A delta carries only the pods that changed: keep the parked ones.
                    merged = {r.uid: r for r in parked.pods}
                    merged.update((r.uid, r) for r in message.pods)
                    for uid in message.removed:
                        merged.pop(uid, None)
                    message = message.model_copy(
                        update={"pods": list(merged.values()), "complete": parked.complete}
                    )
                self._statuses[node] = message
                self._heard.add(node)
                self._cv.notify_all()
        elif isinstance(message, _wire.ErrorMessage):
            _log.warning("node %s: agent error %s: %s", node, message.code, message.message)

    def _on_state(self, state: NodeState) -> None:
        with self._cv:
            self._states[state.node] = state
            self._cv.notify_all()

    def _report_loop(self) -> None:
        while not self._stopped.is_set():
            with self._cv:
                while not (self._statuses or self._states or self._stopped.is_set()):
                    self._cv.wait(1.0)
            if self._stopped.is_set():
                return
            try:
                self.flush_reports()
            except Exception:
                _log.exception("writing node reports failed")
                self._stopped.wait(0.5)

    def _lease_loop(self) -> None:
        # Leases on a thread of their own: a backlog of pod status writes (a rollout on a
        # large fleet) must never delay the heartbeat that keeps a node Ready.
        while not self._stopped.wait(min(1.0, self.settings.lease_renew_s / 2)):
            try:
                self._renew_leases()
            except Exception:
                _log.exception("renewing node leases failed")

    def _renew_leases(self) -> None:
        """Renew the lease of every node heard from since its last renewal, when due."""
        now = self.ctx.clock.time()
        with self._cv:
            due = [
                name
                for name in self._heard
                if now - self._lease_renewed.get(name, float("-inf")) >= self.settings.lease_renew_s
            ]
            self._heard.difference_update(due)
        for name in due:
            if self.nodes.get(name) is None:
                continue
            self.api.renew_node_lease(name, duration_s=self.settings.lease_duration_s)
            with self._cv:
                self._lease_renewed[name] = now

    def flush_reports(self) -> None:
        """Write every pending agent report now (the report thread does this continuously;
        also used at stop and by tests)."""
        with self._cv:
            states, self._states = self._states, {}
            statuses, self._statuses = self._statuses, {}
        for state in states.values():
            self._write_agent_condition(state)
        # The order matters: renew the leases before touching the Nodes, so the node
        # controller, woken by a Node write, never sees fresh status with a stale lease.
        self._renew_leases()
        pods: list[tuple[NodeName, PodReport]] = []
        for node, status in statuses.items():
            if self._write_status(node, status):
                pods.extend((node, report) for report in status.pods)
        # Concurrent writes let the store commit them in groups; map returns when all are done.
        list(self._writers.map(lambda item: self._write_pod_status(*item), pods))

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

    def _write_status(self, node_name: NodeName, status: Status) -> bool:
        """Write the Node's status; False when the node is unknown (its pods are skipped)."""
        if self.nodes.get(node_name) is None:
            return False

        def node_change(node: Node) -> Node | None:
            updated = node_status_update(node.status, status.node)
            return None if updated is None else node.model_copy(update={"status": updated})

        self._update_status(Node, node_name, "", node_change)
        return True

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

"""What one node must run: its complete ``DesiredSet``, computed from cached API objects.

Called by the dispatcher (``reconciler.nodes.dispatch``) for every node whose inputs may
have changed: the pods bound to the node, the ConfigMaps and Secrets those pods reference
(env ``valueFrom``, ``envFrom``, volumes) and every Service with its ready endpoints (the
Endpoints controller's output) become one value that ``NodePool.push`` sends when it differs
from the last one. Pure functions of their inputs: no API, no clock.

Only what the agent needs travels: pods lose their ``status`` and every object loses its
``resourceVersion``. WARNING: without that, each status report the agent sends (written to
the pod by the dispatcher) would change the node's desired set and trigger a new push,
which makes the agent report again — a loop that never settles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from reconciler.controllers.runtime import share_field_sets
from reconciler.nodes._packed import POD_JSON
from reconciler.nodes._wire import DesiredSet
from schemas import ConfigMap, Pod, Secret, Service
from schemas.meta import KubeObject
from schemas.networking import Ingress, tls_secret_names
from schemas.pod import PodSpec
from schemas.protocol import ServicePortRule, ServiceRule, wire_cluster_ip

__all__ = [
    "ConfigLookup",
    "bound_pods",
    "desired_set",
    "referenced_names",
    "service_rule",
]

ObjT = TypeVar("ObjT", bound=KubeObject)

#: ``(namespace, name) -> object or None``: an informer's ``get`` in the dispatcher.
ConfigLookup = Callable[[str, str], ObjT | None]


def bound_pods(pods: Iterable[Pod], node: str) -> list[Pod]:
    """The pods a node must run: bound to it and not being deleted, in a stable order."""
    chosen = [
        pod
        for pod in pods
        if pod.spec.node_name == node and pod.metadata.deletion_timestamp is None
    ]
    return sorted(chosen, key=lambda p: (p.namespace, p.name))


def referenced_names(spec: PodSpec) -> tuple[set[str], set[str]]:
    """The ConfigMap and Secret names a pod spec refers to (env, envFrom, volumes)."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for container in [*spec.init_containers, *spec.containers]:
        for env in container.env:
            source = env.value_from
            if source is None:
                continue
            if source.config_map_key_ref is not None:
                config_maps.add(source.config_map_key_ref.name)
            if source.secret_key_ref is not None:
                secrets.add(source.secret_key_ref.name)
        for env_from in container.env_from:
            if env_from.config_map_ref is not None:
                config_maps.add(env_from.config_map_ref.name)
            if env_from.secret_ref is not None:
                secrets.add(env_from.secret_ref.name)
    for volume in spec.volumes:
        if volume.config_map is not None:
            config_maps.add(volume.config_map.name)
        if volume.secret is not None:
            secrets.add(volume.secret.secret_name)
    return config_maps, secrets


def _wire_copy(obj: ObjT) -> ObjT:
    meta = obj.metadata.model_copy(update={"resource_version": None})
    return obj.model_copy(update={"metadata": meta})


def _wire_pod(pod: Pod) -> Pod:
    meta = pod.metadata.model_copy(update={"resource_version": None})
    return pod.model_copy(update={"metadata": meta, "status": None})


def service_rule(service: Service, endpoints: ServiceRule | None) -> ServiceRule:
    """The rule a node's proxy programs for ``service``.

    The ports come from the Service itself, so a Service whose endpoints are not computed
    yet (or that has none) still gets its in-cluster name and NodePort — answering
    "connection refused" rather than not existing. Endpoints are taken per port from the
    Endpoints controller's rule when it describes the same port, in (address, port) order,
    the order ``schemas.protocol.merge_service_rules`` keeps.
    """
    by_port: dict[tuple[int, str], ServicePortRule] = {}
    if endpoints is not None:
        by_port = {(p.port, p.protocol): p for p in endpoints.ports}
    ports = []
    for port in service.spec.ports:
        known = by_port.get((port.port, port.protocol))
        ports.append(
            ServicePortRule(
                name=port.name,
                protocol=port.protocol,
                port=port.port,
                node_port=port.node_port,
                # In (address, port) order: what a rules delta's merge gives back.
                endpoints=(
                    sorted(known.endpoints, key=lambda e: (e.address, e.port))
                    if known is not None
                    else []
                ),
            )
        )
    return ServiceRule(
        namespace=service.namespace,
        name=service.name,
        type=service.spec.proxy_type,
        cluster_ip=wire_cluster_ip(service.spec.cluster_ip),
        ports=ports,
        external_traffic_policy=(
            "Local"
            if service.spec.external_traffic_policy == "Local"
            and service.spec.proxy_type == "NodePort"
            else None
        ),
    )


class PodWireCache:
    """Each pod's wire form and wire JSON, kept while its ``resourceVersion`` stays the same.

    A node's set is recomputed on every change to any of its pods, and every Service change
    recomputes every node: without the cache each push re-serializes every pod of the node.
    The JSON is kept packed (``_packed.POD_JSON``), a fifth of its size; the sync that sends
    it unpacks it (``_wire.encode_sync``). Thread-safe; :meth:`forget` drops a deleted pod,
    :meth:`retain` every pod not listed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[str, tuple[str, Pod, bytes]] = {}

    def wire(self, pod: Pod) -> tuple[Pod, bytes]:
        """``pod``'s wire form and its wire JSON packed with ``_packed.POD_JSON``."""
        uid = pod.metadata.uid or ""
        version = pod.metadata.resource_version
        with self._lock:
            hit = self._by_uid.get(uid)
        if hit is not None and version is not None and hit[0] == version:
            return hit[1], hit[2]
        wired = _wire_pod(pod)
        share_field_sets(wired)
        packed = POD_JSON.pack(wired.model_dump_json(by_alias=True, exclude_none=True).encode())
        if uid and version is not None:
            with self._lock:
                self._by_uid[uid] = (version, wired, packed)
        return wired, packed

    def forget(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

    def retain(self, uids: set[str]) -> None:
        with self._lock:
            for uid in set(self._by_uid) - uids:
                del self._by_uid[uid]


def desired_set(
    pods: Iterable[Pod],
    *,
    config_map: ConfigLookup[ConfigMap],
    secret: ConfigLookup[Secret],
    services: Iterable[ServiceRule],
    ingresses: Iterable[Ingress] = (),
    cache: PodWireCache | None = None,
    services_json: str | None = None,
) -> DesiredSet:
    """A node's complete desired set from the pods bound to it (see ``bound_pods``), every
    Service rule and every Ingress of Capstan's class (with the Secrets their ``tls`` names).

    A referenced ConfigMap or Secret that does not exist is left out: the agent reports the
    pod as waiting for it (``CreateContainerConfigError``), as a kubelet does, and the next
    computation after it appears carries it. ``services_json``: the rules' wire JSON,
    comma-joined in the order given, spliced into the sync when that order is the wire's.
    """
    chosen = sorted(pods, key=lambda p: (p.namespace, p.name))
    wanted_cms: set[tuple[str, str]] = set()
    wanted_secrets: set[tuple[str, str]] = set()
    for pod in chosen:
        cm_names, secret_names = referenced_names(pod.spec)
        wanted_cms.update((pod.namespace, name) for name in cm_names)
        wanted_secrets.update((pod.namespace, name) for name in secret_names)
    routed = sorted(ingresses, key=lambda i: (i.namespace, i.name))
    for ingress in routed:
        wanted_secrets.update((ingress.namespace, name) for name in tls_secret_names(ingress))
    config_maps = [
        _wire_copy(found)
        for ns, name in sorted(wanted_cms)
        if (found := config_map(ns, name)) is not None
    ]
    secrets = [
        _wire_copy(found_secret)
        for ns, name in sorted(wanted_secrets)
        if (found_secret := secret(ns, name)) is not None
    ]
    given_rules = tuple(services)
    ordered_rules = tuple(sorted(given_rules, key=lambda r: (r.namespace, r.name)))
    # ``services_json`` is the JSON of the rules as given: usable only in the wire's order.
    rules_in_order = ordered_rules == given_rules
    if cache is not None:
        wired = [cache.wire(pod) for pod in chosen]
        wire_pods = tuple(pod for pod, _ in wired)
        pod_json: tuple[bytes, ...] | None = tuple(packed for _, packed in wired)
    else:
        wire_pods = tuple(_wire_pod(pod) for pod in chosen)
        pod_json = None
    return DesiredSet(
        pods=wire_pods,
        pod_json=pod_json,
        config_maps=tuple(config_maps),
        secrets=tuple(secrets),
        services=ordered_rules,
        services_json=services_json if rules_in_order else None,
        ingresses=tuple(
            ingress.model_copy(
                update={
                    "metadata": ingress.metadata.model_copy(update={"resource_version": None}),
                    "status": None,
                }
            )
            for ingress in routed
        ),
    )

"""From a Pod in the desired set to what the runtime must run: pure translation, no I/O.

Called by the kubelet when a sync arrives (:func:`desired_pod`: identity, spec hashes, env
resolved from the ConfigMaps/Secrets sent along, refusals) and by the executor right before a
start (:func:`sandbox_config`, :func:`container_config`). The spec hash is what the planner
compares with the ``io.capstan.spec-hash`` label to decide that a container is out of date.

Refusals are the agent's own line of defence, whatever the control plane admitted: a pod
that breaks this node's Pod Security level (:mod:`schemas.podsecurity`, ``baseline`` unless
the agent is started with another) never becomes a Docker config, and a container start is
refused (CreateContainerConfigError) when ``runAsNonRoot`` meets an effective user 0 or a
``subPath`` mount has no source the executor checked to lie inside its volume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from agent.kubelet._pullsecrets import registry_auths, registry_of
from agent.runtime.facts import (
    LABEL_ATTEMPT,
    LABEL_BACKOFF_STEP,
    LABEL_CONTAINER,
    LABEL_GRACE_SECONDS,
    LABEL_MANAGED_BY,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SPEC_HASH,
    SANDBOX_CONTAINER,
    ContainerConfig,
    ContainerID,
    Mount,
    NodeName,
    PodUID,
    PortRequest,
    RegistryAuth,
)
from schemas.core import ConfigMap, Secret
from schemas.pod import Container, EnvVar, Pod
from schemas.podsecurity import DEFAULT_LEVEL, Level, check_pod_spec, describe
from schemas.quantity import cpu_millicores, memory_bytes

_HASH_LEN: Final = 16
DEFAULT_NAMESPACE: Final = "default"


@dataclass(frozen=True)
class NodeSettings:
    """How this agent runs pods; fixed for the life of the daemon."""

    node_name: NodeName
    state_dir: Path
    bind_address: str = "127.0.0.1"
    pause_image: str = "capstan.local/pause:1"
    allow_host_network: bool = False
    pids_limit: int = 1024
    # The most a pod may ask of this node, whatever its namespace says.
    pod_security: Level = DEFAULT_LEVEL


@dataclass(frozen=True)
class ConfigIndex:
    """The ConfigMaps and Secrets sent with the desired set, by (namespace, name)."""

    config_maps: Mapping[tuple[str, str], ConfigMap] = field(default_factory=dict)
    secrets: Mapping[tuple[str, str], Secret] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, config_maps: list[ConfigMap], secrets: list[Secret]) -> ConfigIndex:
        return cls(
            config_maps={(c.namespace or DEFAULT_NAMESPACE, c.name): c for c in config_maps},
            secrets={(s.namespace or DEFAULT_NAMESPACE, s.name): s for s in secrets},
        )


class ConfigError(Exception):
    """The pod references configuration that was not sent (CreateContainerConfigError)."""


@dataclass(frozen=True)
class DesiredPod:
    """One pod of the desired set, with what the planner needs precomputed.

    ``env`` holds resolved values (possibly secret): it is excluded from ``repr``.
    """

    uid: PodUID
    namespace: str
    name: str
    pod: Pod
    sandbox_hash: str
    container_hashes: Mapping[str, str]
    grace_seconds: int
    restart_policy: Literal["Always", "OnFailure", "Never"]
    refused: str | None = None
    config_errors: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, repr=False)
    # Registry → credentials from the pod's imagePullSecrets.
    pull_auths: Mapping[str, RegistryAuth] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def pull_auth(self, image: str) -> RegistryAuth | None:
        """The credentials to pull ``image`` with, if an imagePullSecret names its registry."""
        return self.pull_auths.get(registry_of(image))


def pod_uid(pod: Pod) -> PodUID:
    """The pod's uid; a hand-written pod without one gets a stable uid from its name."""
    if pod.metadata.uid:
        return PodUID(pod.metadata.uid)
    key = f"{pod.namespace or DEFAULT_NAMESPACE}/{pod.name}"
    return PodUID("name-" + hashlib.sha256(key.encode()).hexdigest()[:_HASH_LEN])


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


# What the hashes leave out on purpose: everything a container gets from the node's Services
# (the ``<NAME>_SERVICE_HOST`` variables, the hosts-file names). A pod must not restart because
# another Service appeared or some Service's endpoints changed: with one Service per
# Deployment and a rolling update anywhere, every pod of the node would restart in turn.
# Kubernetes sets Service variables once, when a container starts, and so does Capstan (see
# ``container_config(service_env=...)``); the names are refreshed in place, by rewriting the
# sandbox's hosts file, and the in-pod forwarders follow every apply. The hashes cover only
# the pod's own spec (and, for the sandbox, this node's settings).
#: Fields the models gained after containers were already running under hashes without them:
#: left out of the hash while unset, so that upgrading the agent restarts no container.
_UNSET_NOT_HASHED: Final = frozenset({"hostPath", "mountPropagation", "ephemeral"})


def _without_unset_new_fields(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: _without_unset_new_fields(item)
            for key, item in value.items()
            if not (item is None and key in _UNSET_NOT_HASHED)
        }
    if isinstance(value, list):
        return [_without_unset_new_fields(item) for item in value]
    return value


def _container_hash(pod: Pod, container: Container) -> str:
    mounted = {m.name for m in container.volume_mounts}
    volumes = [v.model_dump(mode="json") for v in pod.spec.volumes if v.name in mounted]
    hashed: dict[str, object] = {
        "container": _without_unset_new_fields(container.model_dump(mode="json")),
        "volumes": _without_unset_new_fields(volumes),
    }
    # Pod fields that shape every container; only when set, so that existing containers keep
    # their hash (and keep running) when the agent is upgraded.
    if pod.spec.share_process_namespace:
        hashed["shareProcessNamespace"] = True
    if pod.spec.enable_service_links is False:
        hashed["enableServiceLinks"] = False
    if pod.spec.host_pid:
        hashed["hostPID"] = True
    if pod.spec.host_ipc:
        hashed["hostIPC"] = True
    return _digest(hashed)


def _sandbox_hash(pod: Pod, settings: NodeSettings) -> str:
    ports = [
        [c.name, p.container_port, p.protocol, p.host_port, p.host_ip]
        for c in pod.spec.containers
        for p in c.ports
    ]
    hashed: dict[str, object] = {
        "ports": ports,
        "bind": settings.bind_address,
        "hostNetwork": pod.spec.host_network,
        "hostname": pod.spec.hostname,
        "image": settings.pause_image,
    }
    # Only when set, as in _container_hash.
    if pod.spec.host_aliases:
        hashed["hostAliases"] = [a.model_dump(mode="json") for a in pod.spec.host_aliases]
    if pod.spec.dns_config is not None:
        hashed["dnsConfig"] = pod.spec.dns_config.model_dump(mode="json")
    return _digest(hashed)


def _refusal(pod: Pod, settings: NodeSettings) -> str | None:
    if pod.spec.host_network and not settings.allow_host_network:
        return (
            "hostNetwork is refused on this node: start the agent with --allow-host-network "
            "to permit it"
        )
    if any(c.restart_policy != "Always" for c in pod.spec.init_containers):
        return "initContainers are not supported by this agent version (native sidecars are)"
    for container in pod.spec.containers:
        context = container.security_context
        if context is not None and context.privileged:
            return f"container {container.name!r} asks to be privileged; Capstan never runs one"
    violations = check_pod_spec(pod.spec, level=settings.pod_security)
    if violations:
        return (
            "refused by this node's Pod Security level: "
            f"{describe(violations, level=settings.pod_security)}"
        )
    return None


def _config_value(
    source: EnvVar, pod: Pod, *, namespace: str, configs: ConfigIndex, settings: NodeSettings
) -> str | None:
    ref = source.value_from
    assert ref is not None
    if ref.config_map_key_ref is not None:
        cm_ref = ref.config_map_key_ref
        config_map = configs.config_maps.get((namespace, cm_ref.name))
        if config_map is None or cm_ref.key not in config_map.data:
            if cm_ref.optional:
                return None
            what = "configmap" if config_map is None else f"key {cm_ref.key!r} in configmap"
            raise ConfigError(f"{what} {cm_ref.name!r} not found")
        return config_map.data[cm_ref.key]
    if ref.secret_key_ref is not None:
        s_ref = ref.secret_key_ref
        secret = configs.secrets.get((namespace, s_ref.name))
        values = secret.decoded() if secret is not None else {}
        if s_ref.key not in values:
            if s_ref.optional:
                return None
            what = "secret" if secret is None else f"key {s_ref.key!r} in secret"
            raise ConfigError(f"{what} {s_ref.name!r} not found")
        return values[s_ref.key].decode("utf-8", "replace")
    assert ref.field_ref is not None
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": namespace,
        "metadata.uid": str(pod_uid(pod)),
        "spec.nodeName": str(settings.node_name),
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.hostIP": settings.bind_address,
        "status.podIP": settings.bind_address,
    }
    path = ref.field_ref.field_path
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return pod.metadata.labels.get(path[len("metadata.labels['") : -2], "")
    if path not in fields:
        raise ConfigError(f"fieldRef {path!r} is not supported")
    return fields[path]


def resolve_env(
    pod: Pod, container: Container, *, configs: ConfigIndex, settings: NodeSettings
) -> tuple[tuple[str, str], ...]:
    """The container's environment: ``envFrom`` first, then ``env`` (later names win)."""
    namespace = pod.namespace or DEFAULT_NAMESPACE
    env: dict[str, str] = {}
    for source in container.env_from:
        prefix = source.prefix or ""
        if source.config_map_ref is not None:
            config_map = configs.config_maps.get((namespace, source.config_map_ref.name))
            if config_map is None:
                if not source.config_map_ref.optional:
                    raise ConfigError(f"configmap {source.config_map_ref.name!r} not found")
                continue
            env.update({prefix + k: v for k, v in config_map.data.items()})
        elif source.secret_ref is not None:
            secret = configs.secrets.get((namespace, source.secret_ref.name))
            if secret is None:
                if not source.secret_ref.optional:
                    raise ConfigError(f"secret {source.secret_ref.name!r} not found")
                continue
            env.update(
                {prefix + k: v.decode("utf-8", "replace") for k, v in secret.decoded().items()}
            )
    for var in container.env:
        if var.value_from is None:
            env[var.name] = var.value or ""
            continue
        value = _config_value(var, pod, namespace=namespace, configs=configs, settings=settings)
        if value is not None:
            env[var.name] = value
    return tuple(env.items())


def _volume_config_error(pod: Pod, configs: ConfigIndex) -> str | None:
    namespace = pod.namespace or DEFAULT_NAMESPACE
    for volume in pod.spec.volumes:
        config_map, secret = volume.config_map, volume.secret
        if (
            config_map is not None
            and not config_map.optional
            and (namespace, config_map.name) not in configs.config_maps
        ):
            return f"configmap {config_map.name!r} not found (volume {volume.name!r})"
        if (
            secret is not None
            and not secret.optional
            and (namespace, secret.secret_name) not in configs.secrets
        ):
            return f"secret {secret.secret_name!r} not found (volume {volume.name!r})"
        for projection in volume.projected.sources if volume.projected else []:
            source = projection.config_map or projection.secret
            index = configs.config_maps if projection.config_map else configs.secrets
            if source is not None and not source.optional and (namespace, source.name) not in index:
                kind = "configmap" if projection.config_map else "secret"
                return f"{kind} {source.name!r} not found (volume {volume.name!r})"
    claims = {
        v.name: "persistentVolumeClaim" if v.persistent_volume_claim is not None else "ephemeral"
        for v in pod.spec.volumes
        if v.persistent_volume_claim is not None or v.ephemeral is not None
    }
    for container in pod.spec.containers:
        for mount in container.volume_mounts:
            if mount.sub_path and mount.name in claims:
                return (
                    f"subPath is not supported on {claims[mount.name]} volumes "
                    f"(volume {mount.name!r}): a claim is one Docker volume, mounted whole"
                )
    return None


def _with_sidecars(pod: Pod) -> Pod:
    """The pod with its native sidecars (initContainers with restartPolicy Always) run as
    containers next to the others, first; other init containers stay where they are."""
    sidecars = pod.spec.sidecars
    if not sidecars:
        return pod
    spec = pod.spec.model_copy(
        update={
            "containers": [
                *(c.model_copy(update={"restart_policy": None}) for c in sidecars),
                *pod.spec.containers,
            ],
            "init_containers": [c for c in pod.spec.init_containers if c not in sidecars],
        }
    )
    return pod.model_copy(update={"spec": spec})


def desired_pod(pod: Pod, *, configs: ConfigIndex, settings: NodeSettings) -> DesiredPod:
    """Precompute everything the planner and status need to know about one desired pod."""
    pod = _with_sidecars(pod)
    errors, env = _resolved_config(pod, configs, settings)
    return DesiredPod(
        uid=pod_uid(pod),
        namespace=pod.namespace or DEFAULT_NAMESPACE,
        name=pod.name,
        pod=pod,
        sandbox_hash=_sandbox_hash(pod, settings),
        container_hashes={c.name: _container_hash(pod, c) for c in pod.spec.containers},
        grace_seconds=pod.spec.termination_grace_period_seconds,
        restart_policy=pod.spec.restart_policy,
        refused=_refusal(pod, settings),
        config_errors=errors,
        env=env,
        pull_auths=registry_auths(
            pod.spec.image_pull_secrets,
            namespace=pod.namespace or DEFAULT_NAMESPACE,
            secrets=configs.secrets,
        ),
    )


def with_configs(
    desired: DesiredPod, *, configs: ConfigIndex, settings: NodeSettings
) -> DesiredPod:
    """``desired`` as :func:`desired_pod` computes it under ``configs``: only what reads the
    ConfigMaps and Secrets (environment, config errors, pull credentials) is computed again;
    the hashes and the refusal, which read the pod alone, are kept. The kubelet's path when a
    sync changes only configuration: a ConfigMap every pod of the node mounts."""
    errors, env = _resolved_config(desired.pod, configs, settings)
    pull_auths = registry_auths(
        desired.pod.spec.image_pull_secrets, namespace=desired.namespace, secrets=configs.secrets
    )
    if errors == desired.config_errors and env == desired.env and pull_auths == desired.pull_auths:
        # The same object: what keys on it (the kubelet's status of the pod) stays as it is.
        return desired
    return replace(desired, config_errors=errors, env=env, pull_auths=pull_auths)


def _resolved_config(
    pod: Pod, configs: ConfigIndex, settings: NodeSettings
) -> tuple[dict[str, str], dict[str, tuple[tuple[str, str], ...]]]:
    """Per container, what keeps it from starting (a missing ConfigMap or Secret), or its
    environment resolved."""
    errors: dict[str, str] = {}
    env: dict[str, tuple[tuple[str, str], ...]] = {}
    volume_error = _volume_config_error(pod, configs)
    for container in pod.spec.containers:
        if volume_error is not None:
            errors[container.name] = volume_error
            continue
        try:
            env[container.name] = resolve_env(pod, container, configs=configs, settings=settings)
        except ConfigError as exc:
            errors[container.name] = str(exc)
    return errors, env


def pod_dir(state_dir: Path, uid: PodUID) -> Path:
    return state_dir / "pods" / uid


def volume_dir(state_dir: Path, uid: PodUID, volume: str) -> Path:
    return pod_dir(state_dir, uid) / "volumes" / volume


def claim_volume_name(node: str, namespace: str, claim: str) -> str:
    """The Docker named volume holding a PersistentVolumeClaim's data on this node. The node
    is part of the name because agents of several nodes may share one Docker daemon."""
    return f"capstan-pvc.{node}.{namespace}.{claim}"


def ephemeral_volume_prefix(node: str, uid: PodUID) -> str:
    """The start of the names of a pod's ephemeral Docker volumes on this node: what the
    agent removes with the pod once its containers are gone."""
    return f"capstan-eph.{node}.{uid}."


def ephemeral_volume_name(node: str, uid: PodUID, volume: str) -> str:
    """The Docker named volume holding a pod's generic ephemeral volume: one per pod UID and
    volume, so a restarted container finds its data and a new pod of the same name starts
    empty."""
    return ephemeral_volume_prefix(node, uid) + volume


def _docker_name(*parts: str) -> str:
    # Docker names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; Kubernetes names already fit.
    return "_".join(parts)


def _labels(
    d: DesiredPod,
    settings: NodeSettings,
    *,
    container: str,
    spec_hash: str,
    attempt: int,
    backoff_step: int,
) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: settings.node_name,
        LABEL_POD_UID: d.uid,
        LABEL_POD_NAME: d.name,
        LABEL_POD_NAMESPACE: d.namespace,
        LABEL_CONTAINER: container,
        LABEL_SPEC_HASH: spec_hash,
        LABEL_ATTEMPT: str(attempt),
        LABEL_BACKOFF_STEP: str(backoff_step),
        LABEL_GRACE_SECONDS: str(d.grace_seconds),
    }


def container_name(d: DesiredPod, settings: NodeSettings, *, container: str, attempt: int) -> str:
    return _docker_name(
        "capstan", settings.node_name, d.namespace, d.name, d.uid[:8], container, str(attempt)
    )


def sandbox_config(
    d: DesiredPod,
    *,
    settings: NodeSettings,
    attempt: int,
    backoff_step: int,
    hosts: Mapping[str, str] | None = None,
) -> ContainerConfig:
    """The pod's sandbox: holds the network namespace and publishes every container port.

    ``hosts`` (Service name → virtual address) goes into the sandbox's hosts file, which the
    pod's app containers share (Docker refuses extra hosts on ``network_mode=container:``).
    """
    ports = tuple(
        PortRequest(
            container_port=p.container_port,
            protocol="tcp" if p.protocol == "TCP" else "udp" if p.protocol == "UDP" else "sctp",
            host_ip=p.host_ip or settings.bind_address,
            host_port=p.host_port,
        )
        for c in d.pod.spec.containers
        for p in c.ports
    )
    host_network = d.pod.spec.host_network
    aliases = {name: alias.ip for alias in d.pod.spec.host_aliases for name in alias.hostnames}
    # The pod's resolv.conf is the sandbox's; Docker refuses DNS options on the host network.
    dns = None if host_network else d.pod.spec.dns_config
    return ContainerConfig(
        name=container_name(d, settings, container=SANDBOX_CONTAINER, attempt=attempt),
        image=settings.pause_image,
        labels=_labels(
            d,
            settings,
            container=SANDBOX_CONTAINER,
            spec_hash=d.sandbox_hash,
            attempt=attempt,
            backoff_step=backoff_step,
        ),
        network_mode="host" if host_network else None,
        ports=() if host_network else ports,
        pids_limit=16,
        init=True,
        hostname=None if host_network else (d.pod.spec.hostname or d.name)[:63],
        extra_hosts={**aliases, **(hosts or {})},
        dns=tuple(dns.nameservers) if dns else (),
        dns_search=tuple(dns.searches) if dns else (),
        dns_options=tuple(_dns_option(o.name, o.value) for o in dns.options) if dns else (),
    )


def _dns_option(name: str, value: str | None) -> str:
    return name if value is None else f"{name}:{value}"


#: ``mountPropagation`` as Docker's bind propagation (Kubernetes' CRI maps it the same way).
_PROPAGATION: Final[Mapping[str, str]] = {
    "None": "rprivate",
    "HostToContainer": "rslave",
    "Bidirectional": "rshared",
}


def _mounts(
    d: DesiredPod, container: Container, settings: NodeSettings, sub_paths: Mapping[int, Path]
) -> tuple[Mount, ...]:
    volumes = {v.name: v for v in d.pod.spec.volumes}
    mounts: list[Mount] = []
    for index, mount in enumerate(container.volume_mounts):
        volume = volumes[mount.name]
        propagation = _PROPAGATION.get(mount.mount_propagation or "")
        claim = volume.persistent_volume_claim
        if claim is not None or volume.ephemeral is not None:
            # A name, not a path: Docker mounts (and first creates) the named volume.
            if claim is not None:
                named = claim_volume_name(settings.node_name, d.namespace, claim.claim_name)
                read_only = bool(mount.read_only) or claim.read_only
            else:
                named = ephemeral_volume_name(settings.node_name, d.uid, volume.name)
                read_only = bool(mount.read_only)
            mounts.append(
                Mount(
                    source=named,
                    target=mount.mount_path,
                    read_only=read_only,
                    propagation=propagation,
                )
            )
            continue
        if volume.host_path is not None:
            # The node's own path; the executor checked or created it as its type says.
            source = Path(volume.host_path.path)
        else:
            source = volume_dir(settings.state_dir, d.uid, mount.name)
        if mount.sub_path:
            # WARNING: never join the subPath here. Only the executor's resolved source
            # (symlinks followed, checked to stay inside the volume) may become a bind.
            if index not in sub_paths:
                raise ConfigError(
                    f'failed to prepare subPath for volumeMount "{mount.name}" of container '
                    f'"{container.name}": its source was not checked'
                )
            source = sub_paths[index]
        # ConfigMap and Secret files are always read-only, whatever the mount says.
        writable = volume.empty_dir is not None or volume.host_path is not None
        read_only = bool(mount.read_only) or not writable
        mounts.append(
            Mount(
                source=str(source),
                target=mount.mount_path,
                read_only=read_only,
                propagation=propagation,
            )
        )
    return tuple(mounts)


def _pid_mode(d: DesiredPod, sandbox_id: ContainerID) -> str | None:
    # The schema refuses hostPID together with shareProcessNamespace, as Kubernetes does.
    if d.pod.spec.host_pid:
        return "host"
    if d.pod.spec.share_process_namespace:
        return f"container:{sandbox_id}"
    return None


def _effective(container_value: int | None, pod_value: int | None) -> int | None:
    # A container's own value wins even when it is 0 (root is a value, not "unset").
    return container_value if container_value is not None else pod_value


def _non_root_problem(
    d: DesiredPod, container: Container, *, run_as_user: int | None, image_user: str
) -> str | None:
    """Why ``runAsNonRoot`` forbids this start (the kubelet's verifyRunAsNonRoot), or None."""
    context = container.security_context
    pod_context = d.pod.spec.security_context
    non_root = context.run_as_non_root if context else None
    if non_root is None and pod_context is not None:
        non_root = pod_context.run_as_non_root
    if not non_root:
        return None
    where = f'(pod: "{d.name}_{d.namespace}({d.uid})", container: {container.name})'
    if run_as_user is not None:
        if run_as_user == 0:
            return f"container's runAsUser breaks non-root policy {where}"
        return None
    user = image_user.partition(":")[0]
    if not user:
        return f"container has runAsNonRoot and image will run as root {where}"
    if not user.isdigit():
        return (
            f"container has runAsNonRoot and image has non-numeric user ({user}), cannot "
            f"verify user is non-root {where}"
        )
    if int(user) == 0:
        return f"container has runAsNonRoot and image will run as root {where}"
    return None


def container_config(
    d: DesiredPod,
    container: Container,
    *,
    settings: NodeSettings,
    sandbox_id: ContainerID,
    attempt: int,
    backoff_step: int,
    service_env: Mapping[str, str] | None = None,
    image_user: str = "",
    sub_paths: Mapping[int, Path] | None = None,
) -> ContainerConfig:
    """An app container joining its pod's sandbox; raises :class:`ConfigError` if unresolvable.

    ``service_env`` (the Service variables of the pod's namespace, as of now) comes first:
    the container's own variables win, as in Kubernetes. ``image_user`` is the image's
    configured ``User`` (empty: root), which ``runAsNonRoot`` is checked against when no
    ``runAsUser`` is given; ``sub_paths`` maps the index of each ``subPath`` mount to its
    checked source (:func:`agent.kubelet.volumes.sub_path_sources`).
    """
    if container.name in d.config_errors:
        raise ConfigError(d.config_errors[container.name])
    limits = container.resources.limits
    context = container.security_context
    pod_context = d.pod.spec.security_context
    run_as_user = _effective(
        context.run_as_user if context else None, pod_context.run_as_user if pod_context else None
    )
    run_as_group = _effective(
        context.run_as_group if context else None,
        pod_context.run_as_group if pod_context else None,
    )
    problem = _non_root_problem(d, container, run_as_user=run_as_user, image_user=image_user)
    if problem is not None:
        raise ConfigError(problem)
    user = None
    if run_as_user is not None:
        user = str(run_as_user) + (f":{run_as_group}" if run_as_group is not None else "")
    escalation_allowed = bool(context and context.allow_privilege_escalation)
    links = {} if d.pod.spec.enable_service_links is False else dict(service_env or {})
    capabilities = context.capabilities if context else None
    seccomp = (context.seccomp_profile if context else None) or (
        pod_context.seccomp_profile if pod_context else None
    )
    security_opt = () if escalation_allowed else ("no-new-privileges",)
    if seccomp is not None and seccomp.type == "Unconfined":
        security_opt = (*security_opt, "seccomp=unconfined")
    fs_group = pod_context.fs_group if pod_context else None
    return ContainerConfig(
        name=container_name(d, settings, container=container.name, attempt=attempt),
        image=container.image,
        labels=_labels(
            d,
            settings,
            container=container.name,
            spec_hash=d.container_hashes[container.name],
            attempt=attempt,
            backoff_step=backoff_step,
        ),
        # Kubernetes' command replaces the image's ENTRYPOINT and args its CMD.
        entrypoint=tuple(container.command) or None,
        command=tuple(container.args) or None,
        env=tuple({**links, **dict(d.env.get(container.name, ()))}.items()),
        working_dir=container.working_dir,
        network_mode=f"container:{sandbox_id}",
        pid_mode=_pid_mode(d, sandbox_id),
        ipc_mode="host" if d.pod.spec.host_ipc else None,
        mounts=_mounts(d, container, settings, sub_paths or {}),
        mem_limit_bytes=memory_bytes(limits["memory"]) if "memory" in limits else None,
        nano_cpus=cpu_millicores(limits["cpu"]) * 1_000_000 if "cpu" in limits else None,
        pids_limit=settings.pids_limit,
        # An init as PID 1 gives the app default signal handling (SIGTERM stops a process that
        # installed no handler, as outside a container) and reaps its zombies.
        init=True,
        security_opt=security_opt,
        user=user,
        group_add=() if fs_group is None else (str(fs_group),),
        read_only_rootfs=bool(context and context.read_only_root_filesystem),
        cap_add=tuple(capabilities.add) if capabilities else (),
        cap_drop=tuple(capabilities.drop) if capabilities else (),
    )

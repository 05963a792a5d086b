"""v1 Node, Capstan's own: a host of the fleet, declared in Git like everything else.

``spec`` says how the reconciler reaches the host (``address``, ``ssh``) and which SSH host key
it must present (``hostKey``, pinned: a mismatch refuses the connection); ``taints`` and
``unschedulable`` steer the scheduler; ``capacity`` overrides what the agent measures. The
agent reports :class:`NodeStatus`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from schemas._validation import (
    LabelValue,
    PortNumber,
    Problems,
    QualifiedName,
    dns1123_subdomain_problem,
    rule_error,
)
from schemas.meta import Condition, KubeModel, KubeObject
from schemas.quantity import Quantity

__all__ = [
    "LOCAL_ADDRESS",
    "Node",
    "NodeAddress",
    "NodeCapacity",
    "NodeSSH",
    "NodeSpec",
    "NodeStatus",
    "NodeSystemInfo",
    "Taint",
]

LOCAL_ADDRESS = "local"
"""``spec.address`` of the machine the reconciler runs on: reached over a local pipe, no SSH."""

_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# OpenSSH prints SHA-256 fingerprints as unpadded base64 of the 32-byte digest: 43 characters.
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}\Z")


def _address_problem(value: str) -> str | None:
    if value == LOCAL_ADDRESS:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        problem = dns1123_subdomain_problem(value.lower())
        if problem is not None:
            return f"{value!r} is not 'local', an IP address or a host name"
    return None


def _host_key_problem(value: str) -> str | None:
    if value.startswith("SHA256:"):
        if _FINGERPRINT.match(value):
            return None
        return "a SHA256 fingerprint is 'SHA256:' and 43 base64 characters, as ssh-keygen -l prints"
    parts = value.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        return (
            "must be an OpenSSH public key line ('ssh-ed25519 AAAA...') or a 'SHA256:' fingerprint"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64"
    # The blob starts with its own key type as a length-prefixed string; a mismatch means the
    # line was pasted together from two keys.
    if len(blob) < 4:
        return "the key is truncated"
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != parts[0]:
        return f"the key data is not a {parts[0]} key"
    return None


class NodeSSH(KubeModel):
    """How to log in: a user, a port, and an identity file or the SSH agent (not both).

    With neither, the reconciler uses the default keys of the user it runs as.
    """

    user: str = Field(min_length=1)
    port: PortNumber = 22
    identity_file: str | None = None
    use_agent: bool = False

    @model_validator(mode="after")
    def _one_identity(self) -> NodeSSH:
        if self.identity_file is not None and self.use_agent:
            problems = Problems("NodeSSH")
            problems.add(
                ("useAgent",), "ssh_identity", "may not be true when identityFile is given", True
            )
            problems.raise_if_any()
        return self


class Taint(KubeModel):
    key: QualifiedName
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeCapacity(KubeModel):
    """Overrides of what the agent measures; unset fields keep the measured value."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    pods: Quantity | None = None

    @model_validator(mode="after")
    def _non_negative(self) -> NodeCapacity:
        problems = Problems("NodeCapacity")
        for field in ("cpu", "memory", "pods"):
            quantity: Quantity | None = getattr(self, field)
            if quantity is not None and quantity.value < 0:
                problems.add((field,), "resource_negative", "must not be negative", quantity.text)
        if self.pods is not None and self.pods.value != int(self.pods.value):
            problems.add(("pods",), "pods_integer", "must be a whole number", self.pods.text)
        problems.raise_if_any()
        return self


class NodeSpec(KubeModel):
    address: str
    ssh: NodeSSH | None = None
    host_key: str | None = None
    unschedulable: bool = False
    taints: list[Taint] = Field(default_factory=list)
    capacity: NodeCapacity | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        problem = _address_problem(value)
        if problem is not None:
            raise rule_error("node_address", problem)
        return value

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None:
            problem = _host_key_problem(value.strip())
            if problem is not None:
                raise rule_error("host_key", problem)
        return value

    @model_validator(mode="after")
    def _unique_taints(self) -> NodeSpec:
        problems = Problems("NodeSpec")
        seen: set[tuple[str, str]] = set()
        for index, taint in enumerate(self.taints):
            if (taint.key, taint.effect) in seen:
                problems.add(
                    ("taints", index),
                    "duplicate_taint",
                    f"taint {taint.key}:{taint.effect} is given twice",
                )
            seen.add((taint.key, taint.effect))
        problems.raise_if_any()
        return self

    @property
    def is_local(self) -> bool:
        return self.address == LOCAL_ADDRESS


class NodeSystemInfo(KubeModel):
    """What the agent reports about its host: Capstan's fields (``dockerVersion``,
    ``agentVersion``, ``kernel``, ``os``) and Kubernetes' ``NodeSystemInfo``, whose fields
    Kubernetes always sends as strings ("" when unknown) and its clients require."""

    docker_version: str | None = None
    agent_version: str | None = None
    kernel: str | None = None
    os: str | None = None
    architecture: str = ""
    machine_id: str = Field(default="", alias="machineID")
    system_uuid: str = Field(default="", alias="systemUUID")
    boot_id: str = Field(default="", alias="bootID")
    kernel_version: str = ""
    os_image: str = ""
    container_runtime_version: str = ""
    kubelet_version: str = ""
    kube_proxy_version: str = ""
    operating_system: str = ""


class NodeAddress(KubeModel):
    type: Literal["InternalIP", "ExternalIP", "Hostname"]
    address: str


class NodeStatus(KubeModel):
    capacity: dict[QualifiedName, Quantity] = Field(default_factory=dict)
    allocatable: dict[QualifiedName, Quantity] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)
    node_info: NodeSystemInfo | None = None
    addresses: list[NodeAddress] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def without_heartbeats(self) -> NodeStatus:
        """This status with no condition's ``lastHeartbeatTime`` and the conditions in type
        order: equal for two reports that differ only in when they were sent."""
        conditions = sorted(
            (c.model_copy(update={"last_heartbeat_time": None}) for c in self.conditions),
            key=lambda c: c.type,
        )
        return self.model_copy(update={"conditions": conditions})


class Node(KubeObject):
    NAMESPACED: ClassVar[bool] = False

    api_version: Literal["v1"] = "v1"
    kind: Literal["Node"] = "Node"
    spec: NodeSpec
    status: NodeStatus | None = None

"""How to reach one node: the connection half of a Node manifest, as a frozen value.

The node controller builds a ``NodeEndpoint`` from each Node object (``spec.address``,
``spec.ssh``, ``spec.hostKey``) and hands it to ``NodePool.ensure``; when the endpoint of a
node changes (a new address, a re-pinned host key), the pool replaces its connection.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

from schemas.node import LOCAL_ADDRESS, Node

NodeName = NewType("NodeName", str)

#: What the reconciler asks sshd to run. A key restricted with ``command="..."`` in
#: authorized_keys overrides it, which is the recommended setup (docs/ssh.md).
DEFAULT_AGENT_COMMAND = "capstan-agent connect"


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    """Everything needed to open the agent channel of one node.

    ``host_key`` is either an OpenSSH public key line (``ssh-ed25519 AAAA...``) or a
    ``SHA256:`` fingerprint; ``known_hosts`` points to an OpenSSH known_hosts file. At least
    one of the two must be given for SSH nodes: an unpinned host is refused, never trusted
    on first use.
    """

    name: NodeName
    address: str
    port: int = 22
    user: str = "root"
    #: Private key file; with neither this nor ``use_agent``, the default ~/.ssh keys.
    identity_file: Path | None = None
    use_agent: bool = False
    host_key: str | None = None
    known_hosts: Path | None = None
    agent_command: str = DEFAULT_AGENT_COMMAND

    @property
    def is_local(self) -> bool:
        return self.address == LOCAL_ADDRESS

    @property
    def uses_default_keys(self) -> bool:
        """Neither an identity file nor the agent: the reconciler user's own ~/.ssh keys."""
        return self.identity_file is None and not self.use_agent

    @classmethod
    def from_node(
        cls,
        node: Node,
        *,
        known_hosts: Path | None = None,
        agent_command: str = DEFAULT_AGENT_COMMAND,
    ) -> NodeEndpoint:
        """The endpoint a Node manifest describes; ``known_hosts``: a fleet-wide file, if any."""
        if not node.metadata.name:
            raise ValueError("a Node needs metadata.name")
        spec = node.spec
        ssh = spec.ssh
        return cls(
            name=NodeName(node.metadata.name),
            address=spec.address,
            port=ssh.port if ssh is not None else 22,
            user=ssh.user if ssh is not None else getpass.getuser(),
            identity_file=(
                Path(ssh.identity_file).expanduser()
                if ssh is not None and ssh.identity_file
                else None
            ),
            use_agent=ssh.use_agent if ssh is not None else False,
            host_key=spec.host_key.strip() if spec.host_key else None,
            known_hosts=known_hosts,
            agent_command=agent_command,
        )

    def describe(self) -> str:
        """``user@address:port`` for messages; never includes key material."""
        if self.is_local:
            return f"{self.name} (local)"
        return f"{self.name} ({self.user}@{self.address}:{self.port})"

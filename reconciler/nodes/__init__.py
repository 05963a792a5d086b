"""Connections from the reconciler to node agents: SSH (paramiko) or a local pipe.

Offers:

- ``NodeEndpoint`` (``NodeEndpoint.from_node(node)``): how to reach a node;
- ``NodePool``: one persistent connection per node, ``ensure``/``remove`` nodes,
  ``push``/``push_all`` each node's complete ``DesiredSet`` (non-blocking, latest-wins,
  returns a ``concurrent.futures.Future`` of the agent's ``Ack``), callbacks for every agent
  message and every ``NodeState`` change;
- ``HostKeyRejected`` / ``NodeState.expected_fingerprint`` / ``offered_fingerprint`` for the
  Node condition when a host key does not match its pin;
- ``keyscan`` for ``capstan node keyscan`` (the command itself is in ``reconciler.cli.node``);
- ``NodeDispatcher`` (a ``ControllerManager`` component): keeps the pool in line with the Node
  objects, pushes each node's ``desired_set`` computed from the informer caches, and writes the
  agents' status, heartbeat leases and the ``AgentConnected`` condition back through the API;
- ``stream_logs`` (``capstan logs``: a container's log from a node's agent over its own link);
- ``LocalAgentDaemon`` (``capstan up``: start and supervise this machine's agent if none runs).

This is the only package that imports paramiko.
"""

from reconciler.nodes._links import AuthenticationFailed, LinkSettings
from reconciler.nodes._slot import Generation, SyncRejected
from reconciler.nodes._wire import DesiredSet
from reconciler.nodes.backoff import Backoff, BackoffPolicy
from reconciler.nodes.connection import (
    AGENT_CONNECTED,
    ConnectionSettings,
    NodeConnection,
    NodeState,
    Phase,
)
from reconciler.nodes.desired import bound_pods, desired_set, referenced_names, service_rule
from reconciler.nodes.dispatch import DispatchSettings, NodeDispatcher
from reconciler.nodes.endpoint import DEFAULT_AGENT_COMMAND, NodeEndpoint, NodeName
from reconciler.nodes.hostkeys import HostKeyPin, HostKeyRejected, fingerprint
from reconciler.nodes.keyscan import KeyscanError, ScannedKey, keyscan
from reconciler.nodes.local_daemon import LocalAgentDaemon, LocalAgentError, LocalAgentOptions
from reconciler.nodes.logs import LogsError, stream_logs
from reconciler.nodes.pool import NodePool, UnknownNode

__all__ = [
    "AGENT_CONNECTED",
    "DEFAULT_AGENT_COMMAND",
    "AuthenticationFailed",
    "Backoff",
    "BackoffPolicy",
    "ConnectionSettings",
    "DesiredSet",
    "DispatchSettings",
    "Generation",
    "HostKeyPin",
    "HostKeyRejected",
    "KeyscanError",
    "LinkSettings",
    "LocalAgentDaemon",
    "LocalAgentError",
    "LocalAgentOptions",
    "LogsError",
    "NodeConnection",
    "NodeDispatcher",
    "NodeEndpoint",
    "NodeName",
    "NodePool",
    "NodeState",
    "Phase",
    "ScannedKey",
    "SyncRejected",
    "UnknownNode",
    "bound_pods",
    "desired_set",
    "fingerprint",
    "keyscan",
    "referenced_names",
    "service_rule",
    "stream_logs",
]

"""The node proxy (Capstan's kube-proxy): Service ports to ready endpoints on every node.

Offers :class:`Proxy` (``apply`` the node's complete rule set, ``attach_pod``/``detach_pod``
the in-pod forwarders, ``cleanup``, ``mode``), :func:`detect_mode`, the input model
(:class:`ServiceRuleSet` with :meth:`ServiceRuleSet.from_protocol` as the adapter from
``Sync.services``), and the pure helpers the kubelet needs when it creates containers:
:func:`extra_hosts` (sandbox hosts file), :func:`service_env` (Service env vars) and
:func:`rewrite_hosts` (refresh a running pod's hosts file when Services change).
"""

from agent.proxy._commands import CommandError, CommandResult, CommandRunner, run_command
from agent.proxy.addresses import DEFAULT_VIRTUAL_RANGE, allocate_virtual_addresses
from agent.proxy.model import Endpoint, PortRule, ServiceKey, ServiceRuleSet
from agent.proxy.names import extra_hosts, rewrite_hosts, service_env
from agent.proxy.proxy import ApplyReport, PodUID, Proxy, ProxyMode, detect_mode

__all__ = [
    "DEFAULT_VIRTUAL_RANGE",
    "ApplyReport",
    "CommandError",
    "CommandResult",
    "CommandRunner",
    "Endpoint",
    "PodUID",
    "PortRule",
    "Proxy",
    "ProxyMode",
    "ServiceKey",
    "ServiceRuleSet",
    "allocate_virtual_addresses",
    "detect_mode",
    "extra_hosts",
    "rewrite_hosts",
    "run_command",
    "service_env",
]

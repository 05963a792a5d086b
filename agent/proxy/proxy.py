"""The node proxy: programs Service rules (NodePorts, virtual addresses) and in-pod forwarders.

Called by the agent's sync loop with the node's complete :class:`ServiceRuleSet` after every
``sync`` (and whenever the Endpoints it carries change), by the kubelet when a pod's sandbox
starts or goes away (:meth:`Proxy.attach_pod` / :meth:`Proxy.detach_pod`), and by
``capstan-agent serve --cleanup`` (:meth:`Proxy.cleanup`).

Two data planes, chosen per path:

* **Node namespace** (NodePorts on the node's addresses, Service virtual addresses for host
  processes): kernel rules where the agent has the rights — ``nftables`` (preferred) or
  ``iptables`` — else ``userspace`` listeners. :func:`detect_mode` picks; the agent reports
  :attr:`Proxy.mode` in its node status.
* **Pod namespaces** (in-cluster names): always the userspace in-pod forwarder. WHY: a
  Service's endpoints are host ports on the node's loopback (127.0.0.x), and a pod's
  namespace has its own, separate loopback. A kernel rule inside the pod can only DNAT to
  addresses reachable from there, which means via the Docker bridge — forbidden here, and
  fragile anyway (bridge addresses change with every container). A socket, though, keeps the
  namespace it was created in: the forwarder accepts in the pod's namespace and dials from
  the node's, so the traffic crosses namespaces inside the agent process, touching no bridge
  and no address outside loopback. See ``docs/services.md``.

Every method is synchronous and thread-safe (one lock); call it from asyncio with
``asyncio.to_thread``. Applies are idempotent: re-applying the same set reports
``changed=False`` and says why.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NewType

from agent.proxy._commands import CommandError, CommandRunner, run_command
from agent.proxy._iptables import IptablesBackend
from agent.proxy._netns import open_netns
from agent.proxy._nftables import NftablesBackend
from agent.proxy._userspace import HOST_SCOPE, ListenerKey, UserspaceEngine
from agent.proxy.model import Endpoint, ServiceRuleSet
from schemas.meta import Condition

ProxyMode = Literal["nftables", "iptables", "userspace"]
PodUID = NewType("PodUID", str)

_log = logging.getLogger(__name__)


def detect_mode(*, runner: CommandRunner = run_command) -> ProxyMode:
    """The best mode this process may use: nftables, then iptables, then userspace.

    Tries a harmless read of each tool: without CAP_NET_ADMIN both refuse ("Operation not
    permitted"), which is exactly the case for the userspace fallback.
    """
    if shutil.which("nft") and runner(["nft", "list", "tables"]).returncode == 0:
        return "nftables"
    if shutil.which("iptables-restore") and runner(["iptables-save", "-t", "nat"]).returncode == 0:
        return "iptables"
    return "userspace"


@dataclass(frozen=True)
class ApplyReport:
    """What an apply did: ``changed`` is False when everything already matched."""

    mode: ProxyMode
    changed: bool
    rules: int
    message: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _AttachedPod:
    netns_fd: int
    netns_path: str


class Proxy:
    """One per agent. Use as a context manager, or call :meth:`close` at shutdown.

    ``node_addresses`` are the addresses NodePorts answer on (the node's bind address; in
    tests 127.0.0.x). ``table`` / ``chain_prefix`` name what Capstan owns in nftables /
    iptables; only those are ever changed or removed.
    """

    def __init__(
        self,
        *,
        node_addresses: Sequence[str],
        mode: ProxyMode | None = None,
        table: str = "capstan",
        chain_prefix: str = "CAPSTAN",
        runner: CommandRunner = run_command,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.node_addresses = tuple(str(ipaddress.IPv4Address(a)) for a in node_addresses)
        self.mode: ProxyMode = mode or detect_mode(runner=runner)
        self._nft = NftablesBackend(table=table, runner=runner)
        self._ipt = IptablesBackend(prefix=chain_prefix, runner=runner)
        self._engine = UserspaceEngine(connect_timeout_s=connect_timeout_s)
        self._lock = threading.Lock()
        self._rules = ServiceRuleSet()
        self._pods: dict[PodUID, _AttachedPod] = {}
        self._swept = False
        self._last: ApplyReport | None = None
        self._last_error: str | None = None

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rules(self) -> ServiceRuleSet:
        """The last applied rule set (what new pods' hosts files and env should reflect)."""
        return self._rules

    def _host_listeners(self, rules: ServiceRuleSet) -> dict[ListenerKey, tuple[Endpoint, ...]]:
        wanted: dict[ListenerKey, tuple[Endpoint, ...]] = {}
        if self.mode != "userspace":
            return wanted
        for rule in rules:
            if rule.protocol != "TCP":
                continue
            wanted[(HOST_SCOPE, rule.virtual_address, rule.port)] = rule.endpoints
            if rule.node_port is not None:
                for address in self.node_addresses:
                    wanted[(HOST_SCOPE, address, rule.node_port)] = rule.endpoints
        return wanted

    @staticmethod
    def _pod_listeners(
        rules: ServiceRuleSet, pod: PodUID
    ) -> dict[ListenerKey, tuple[Endpoint, ...]]:
        return {
            (pod, rule.virtual_address, rule.port): rule.endpoints
            for rule in rules
            if rule.protocol == "TCP"
        }

    def apply(self, rules: ServiceRuleSet) -> ApplyReport:
        """Make the node serve exactly ``rules`` (the complete desired set).

        Kernel rules switch atomically (how: :mod:`agent.proxy._nftables`,
        :mod:`agent.proxy._iptables`); userspace listeners are updated in place. Raises
        :class:`CommandError` when the kernel refuses the rules; traffic then keeps
        following the previous ones.
        """
        with self._lock:
            problems: list[str] = []
            if not self._swept:
                # An earlier run in another mode may have left its rules: two sets of DNAT
                # rules for one port would split traffic between stale and fresh endpoints.
                problems += self._sweep_other_modes()
                self._swept = True
            kernel_changed = False
            try:
                if self.mode == "nftables":
                    kernel_changed = self._nft.program(rules, node_addresses=self.node_addresses)
                elif self.mode == "iptables":
                    kernel_changed = self._ipt.program(rules, node_addresses=self.node_addresses)
            except CommandError as exc:
                self._last_error = str(exc)
                raise
            self._last_error = None
            skipped = sorted({f"{r.label}/{r.protocol}" for r in rules if r.protocol != "TCP"})
            if skipped:
                where = "in pods" if self.mode != "userspace" else "on this node"
                problems.append(
                    f"the userspace forwarder carries TCP only; not forwarded {where}: "
                    + ", ".join(skipped)
                )
            desired = self._host_listeners(rules)
            scopes: dict[str, int | None] = {HOST_SCOPE: None}
            for uid, pod in self._pods.items():
                desired.update(self._pod_listeners(rules, uid))
                scopes[uid] = pod.netns_fd
            outcome = self._engine.sync(desired, scopes=scopes)
            problems += outcome.problems
            self._rules = rules
            changed = kernel_changed or outcome.changed
            message = (
                f"programmed {len(rules)} Service ports ({self.mode})"
                if changed
                else f"{len(rules)} Service ports already programmed ({self.mode}); no change"
            )
            # Applies come with every sync: say a standing problem once, not every few seconds.
            if self._last is None or tuple(problems) != self._last.problems:
                for problem in problems:
                    _log.warning("proxy: %s", problem)
            self._last = ApplyReport(
                mode=self.mode,
                changed=changed,
                rules=len(rules),
                message=message,
                problems=tuple(problems),
            )
            return self._last

    def node_condition(self) -> Condition:
        """``ProxyReady`` for the node's status: the mode is the reason (``Nftables``,
        ``Iptables``, ``Userspace``); False while the last apply failed."""
        with self._lock:
            reason = self.mode.capitalize()
            if self._last_error is not None:
                return Condition(
                    type="ProxyReady", status="False", reason=reason, message=self._last_error
                )
            if self._last is None:
                return Condition(
                    type="ProxyReady",
                    status="Unknown",
                    reason=reason,
                    message=f"proxy mode {self.mode}; no Service rules applied yet",
                )
            message = f"proxy mode {self.mode}; {self._last.rules} Service ports"
            if self._last.problems:
                message += "; " + "; ".join(self._last.problems)
            return Condition(type="ProxyReady", status="True", reason=reason, message=message)

    def _sweep_other_modes(self) -> list[str]:
        problems = []
        others: dict[str, NftablesBackend | IptablesBackend] = {
            "nftables": self._nft,
            "iptables": self._ipt,
        }
        others.pop(self.mode, None)
        for name, backend in others.items():
            try:
                if backend.cleanup():
                    _log.info("proxy: removed leftover %s rules of an earlier run", name)
            except CommandError as exc:
                if self.mode != "userspace":
                    problems.append(f"could not check for leftover {name} rules: {exc}")
        return problems

    def attach_pod(self, pod_uid: PodUID, *, netns_path: str) -> ApplyReport:
        """Start the in-pod forwarder of a pod: listeners for every Service, inside its netns.

        ``netns_path`` is the sandbox's ``/proc/<pid>/ns/net``. Call it after the sandbox
        starts and before the app containers do, so names work from their first instruction.
        Attaching an attached pod again only re-checks its listeners. Raises ``OSError`` when
        the namespace cannot be opened (the sandbox is gone).
        """
        with self._lock:
            if pod_uid not in self._pods:
                fd = open_netns(netns_path)
                self._pods[pod_uid] = _AttachedPod(netns_fd=fd, netns_path=netns_path)
            pod = self._pods[pod_uid]
            outcome = self._engine.sync(
                self._pod_listeners(self._rules, pod_uid), scopes={pod_uid: pod.netns_fd}
            )
            return ApplyReport(
                mode=self.mode,
                changed=outcome.changed,
                rules=len(self._rules),
                message=f"pod {pod_uid}: forwarding {len(self._rules)} Service ports",
                problems=outcome.problems,
            )

    def detach_pod(self, pod_uid: PodUID) -> bool:
        """Stop a pod's forwarder (its sandbox is gone or going); False if it was not attached."""
        with self._lock:
            pod = self._pods.pop(pod_uid, None)
            if pod is None:
                return False
            self._engine.sync({}, scopes={pod_uid: None})
            os.close(pod.netns_fd)
            return True

    def attached_pods(self) -> tuple[PodUID, ...]:
        with self._lock:
            return tuple(self._pods)

    def cleanup(self) -> tuple[str, ...]:
        """Remove everything Capstan programmed: its nft table, its iptables chains (whatever
        the current mode, since an earlier run may have used another) and every listener.

        Returns what was removed; rules Capstan does not own are never touched.
        """
        with self._lock:
            removed: list[str] = []
            for name, backend in (("nftables", self._nft), ("iptables", self._ipt)):
                try:
                    if backend.cleanup():
                        removed.append(f"{name} rules")
                except CommandError as exc:
                    # No tool or no right: then there is nothing of ours there either.
                    _log.info("proxy cleanup: %s skipped: %s", name, exc)
            scopes: dict[str, int | None] = {HOST_SCOPE: None}
            scopes.update(dict.fromkeys(self._pods))
            if self._engine.sync({}, scopes=scopes).changed:
                removed.append("userspace listeners")
            for pod in self._pods.values():
                os.close(pod.netns_fd)
            self._pods.clear()
            self._rules = ServiceRuleSet()
            return tuple(removed)

    def close(self) -> None:
        """Stop the userspace data plane. Kernel rules stay: NodePorts keep working while the
        agent restarts (``cleanup`` removes them)."""
        with self._lock:
            self._engine.close()
            for pod in self._pods.values():
                with contextlib.suppress(OSError):
                    os.close(pod.netns_fd)
            self._pods.clear()

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
  and no address outside loopback. It listens on a reserved port, and a small nft table in
  the pod redirects the Service port there, so the pod's own app can still bind
  ``0.0.0.0`` on the Service's port (:mod:`agent.proxy._podnat` says why). See
  ``docs/services.md``.

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

from agent.netns import open_netns
from agent.proxy._commands import CommandError, CommandRunner, run_command
from agent.proxy._iptables import IptablesBackend
from agent.proxy._nftables import NftablesBackend
from agent.proxy._podnat import PodForwarder, PodState
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
        self._pods: dict[PodUID, PodState] = {}
        self._pod_forwarder = PodForwarder(engine=self._engine, runner=runner)
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
                    wanted[(HOST_SCOPE, address, rule.node_port)] = rule.node_port_endpoints(
                        self.node_addresses
                    )
        return wanted

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
            # No Services, no kernel objects: an empty table would route nothing either, and
            # every agent without Services (most test agents, fresh nodes) would otherwise
            # leave a table behind, and agents sharing a host would fight over it.
            backend: NftablesBackend | IptablesBackend | None = (
                self._nft
                if self.mode == "nftables"
                else self._ipt
                if self.mode == "iptables"
                else None
            )
            try:
                if backend is not None and len(rules):
                    kernel_changed = backend.program(rules, node_addresses=self.node_addresses)
                elif backend is not None:
                    kernel_changed = backend.cleanup()
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
            outcome = self._engine.sync(self._host_listeners(rules), scopes={HOST_SCOPE: None})
            problems += outcome.problems
            changed = kernel_changed or outcome.changed
            for uid, pod in self._pods.items():
                in_pod = self._pod_forwarder.sync(uid, pod, rules)
                problems += in_pod.problems
                changed = changed or in_pod.changed
            self._rules = rules
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
        The listeners take reserved ports (61000-61999, on the virtual addresses) and the
        pod's nft table redirects the Service ports to them, so the app may bind any other
        port, Service ports included, on ``0.0.0.0``; without the right to run ``nft`` there
        they take the Service ports themselves and the report's problems say so.
        Attaching an attached pod again only re-checks its listeners. Raises ``OSError`` when
        the namespace cannot be opened (the sandbox is gone).
        """
        with self._lock:
            if pod_uid not in self._pods:
                fd = open_netns(netns_path)
                self._pods[pod_uid] = PodState(netns_fd=fd, netns_path=netns_path)
            pod = self._pods[pod_uid]
            outcome = self._pod_forwarder.sync(pod_uid, pod, self._rules)
            return ApplyReport(
                mode=self.mode,
                changed=outcome.changed,
                rules=len(self._rules),
                message=f"pod {pod_uid}: forwarding {len(self._rules)} Service ports",
                problems=outcome.problems,
            )

    def detach_pod(self, pod_uid: PodUID) -> bool:
        """Stop a pod's forwarder (its sandbox is gone or going) and delete its nft table;
        False if it was not attached."""
        with self._lock:
            pod = self._pods.pop(pod_uid, None)
            if pod is None:
                return False
            try:
                self._pod_forwarder.remove(pod_uid, pod)
            finally:
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
            listeners = self._engine.sync({}, scopes={HOST_SCOPE: None}).changed
            for uid, pod in self._pods.items():
                listeners = self._pod_forwarder.remove(uid, pod) or listeners
                os.close(pod.netns_fd)
            if listeners:
                removed.append("userspace listeners and in-pod redirects")
            self._pods.clear()
            self._rules = ServiceRuleSet()
            return tuple(removed)

    def close(self) -> None:
        """Stop the userspace data plane. Kernel rules stay: NodePorts keep working while the
        agent restarts (``cleanup`` removes them). So do the pods' redirect tables: until the
        next agent re-attaches, a pod's connection to a Service is refused rather than
        answered by the pod's own app on the Service's port."""
        with self._lock:
            self._engine.close()
            for pod in self._pods.values():
                with contextlib.suppress(OSError):
                    os.close(pod.netns_fd)
            self._pods.clear()

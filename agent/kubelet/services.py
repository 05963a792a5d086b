"""The kubelet's side of Services: the node proxy fed with the desired set, pods wired to it.

Sits between the desired set and :class:`agent.proxy.Proxy`. The daemon hands every desired set
taken (restored or synced) to :meth:`NodeServices.take`, which programs the proxy off the event
loop, latest wins. The executor asks it for a new sandbox's hosts entries and a new container's
Service variables, attaches the in-pod forwarder right after a sandbox starts, and drains a pod's
endpoints before it sends SIGTERM to the pod's containers. On every pass the sync loop calls
:meth:`NodeServices.sync_pods` with the running sandboxes: forwarders follow them (adopted pods
after an agent restart, removed sandboxes) and their hosts files follow the Service names.

The node's ``ProxyReady`` condition names the sync generation whose Services the proxy last
programmed (the latest that changed them): the event a test or an operator waits for to know
that a change of endpoints is in the node's rules.

Failures never stop the agent: a rule set the kernel refuses, or a desired set the proxy cannot
express (two Services on one nodePort), turns the node's ``ProxyReady`` condition False with the
reason, and the previous rules keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agent.proxy import (
    CommandError,
    Endpoint,
    Proxy,
    ServiceRuleSet,
    extra_hosts,
    rewrite_hosts,
    service_env,
)
from agent.proxy import PodUID as ProxyPodUID
from agent.runtime.facts import ObservedContainer, PodUID
from schemas.meta import Condition
from schemas.protocol import ServiceRule

_log = logging.getLogger(__name__)


def published_endpoints(sandbox: ObservedContainer) -> tuple[Endpoint, ...]:
    """The (node address, host port) pairs a running sandbox publishes: the pod's endpoints."""
    found: list[Endpoint] = []
    for binding in sandbox.host_ports:
        if binding.host_port <= 0:
            continue
        try:
            found.append(Endpoint(binding.host_ip, binding.host_port))
        except ValueError:  # an IPv6 or wildcard binding is never a Capstan endpoint
            continue
    return tuple(sorted(set(found)))


@dataclass(frozen=True)
class _Attached:
    pid: int
    hosts: tuple[tuple[str, str], ...] | None = None
    """The Service names last written into the pod's hosts file (None: not checked yet)."""


def _shares_our_netns(pid: int) -> bool:
    # A hostNetwork pod lives in the node's namespace, where the node's own rules (or host
    # listeners) already answer the virtual addresses: a forwarder there would collide.
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _rewrite_hosts_file(path: str, rules: ServiceRuleSet, *, namespace: str) -> bool:
    """Refresh the Service lines of a hosts file; False when it already matched."""
    # Written in place, never replaced: the file is bind-mounted into the pod's containers by
    # inode, so a rename would leave them reading the old file.
    with open(path, "r+", encoding="utf-8") as handle:
        current = handle.read()
        wanted = rewrite_hosts(current, rules, namespace=namespace)
        if wanted == current:
            return False
        handle.seek(0)
        handle.write(wanted)
        handle.truncate()
    return True


class NodeServices:
    """Applies the desired Services (minus endpoints being drained) and wires pods to them."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._desired = ServiceRuleSet()
        # The rules of the last take (None before the first, which always programs).
        self._taken: tuple[ServiceRule, ...] | None = None
        # The sync generation of ``_desired``, and of the rules the proxy last programmed.
        self._desired_generation: int | None = None
        self._programmed_generation: int | None = None
        self._draining: dict[PodUID, frozenset[Endpoint]] = {}
        # Endpoints of pods that were torn down: kept out until the control plane's next
        # desired set, which no longer lists them (their host ports are gone anyway).
        self._gone: dict[PodUID, frozenset[Endpoint]] = {}
        self._attached: dict[PodUID, _Attached] = {}
        self._problem: str | None = None
        self._apply_lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._rule_listeners: list[Callable[[ServiceRuleSet], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def proxy(self) -> Proxy:
        return self._proxy

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every apply (the node status carries the proxy's state)."""
        self._listeners.append(listener)

    def on_rules(self, listener: Callable[[ServiceRuleSet], None]) -> None:
        """Call ``listener`` with the rules of every apply, before the proxy programs them
        (the ingress proxy dials the same endpoints, and drops a draining pod's as early)."""
        self._rule_listeners.append(listener)

    # --- the desired set ----------------------------------------------------------------

    def take(self, services: Sequence[ServiceRule], *, generation: int | None = None) -> None:
        """Take the Services of a desired set; programs them soon (runs on the event loop).

        The very rules taken last (a sync with ``servicesUnchanged`` keeps them; the
        server's decoder hands back the same objects for unchanged rules) change nothing:
        the rules stay as programmed, with the endpoints of pods torn down since still out,
        as the control plane still lists them.
        """
        taken = tuple(services)
        if (
            self._taken is not None
            and len(taken) == len(self._taken)
            and all(new is old for new, old in zip(taken, self._taken, strict=True))
        ):
            return
        self._taken = taken
        try:
            self._desired = ServiceRuleSet.from_protocol(services)
        except ValueError as exc:
            # The old rules keep serving: better stale than a half-understood set.
            self._problem = f"Service rules refused: {exc}"
            _log.warning("proxy: %s", self._problem)
            self._notify()
            return
        self._problem = None
        self._desired_generation = generation
        self._gone.clear()
        task = asyncio.get_running_loop().create_task(self.apply(), name="proxy-apply")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def apply(self) -> None:
        """Program the latest desired rules minus drained endpoints; never raises."""
        # The lock is FIFO and each apply reads the latest state when its turn comes, so an
        # older set can never be programmed after a newer one.
        async with self._apply_lock:
            drained = frozenset().union(*self._draining.values(), *self._gone.values())
            rules = self._desired.without_endpoints(drained) if drained else self._desired
            generation = self._desired_generation
            for listener in self._rule_listeners:
                listener(rules)
            try:
                report = await asyncio.to_thread(self._proxy.apply, rules)
            except (CommandError, OSError) as exc:
                _log.warning("proxy apply failed; the previous rules stay: %s", exc)
            else:
                self._programmed_generation = generation
                if report.changed:
                    _log.info("proxy: %s", report.message)
        self._notify()

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def condition(self) -> Condition:
        """The node's ``ProxyReady`` condition: the proxy's mode and its last apply, and the
        sync generation of the Services it programmed."""
        condition = self._proxy.node_condition()
        if self._problem is not None:
            return condition.model_copy(update={"status": "False", "message": self._problem})
        if self._programmed_generation is not None:
            message = (
                f"{condition.message}; Services of sync generation {self._programmed_generation}"
            )
            return condition.model_copy(update={"message": message})
        return condition

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    # --- what a new pod sees ------------------------------------------------------------

    def hosts(self, namespace: str) -> dict[str, str]:
        """Hosts entries for a new sandbox in ``namespace`` (from the desired Services: names
        do not wait for the kernel)."""
        return extra_hosts(self._desired, namespace=namespace)

    def env(self, namespace: str) -> dict[str, str]:
        """Service variables for a container starting now in ``namespace``."""
        return service_env(self._desired, namespace=namespace)

    # --- graceful stop ------------------------------------------------------------------

    async def drain(self, pod: PodUID, endpoints: Sequence[Endpoint]) -> None:
        """Take a pod's endpoints out of this node's rules; returns once they are out."""
        if not endpoints:
            return
        self._draining[pod] = frozenset(endpoints)
        await self.apply()

    async def release(self, pod: PodUID, *, pod_gone: bool) -> None:
        """The pod's stop is over: its endpoints follow the desired set again, except those
        of a pod that is gone, which stay out until the next desired set."""
        endpoints = self._draining.pop(pod, None)
        if endpoints is None:
            return
        if pod_gone:
            self._gone[pod] = endpoints
            return
        await self.apply()

    # --- forwarders and hosts files of running pods -------------------------------------

    async def attach(self, pod: PodUID, *, pid: int) -> None:
        """Start (or move) a pod's in-pod forwarder to the sandbox process ``pid``."""
        current = self._attached.get(pod)
        if current is not None and current.pid == pid:
            return
        if current is not None:
            await self.detach(pod)
        if pid <= 0 or _shares_our_netns(pid):
            return
        try:
            report = await asyncio.to_thread(
                self._proxy.attach_pod, ProxyPodUID(pod), netns_path=f"/proc/{pid}/ns/net"
            )
        except OSError as exc:
            _log.warning("pod %s: in-pod forwarder not attached: %s", pod, exc)
            return
        self._attached[pod] = _Attached(pid=pid)
        for problem in report.problems:
            _log.warning("pod %s: %s", pod, problem)

    async def detach(self, pod: PodUID) -> None:
        if self._attached.pop(pod, None) is None:
            return
        try:
            await asyncio.to_thread(self._proxy.detach_pod, ProxyPodUID(pod))
        except OSError as exc:  # closing the namespace handle; the listeners are gone already
            _log.warning("pod %s: detaching the in-pod forwarder: %s", pod, exc)

    async def sync_pods(
        self, sandboxes: Mapping[PodUID, ObservedContainer], *, skip: frozenset[PodUID]
    ) -> None:
        """Forwarders for exactly the running ``sandboxes``; their hosts files up to date.

        ``skip``: pods a worker is changing right now (the worker attaches what it starts).
        """
        for pod in set(self._attached) - set(sandboxes) - skip:
            await self.detach(pod)
        for pod, sandbox in sandboxes.items():
            if pod in skip:
                continue
            await self.attach(pod, pid=sandbox.pid)
            await self._refresh_hosts(pod, sandbox)

    async def _refresh_hosts(self, pod: PodUID, sandbox: ObservedContainer) -> None:
        attached = self._attached.get(pod)
        if attached is None or not sandbox.hosts_path:
            return
        wanted = tuple(sorted(self.hosts(sandbox.pod_namespace).items()))
        if attached.hosts == wanted:
            return
        try:
            changed = await asyncio.to_thread(
                _rewrite_hosts_file,
                sandbox.hosts_path,
                self._desired,
                namespace=sandbox.pod_namespace,
            )
        except OSError as exc:
            _log.warning("pod %s: hosts file not refreshed: %s", pod, exc)
            return
        if changed:
            _log.info("pod %s: Service names refreshed in its hosts file", pod)
        self._attached[pod] = _Attached(pid=attached.pid, hosts=wanted)

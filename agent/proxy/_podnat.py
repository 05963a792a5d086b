"""In-pod forwarders that leave the Service ports to the pod: listen aside, redirect in nft.

Called by :class:`agent.proxy.proxy.Proxy` for one attached pod when it is attached and on
every apply. It decides the pod's listeners (served by :mod:`agent.proxy._userspace`) and
keeps the pod's own nft table (``table ip capstan_pod``, in the pod's network namespace) in
step with them.

WHY not simply listen on ``virtual address:Service port``: Linux refuses a wildcard bind
(``0.0.0.0:8080``, what almost every server does) while a socket bound to a *specific*
address LISTENs on that port in the same namespace, and the other way round. A Service port
equal to a port the pod's own app serves is the common case (Kubernetes' default
``targetPort``), and the forwarder is attached before the app starts, so the app died with
``Address already in use``. Hence:

* the forwarder listens on ``virtual address:reserved port``, a port of
  :data:`RESERVED_PORTS` (61000-61999, above Linux's default ephemeral range 32768-60999, so
  no ``bind(0)`` or outgoing connection of the app lands there either). Listeners of
  different Services have different addresses and may share a port, so a pod only ever
  holds the first few ports of the range (as many as the largest Service has TCP ports): a
  Service's ports take the lowest reserved ports free on its address, and keep them while
  they exist. A reserved port something in the pod already holds (``EADDRINUSE``, e.g. an
  adopted pod whose app binds 61000) is skipped for that pod;
* the pod's table DNATs ``virtual address . Service port`` to ``virtual address . reserved
  port`` in the ``output`` hook (locally generated traffic; loopback-to-loopback DNAT stays on
  ``lo``, no ``route_localnet`` needed). Only the pod's loopback is involved: the traffic rule
  (loopback or our own namespaces only) holds, and the app's own ``0.0.0.0:8080`` keeps
  serving everything not addressed to a Service.

The table is created (replacing any earlier agent's) in one ``nft -f`` batch together with
its map, then changed by flushing and refilling the map in one batch: each new connection
sees the old or the new redirects. ``nft`` runs in a child of a thread that joined the pod's
namespace (:func:`agent.netns.run_in_netns`).

When ``nft`` cannot create the table there (no tool, no right), the pod falls back to
listeners on the Service ports themselves — the old behaviour, with its collision — and
every report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from agent.netns import run_in_netns
from agent.proxy._commands import CommandError, CommandRunner, check
from agent.proxy._userspace import ListenerKey, SyncOutcome, UserspaceEngine
from agent.proxy.model import Endpoint, ServiceRuleSet

POD_TABLE: Final = "capstan_pod"
RESERVED_PORTS: Final = range(61000, 62000)
"""Ports of a pod's namespace the in-pod forwarder may listen on (on virtual addresses)."""

_MAP: Final = "redirects"
_ATTEMPTS: Final = 4
"""Rounds of "bind, skip the ports found in use"; an adopted pod rarely costs more than one."""

ServicePort = tuple[str, int]
"""(virtual address, Service port)."""

_log = logging.getLogger(__name__)


def assign_reserved_ports(
    wanted: Iterable[ServicePort],
    *,
    previous: Mapping[ServicePort, int],
    blocked: Collection[int],
    reserved: range = RESERVED_PORTS,
) -> dict[ServicePort, int]:
    """A reserved port per Service port: kept if it had one, else the lowest free on its address.

    Ports in ``blocked`` are never given. A Service port left without one (its address has
    run out of reserved ports) is absent from the result.
    """
    wanted = sorted(set(wanted))
    result: dict[ServicePort, int] = {}
    taken: set[tuple[str, int]] = set()
    for key in wanted:
        port = previous.get(key)
        usable = port is not None and port in reserved and port not in blocked
        if port is not None and usable and (key[0], port) not in taken:
            result[key] = port
            taken.add((key[0], port))
    for key in wanted:
        if key in result:
            continue
        for port in reserved:
            if port not in blocked and (key[0], port) not in taken:
                result[key] = port
                taken.add((key[0], port))
                break
    return result


def render_redirects(redirects: Mapping[ServicePort, int], *, create: bool) -> str:
    """The ``nft -f`` batch that makes the pod's table redirect exactly ``redirects``.

    ``create`` replaces whatever table of that name exists (an earlier agent's) with a fresh
    one; otherwise only the map's elements are replaced.
    """
    lines: list[str] = []
    if create:
        lines += [
            f"add table ip {POD_TABLE}",
            f"delete table ip {POD_TABLE}",
            f"table ip {POD_TABLE} {{",
            f"\tmap {_MAP} {{",
            "\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service",
            "\t}",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            f"\t\tmeta l4proto tcp dnat ip to ip daddr . tcp dport map @{_MAP}",
            "\t}",
            "}",
        ]
    else:
        lines.append(f"flush map ip {POD_TABLE} {_MAP}")
    if redirects:
        elements = ", ".join(
            f"{address} . {port} : {address} . {reserved}"
            for (address, port), reserved in sorted(redirects.items())
        )
        lines.append(f"add element ip {POD_TABLE} {_MAP} {{ {elements} }}")
    return "\n".join(lines) + "\n"


def render_removal() -> str:
    """Delete the pod's table, whether or not it exists."""
    return f"add table ip {POD_TABLE}\ndelete table ip {POD_TABLE}\n"


@dataclass
class PodState:
    """What the proxy keeps for one attached pod (changed only under the proxy's lock)."""

    netns_fd: int
    netns_path: str
    redirect: bool = True
    """False once ``nft`` failed to create the table: listeners on the Service ports then."""
    limitation: str | None = None
    ports: dict[ServicePort, int] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    programmed: dict[ServicePort, int] | None = None
    """The redirects in the pod's table; None while this agent has not created it."""


class PodForwarder:
    """Brings one pod's listeners and redirect table to a rule set (see the module doc)."""

    def __init__(self, *, engine: UserspaceEngine, runner: CommandRunner) -> None:
        self._engine = engine
        self._runner = runner

    def _nft(self, pod: PodState, script: str) -> None:
        result = run_in_netns(
            lambda: self._runner(["nft", "-f", "-"], stdin=script), netns_fd=pod.netns_fd
        )
        check(result, "nft in the pod's network namespace")

    def sync(self, scope: str, pod: PodState, rules: ServiceRuleSet) -> SyncOutcome:
        """Serve ``rules`` in the pod ``scope`` (its uid); problems are reported, not raised."""
        tcp = {(r.virtual_address, r.port): r.endpoints for r in rules if r.protocol == "TCP"}
        if not pod.redirect:
            outcome = self._engine.sync(
                {(scope, a, p): eps for (a, p), eps in tcp.items()},
                scopes={scope: pod.netns_fd},
            )
            standing = (pod.limitation,) if pod.limitation else ()
            return SyncOutcome(changed=outcome.changed, problems=standing + outcome.problems)

        changed = False
        for _ in range(_ATTEMPTS):
            pod.ports = assign_reserved_ports(tcp, previous=pod.ports, blocked=pod.blocked)
            desired: dict[ListenerKey, tuple[Endpoint, ...]] = {
                (scope, a, reserved): tcp[(a, p)] for (a, p), reserved in pod.ports.items()
            }
            outcome = self._engine.sync(desired, scopes={scope: pod.netns_fd})
            changed |= outcome.changed
            if not outcome.in_use:
                break
            # Something in the pod holds these ports: the next round takes others.
            pod.blocked.update(key[2] for key in outcome.in_use)
        problems = list(outcome.problems)
        unassigned = sorted(tcp.keys() - pod.ports.keys())
        if unassigned:
            problems.append(
                f"pod {scope}: no free port in {RESERVED_PORTS.start}-{RESERVED_PORTS.stop - 1}"
                " for " + ", ".join(f"{a}:{p}" for a, p in unassigned)
            )

        live = {key for key in self._engine.listeners() if key[0] == scope}
        redirects = {sp: port for sp, port in pod.ports.items() if (scope, sp[0], port) in live}
        if redirects == pod.programmed or (not redirects and pod.programmed is None):
            return SyncOutcome(changed=changed, problems=tuple(problems))
        try:
            self._nft(pod, render_redirects(redirects, create=pod.programmed is None))
        except (CommandError, OSError) as exc:
            if pod.programmed is not None:
                problems.append(
                    f"pod {scope}: Service redirects not updated (the previous ones stay): {exc}"
                )
                return SyncOutcome(changed=changed, problems=tuple(problems))
            # No table, no right to make one: the direct listeners are all that can work.
            pod.redirect = False
            pod.ports.clear()
            pod.limitation = (
                f"pod {scope}: no nft table in its network namespace ({exc}); the Services"
                " listen on their own ports there, so a container binding 0.0.0.0 on one of"
                " them fails with 'Address already in use'"
            )
            direct = self.sync(scope, pod, rules)
            return SyncOutcome(changed=True, problems=direct.problems)
        pod.programmed = redirects
        return SyncOutcome(changed=True, problems=tuple(problems))

    def remove(self, scope: str, pod: PodState) -> bool:
        """Delete the pod's table and stop its listeners; True if anything was there.

        The table goes first, so no connection is redirected to a port nobody listens on any
        more. A namespace that cannot be entered any more has nothing left to delete.
        """
        removed = False
        if pod.programmed is not None:
            try:
                self._nft(pod, render_removal())
                removed = True
            except (CommandError, OSError) as exc:
                _log.info("pod %s: its nft table was not deleted: %s", scope, exc)
            pod.programmed = None
        return self._engine.sync({}, scopes={scope: None}).changed or removed

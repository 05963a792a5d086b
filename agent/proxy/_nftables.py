"""Kernel mode with nftables: one Capstan-owned table, switched atomically.

Called by :class:`agent.proxy.proxy.Proxy` on every apply in ``nftables`` mode. The scripts
rendered here (pure, see :func:`render`) are fed to ``nft -f -``, each committed as one
netlink batch.

Layout of ``table ip <name>``:

* ``services`` (static): ``ip daddr . l4proto . dport`` looked up in the ``virtual_ports``
  verdict map (Service virtual addresses, for processes in the node's own namespace), then,
  for destinations in ``@node_addresses``, ``l4proto . dport`` in ``node_ports``;
* one chain per Service port *and endpoint set*, named by a hash of both: ``numgen random
  mod N`` picks one of N endpoints (uniform, as kube-proxy's ``statistic`` rules), or
  ``reject`` when none is ready. A chain's rules never change: new endpoints mean a new
  chain. The node port of an ``externalTrafficPolicy: Local`` Service has a chain of its
  own with only this node's endpoints, no masquerade mark, and ``drop`` when it has none;
* ``output`` (locally generated: this is the hook that sees 127.0.0.x → 127.0.0.y; measured
  on this kernel, loopback-to-loopback DNAT there needs no ``route_localnet``) and
  ``prerouting`` (traffic from other hosts) jump to ``services``; DNAT'ed packets get mark
  0x4000 and ``postrouting`` masquerades them unless they stay on ``lo`` (an endpoint on
  another node must answer to this node, not to a source it cannot route to).

An apply is two transactions: (1) create the chains the new rules need (and delete those
that nothing has referenced since the previous apply), (2) re-point the verdict maps and
the address set at them. Only (2) changes what traffic sees, and it changes nothing but map
elements, so every new connection meets either the old or the new rules; conntrack keeps
the NAT of established connections, which finish on their endpoint.

WARNING: the kernel evaluates a packet's chains in the generation it started in but looks
set elements up in the *current* one. We used to replace the whole table in one batch, then
to flush and refill its chains in one batch: with a client loop running, about one
connection in 10,000 was refused — a SYN that straddled the commit ran an old rule against
new map contents, or jumped into a chain created in that very commit whose old-generation
rules are empty. Hence chains that never change, created one commit before anything points
at them, and deleted one apply after nothing does.

The one element of the ``state`` set carries a comment with the layout version and the
SHA-256 of the desired contents: observing it is how an apply of unchanged rules is a no-op
that says why (``nft list set`` reads only that set, ~4 ms, where listing a table of 1,000
Services costs ~0.3 s).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from agent.proxy._commands import CommandRunner, check
from agent.proxy.model import Endpoint, PortRule, ServiceRuleSet

MASQUERADE_MARK: Final = 0x4000
LAYOUT: Final = "v2"
"""Bumped whenever the static part of the table changes; a table of another layout is
replaced whole (once, with the short window the WARNING above describes)."""

_STATE_RE: Final = re.compile(r'comment "capstan-proxy (v\d+) sha256:([0-9a-f]{64})"')
_CHAIN_RE: Final = re.compile(r"^\s*chain (\S+) \{")
_NAME_RE: Final = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,31}\Z")
_SAFE_TEXT: Final = re.compile(r"[^A-Za-z0-9._:/ -]")
_STATIC_CHAINS: Final = frozenset({"services", "output", "prerouting", "postrouting"})

_log = logging.getLogger(__name__)


def validate_table_name(table: str) -> str:
    if not _NAME_RE.match(table):
        raise ValueError(f"nftables table name {table!r} must match {_NAME_RE.pattern}")
    return table


def chain_name(rule: PortRule, endpoints: Sequence[Endpoint] | None = None) -> str:
    """The chain of a Service port with exactly these endpoints; given ``endpoints``, the
    chain of its ``externalTrafficPolicy: Local`` node port, which goes to them only."""
    if endpoints is None:
        key = f"{rule.label}/{rule.protocol}/{','.join(map(str, rule.endpoints))}"
    else:
        key = f"{rule.label}/{rule.protocol}/local/{','.join(map(str, endpoints))}"
    return f"svc_{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def _quote(text: str) -> str:
    # Names here are validated DNS labels; still reduced to a harmless alphabet, because a
    # quote ends the comment and a newline starts a new nft command.
    return _SAFE_TEXT.sub("_", text)[:120]


@dataclass(frozen=True)
class _Chain:
    """What one Service chain does: ``local`` is a Local node port's chain, which neither
    marks for masquerade (the endpoints are on this node; the client's address is kept) nor
    answers when it has no endpoint (dropped, as kube-proxy drops it)."""

    rule: PortRule
    endpoints: tuple[Endpoint, ...]
    local: bool = False


def _service_chain(table: str, name: str, chain: _Chain) -> list[str]:
    proto = chain.rule.protocol.lower()
    label = chain.rule.label + (" local" if chain.local else "")
    lines = [f'add chain ip {table} {name} {{ comment "{_quote(label)}"; }}']
    endpoints = chain.endpoints
    if not endpoints and chain.local:
        return [*lines, f"add rule ip {table} {name} meta l4proto {proto} drop"]
    if not endpoints:
        # Explicit rather than falling through to "nothing listens": the virtual address of a
        # userspace listener (another mode, an earlier run) must not answer either.
        reject = "reject with tcp reset" if proto == "tcp" else "reject"
        return [*lines, f"add rule ip {table} {name} meta l4proto {proto} {reject}"]
    if not chain.local:
        lines.append(f"add rule ip {table} {name} meta mark set meta mark | {MASQUERADE_MARK:#x}")
    if len(endpoints) == 1:
        target = str(endpoints[0])
    else:
        choices = ", ".join(f"{i} : {ep.address} . {ep.port}" for i, ep in enumerate(endpoints))
        target = f"numgen random mod {len(endpoints)} map {{ {choices} }}"
    return [*lines, f"add rule ip {table} {name} meta l4proto {proto} dnat to {target}"]


def _static(table: str) -> list[str]:
    """A fresh table: typed sets and maps, and the chains whose rules never change."""
    return [
        f"table ip {table} {{",
        "  set state {",
        "    type mark",
        "  }",
        "  set node_addresses {",
        "    type ipv4_addr",
        "  }",
        "  map node_ports {",
        "    type inet_proto . inet_service : verdict",
        "  }",
        "  map virtual_ports {",
        "    type ipv4_addr . inet_proto . inet_service : verdict",
        "  }",
        "  chain services {",
        "    ip daddr . meta l4proto . th dport vmap @virtual_ports",
        "    ip daddr @node_addresses meta l4proto . th dport vmap @node_ports",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        f'    meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} oifname != "lo" masquerade',
        "  }",
        "}",
    ]


def _elements(table: str, kind: str, name: str, elements: Sequence[str]) -> list[str]:
    lines = [f"flush {kind} ip {table} {name}"]
    if elements:
        lines.append(f"add element ip {table} {name} {{ {', '.join(elements)} }}")
    return lines


@dataclass(frozen=True)
class Plan:
    """What one apply runs: ``create`` (may be empty), then ``switch``."""

    create: str
    switch: str
    digest: str
    chains: frozenset[str]
    """The Service chains the maps point at after ``switch``."""


def render(
    rules: ServiceRuleSet,
    *,
    node_addresses: Sequence[str],
    table: str,
    existing: Collection[str] | None,
    referenced: Collection[str] | None,
) -> Plan:
    """The two ``nft -f`` scripts that bring ``table`` to ``rules``.

    ``existing``: chains in the live table (None: no table, or one of another layout, to be
    replaced). ``referenced``: the Service chains the live maps point at (None: unknown, so
    nothing is deleted this time; it will be on the next apply).
    """
    wanted = {chain_name(rule): _Chain(rule, rule.endpoints) for rule in rules}
    node_ports = []
    for rule in rules:
        if rule.node_port is None:
            continue
        name = chain_name(rule)
        if rule.external_local:
            local = rule.node_port_endpoints(node_addresses)
            name = chain_name(rule, local)
            wanted[name] = _Chain(rule, local, local=True)
        node_ports.append(f"{rule.protocol.lower()} . {rule.node_port} : goto {name}")
    virtual = [
        f"{r.virtual_address} . {r.protocol.lower()} . {r.port} : goto {chain_name(r)}"
        for r in rules
    ]
    addresses = sorted(set(node_addresses))
    digest = hashlib.sha256(
        "\n".join([LAYOUT, *sorted(wanted), *addresses, *node_ports, *virtual]).encode()
    ).hexdigest()

    create: list[str] = []
    if existing is None:
        create += [f"table ip {table} {{}}", f"delete table ip {table}", *_static(table)]
        live: frozenset[str] = frozenset()
    else:
        live = frozenset(existing) - _STATIC_CHAINS
        if referenced is not None:
            unused = live - frozenset(referenced) - wanted.keys()
            create += [f"delete chain ip {table} {name}" for name in sorted(unused)]
    for name, chain in wanted.items():
        if name not in live:
            create += _service_chain(table, name, chain)

    switch = [
        *_elements(table, "set", "node_addresses", addresses),
        *_elements(table, "map", "node_ports", node_ports),
        *_elements(table, "map", "virtual_ports", virtual),
        *_elements(
            table, "set", "state", [f'0x1 comment "capstan-proxy {LAYOUT} sha256:{digest}"']
        ),
    ]
    return Plan(
        create="\n".join(create) + "\n" if create else "",
        switch="\n".join(switch) + "\n",
        digest=digest,
        chains=frozenset(wanted),
    )


class NftablesBackend:
    """Programs and removes the Capstan table through ``nft``."""

    mode: Final = "nftables"

    def __init__(self, *, table: str, runner: CommandRunner) -> None:
        self._table = validate_table_name(table)
        self._run = runner
        # What we last committed; None until known (first apply, or after a failure).
        self._existing: frozenset[str] | None = None
        self._referenced: frozenset[str] | None = None

    def _observe_state(self) -> tuple[str, str] | None:
        """(layout, digest) the live table was programmed with; None when absent."""
        result = self._run(["nft", "list", "set", "ip", self._table, "state"])
        match = _STATE_RE.search(result.stdout) if result.returncode == 0 else None
        return (match.group(1), match.group(2)) if match else None

    def _observe_chains(self) -> frozenset[str]:
        # "list chains" prints chain headers only: ~50 ms for 1,000 chains, where listing
        # the table with its rules and maps takes ~0.3 s.
        result = self._run(["nft", "list", "chains", "ip"])
        chains: set[str] = set()
        current = None
        for line in result.stdout.splitlines():
            if line.startswith("table "):
                current = line.split()[2]
            elif current == self._table and (match := _CHAIN_RE.match(line)):
                chains.add(match.group(1))
        return frozenset(chains)

    def program(self, rules: ServiceRuleSet, *, node_addresses: Sequence[str]) -> bool:
        """Make the kernel match ``rules``; False when it already did (nothing run)."""
        state = self._observe_state()
        existing = self._existing
        if existing is None and state is not None and state[0] == LAYOUT:
            existing = self._observe_chains()
        if state is None or state[0] != LAYOUT:
            if state is not None:
                _log.warning("replacing nft table %s of layout %s", self._table, state[0])
            existing = None
        plan = render(
            rules,
            node_addresses=node_addresses,
            table=self._table,
            existing=existing,
            referenced=self._referenced if existing is not None else None,
        )
        if state == (LAYOUT, plan.digest):
            self._existing = existing
            self._referenced = plan.chains
            self._collect_garbage()
            return False
        self._existing = self._referenced = None
        if plan.create:
            check(self._run(["nft", "-f", "-"], stdin=plan.create), f"nft create in {self._table}")
        check(self._run(["nft", "-f", "-"], stdin=plan.switch), f"nft switch {self._table}")
        deleted = {
            line.split()[-1]
            for line in plan.create.splitlines()
            if line.startswith(f"delete chain ip {self._table} ")
        }
        self._existing = ((existing or frozenset()) | plan.chains | _STATIC_CHAINS) - deleted
        self._referenced = plan.chains
        return True

    def _collect_garbage(self) -> None:
        """Delete chains the maps stopped pointing at in an earlier apply.

        Not a change of what traffic sees, so an apply that only does this still reports
        no change.
        """
        if self._existing is None:
            return
        unused = self._existing - _STATIC_CHAINS - (self._referenced or frozenset())
        if not unused:
            return
        script = "".join(f"delete chain ip {self._table} {name}\n" for name in sorted(unused))
        check(self._run(["nft", "-f", "-"], stdin=script), "nft delete unused chains")
        self._existing -= unused
        _log.debug("deleted %d unused chains from nft table %s", len(unused), self._table)

    def cleanup(self) -> bool:
        """Delete the table; False when it was not there."""
        self._existing = self._referenced = None
        result = self._run(["nft", "delete", "table", "ip", self._table])
        if result.returncode != 0 and "No such file or directory" in result.stderr:
            return False
        check(result, f"nft delete table ip {self._table}")
        return True

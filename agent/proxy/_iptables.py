"""Kernel mode with iptables (``statistic`` match, as kube-proxy): for hosts without nft.

Called by :class:`agent.proxy.proxy.Proxy` on every apply in ``iptables`` mode. Everything
Capstan owns lives in ``nat`` chains named ``<PREFIX>-…``; the built-in chains only get one
jump each (``OUTPUT``/``PREROUTING`` → ``<PREFIX>-SERVICES``, ``POSTROUTING`` →
``<PREFIX>-POSTRTG``), added once and never touched otherwise.

One ``iptables-restore --noflush`` commits the whole change: declaring a chain (``:NAME``)
flushes only that chain, so the new contents replace the old in the same commit (the kernel
swaps the table in one step, legacy or nf_tables backend alike) and rules Capstan does not
own are left as they are. Chains no longer needed are flushed and deleted (``-X``) in the
same restore.

Balancing: rule *i* of N jumps with probability 1/(N-i), which makes each endpoint 1/N.
iptables has no REJECT in ``nat``, so a Service port without ready endpoints simply gets no
DNAT and the connection meets whatever is (not) listening on that address.

``externalTrafficPolicy: Local``: the node port jumps to ``<PREFIX>-L-…``, which DNATs to this
node's endpoints only and sets no masquerade mark (the client's address is kept); a node with
none of them gets no node port rule for it (as above: nothing forwards it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

from agent.proxy._commands import CommandRunner, check
from agent.proxy.model import Endpoint, PortRule, ServiceRuleSet

MASQUERADE_MARK: Final = 0x4000
_PREFIX_RE: Final = re.compile(r"^[A-Z][A-Z0-9]{0,11}\Z")
_SAFE_TEXT: Final = re.compile(r"[^A-Za-z0-9._:/ -]")
_HOOKS: Final = (("OUTPUT", "SERVICES"), ("PREROUTING", "SERVICES"), ("POSTROUTING", "POSTRTG"))


def validate_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"iptables chain prefix {prefix!r} must match {_PREFIX_RE.pattern}")
    return prefix


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:12].upper()


def _svc_chain(prefix: str, rule: PortRule) -> str:
    return f"{prefix}-S-{_digest(rule.label, rule.protocol)}"


def _local_chain(prefix: str, rule: PortRule) -> str:
    return f"{prefix}-L-{_digest(rule.label, rule.protocol)}"


def _sep_chain(prefix: str, rule: PortRule, endpoint: Endpoint) -> str:
    return f"{prefix}-E-{_digest(rule.label, rule.protocol, endpoint)}"


def _comment(text: str) -> str:
    # Built from validated names, and still reduced to a harmless alphabet: a newline in an
    # iptables-restore script is a new rule.
    return '"' + _SAFE_TEXT.sub("_", text)[:200] + '"'


def _chance(remaining: int) -> str:
    """The match that takes 1 of ``remaining`` packets (none for the last rule)."""
    if remaining == 1:
        return ""
    return f"-m statistic --mode random --probability {1 / remaining:.10f} "


def _local_dnat(chain: str, proto: str, endpoints: Sequence[Endpoint]) -> list[str]:
    """A Local node port's chain: DNAT to one of this node's endpoints, unmarked (so not
    masqueraded: the client's address is kept)."""
    return [
        f"-A {chain} {_chance(len(endpoints) - index)}-p {proto} -j DNAT --to-destination {ep}"
        for index, ep in enumerate(endpoints)
    ]


def render(
    rules: ServiceRuleSet, *, node_addresses: Sequence[str], prefix: str, stale: Sequence[str]
) -> tuple[str, str]:
    """The ``iptables-restore --noflush`` input, and its digest (stale chains excluded)."""
    services = f"{prefix}-SERVICES"
    nodeports = f"{prefix}-NODEPORTS"
    postrouting = f"{prefix}-POSTRTG"
    chains = [services, nodeports, postrouting]
    body: list[str] = []
    for address in sorted(set(node_addresses)):
        body.append(f"-A {services} -d {address}/32 -j {nodeports}")
    for rule in rules:
        proto = rule.protocol.lower()
        comment = f"-m comment --comment {_comment(rule.label)}"
        if rule.node_port is not None and rule.external_local:
            local = rule.node_port_endpoints(node_addresses)
            if local:
                chain = _local_chain(prefix, rule)
                chains.append(chain)
                body.append(
                    f"-A {nodeports} -p {proto} --dport {rule.node_port} {comment} -j {chain}"
                )
                body += _local_dnat(chain, proto, local)
        if not rule.endpoints:
            continue
        svc = _svc_chain(prefix, rule)
        chains.append(svc)
        body.append(
            f"-A {services} -d {rule.virtual_address}/32 -p {proto} --dport {rule.port} "
            f"{comment} -j {svc}"
        )
        if rule.node_port is not None and not rule.external_local:
            body.append(f"-A {nodeports} -p {proto} --dport {rule.node_port} {comment} -j {svc}")
        count = len(rule.endpoints)
        for index, endpoint in enumerate(rule.endpoints):
            sep = _sep_chain(prefix, rule, endpoint)
            chains.append(sep)
            body.append(f"-A {svc} {_chance(count - index)}-j {sep}")
            body.append(f"-A {sep} -j MARK --or-mark {MASQUERADE_MARK:#x}")
            body.append(f"-A {sep} -p {proto} -j DNAT --to-destination {endpoint}")
    body.append(
        f"-A {postrouting} -m mark --mark {MASQUERADE_MARK:#x}/{MASQUERADE_MARK:#x} "
        f"! -o lo -j MASQUERADE"
    )
    digest = hashlib.sha256("\n".join(chains + body).encode()).hexdigest()
    marker = f"-A {services} -m comment --comment {_comment('capstan-proxy sha256:' + digest)}"
    to_delete = sorted(set(stale) - set(chains))
    lines = ["*nat"]
    lines += [f":{chain} - [0:0]" for chain in chains + to_delete]
    lines.append(marker)
    lines += body
    lines += [f"-X {chain}" for chain in to_delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", digest


class IptablesBackend:
    """Programs and removes the Capstan chains through ``iptables-restore``."""

    mode: Final = "iptables"

    def __init__(self, *, prefix: str, runner: CommandRunner) -> None:
        self._prefix = validate_prefix(prefix)
        self._run = runner

    def _observe(self) -> tuple[list[str], str | None, str]:
        """Capstan chains present, the digest they were programmed with, the whole dump."""
        dump = check(self._run(["iptables-save", "-t", "nat"]), "iptables-save").stdout
        owned = re.findall(rf"^:({re.escape(self._prefix)}-[A-Z0-9-]+) ", dump, re.MULTILINE)
        marker = re.search(r"capstan-proxy sha256:([0-9a-f]{64})", dump)
        return owned, (marker.group(1) if marker else None), dump

    def _ensure_jumps(self, dump: str) -> bool:
        added = False
        for hook, target in _HOOKS:
            chain = f"{self._prefix}-{target}"
            if re.search(rf"^-A {hook} -j {re.escape(chain)}$", dump, re.MULTILINE):
                continue
            check(
                self._run(["iptables", "-w", "-t", "nat", "-I", hook, "1", "-j", chain]),
                f"iptables jump {hook} -> {chain}",
            )
            added = True
        return added

    def program(self, rules: ServiceRuleSet, *, node_addresses: Sequence[str]) -> bool:
        owned, live_digest, dump = self._observe()
        script, digest = render(
            rules, node_addresses=node_addresses, prefix=self._prefix, stale=owned
        )
        changed = live_digest != digest
        if changed:
            check(
                self._run(["iptables-restore", "-w", "--noflush"], stdin=script),
                "iptables-restore",
            )
        # After the chains exist: a jump to a missing chain is refused. The jumps are
        # checked every time because someone may have flushed OUTPUT (level-triggered).
        jumps_added = self._ensure_jumps(dump)
        return changed or jumps_added

    def cleanup(self) -> bool:
        owned, _, dump = self._observe()
        for hook, target in _HOOKS:
            chain = f"{self._prefix}-{target}"
            while re.search(rf"^-A {hook} -j {re.escape(chain)}$", dump, re.MULTILINE):
                check(
                    self._run(["iptables", "-w", "-t", "nat", "-D", hook, "-j", chain]),
                    f"iptables delete jump {hook} -> {chain}",
                )
                dump = check(self._run(["iptables-save", "-t", "nat"]), "iptables-save").stdout
        if not owned:
            return False
        script = "\n".join(
            ["*nat", *(f":{c} - [0:0]" for c in owned), *(f"-X {c}" for c in owned), "COMMIT"]
        )
        check(self._run(["iptables-restore", "-w", "--noflush"], stdin=script + "\n"), "cleanup")
        return True

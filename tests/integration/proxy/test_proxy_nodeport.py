"""NodePorts and virtual addresses in the node's namespace, in every mode this machine has."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
from proxy_testkit import ALL_MODES, KERNEL_MODES, ask, kernel_leftovers, rule_set, service, tally

from agent.proxy import CommandError, CommandResult, Proxy, ProxyMode, run_command
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule


@pytest.mark.parametrize("mode", ALL_MODES)
def test_nodeport_balances_over_three_replicas_on_two_nodes(mode, net, backends, make_proxy):
    proxy: Proxy = make_proxy(mode)
    report = proxy.apply(rule_set(service("web", backends, node_port=net.node_port)))
    assert report.changed
    assert report.mode == mode
    assert report.problems == ()

    for node in (net.node_a, net.node_b):
        counts = tally(node, net.node_port, 300)
        assert sum(counts.values()) == 300
        for backend in backends:
            assert counts[backend.name] >= 60, (node, counts)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_second_apply_of_same_rules_changes_nothing(mode, net, backends, make_proxy):
    proxy: Proxy = make_proxy(mode)
    rules = rule_set(service("web", backends, node_port=net.node_port))
    assert proxy.apply(rules).changed
    again = proxy.apply(rules)
    assert not again.changed
    assert "no change" in again.message


@pytest.mark.parametrize("mode", ALL_MODES)
def test_removed_endpoint_gets_no_new_connection_but_open_ones_finish(
    mode, net, backends, make_proxy
):
    proxy: Proxy = make_proxy(mode)
    proxy.apply(rule_set(service("web", backends, node_port=net.node_port)))
    gone = backends[2]
    # A long-lived connection that the apply must not cut: retry until it lands on `gone`.
    for _ in range(200):
        held = socket.create_connection((net.node_a, net.node_port), timeout=3)
        held.sendall(b"who\n")
        if held.recv(64).strip() == gone.name.encode():
            break
        held.close()
    else:
        pytest.fail("no connection reached the backend to be removed")

    with held:
        proxy.apply(rule_set(service("web", backends[:2], node_port=net.node_port)))
        before = gone.connections
        counts = tally(net.node_a, net.node_port, 100) + tally(net.node_b, net.node_port, 100)
        assert counts[gone.name] == 0
        assert gone.connections == before
        assert counts["b0"] > 0
        assert counts["b1"] > 0
        held.sendall(b"who\n")
        assert held.recv(64).strip() == gone.name.encode()


@pytest.mark.parametrize("mode", ALL_MODES)
def test_virtual_address_reaches_the_service_from_the_node(mode, net, backends, make_proxy):
    proxy: Proxy = make_proxy(mode)
    proxy.apply(rule_set(service("web", backends[:1], port=8080)))
    (rule,) = proxy.rules
    assert ask(rule.virtual_address, 8080) == "b0"


@pytest.mark.parametrize("mode", ALL_MODES)
def test_apply_replaces_atomically_under_a_client_loop(mode, net, backends, make_proxy):
    proxy: Proxy = make_proxy(mode)
    # Five endpoint sets in turn: kernel chains are created, switched to, and deleted.
    b0, b1, b2 = backends
    subsets = [[b0, b1], [b1, b2], [b0, b2], [b0, b1, b2], [b2]]
    sets = [rule_set(service("web", s, node_port=net.node_port)) for s in subsets]
    proxy.apply(sets[0])
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal served
        while not stop.is_set():
            try:
                ask(net.node_a, net.node_port, timeout=2)
                served += 1
            except OSError as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for i in range(60):
            proxy.apply(sets[i % len(sets)])
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert served > 60


@pytest.mark.parametrize("mode", ALL_MODES)
def test_service_without_ready_endpoints_refuses(mode, net, make_proxy):
    proxy: Proxy = make_proxy(mode)
    proxy.apply(rule_set(service("web", [], node_port=net.node_port)))
    with pytest.raises(OSError):
        ask(net.node_a, net.node_port, timeout=2)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_cleanup_removes_every_rule_and_listener(mode, net, backends, make_proxy):
    proxy: Proxy = make_proxy(mode)
    proxy.apply(rule_set(service("web", backends, node_port=net.node_port)))
    assert ask(net.node_a, net.node_port) in {"b0", "b1", "b2"}
    if mode != "userspace":
        assert kernel_leftovers(net) != []

    assert proxy.cleanup() != ()
    assert kernel_leftovers(net) == []
    with pytest.raises(OSError):
        ask(net.node_a, net.node_port, timeout=2)
    assert proxy.cleanup() == ()


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_foreign_rules_survive_apply_and_cleanup(mode, net, backends, make_proxy):
    foreign_table = f"{net.table}_foreign"
    foreign_chain = f"{net.prefix[:4]}FOREIGN{net.prefix[4:]}"
    subprocess.run(
        ["nft", "-f", "-"],
        input=(
            f"table ip {foreign_table} {{\n"
            "  chain output { type nat hook output priority 0; policy accept;\n"
            "    ip daddr 127.0.0.99 tcp dport 9 counter\n  }\n}\n"
        ),
        text=True,
        check=True,
    )
    subprocess.run(["iptables", "-w", "-t", "nat", "-N", foreign_chain], check=True)
    subprocess.run(
        ["iptables", "-w", "-t", "nat", "-A", foreign_chain, "-d", "127.0.0.99/32", "-j", "RETURN"],
        check=True,
    )

    def foreign() -> tuple[str, list[str]]:
        nft = subprocess.run(
            ["nft", "list", "table", "ip", foreign_table], capture_output=True, text=True
        ).stdout
        ipt = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
        return nft, [line for line in ipt.splitlines() if foreign_chain in line]

    try:
        before = foreign()
        assert "127.0.0.99" in before[0]
        assert len(before[1]) == 2
        proxy: Proxy = make_proxy(mode)
        proxy.apply(rule_set(service("web", backends, node_port=net.node_port)))
        assert foreign() == before
        proxy.cleanup()
        assert foreign() == before
    finally:
        subprocess.run(["nft", "delete", "table", "ip", foreign_table], check=False)
        subprocess.run(["iptables", "-w", "-t", "nat", "-F", foreign_chain], check=False)
        subprocess.run(["iptables", "-w", "-t", "nat", "-X", foreign_chain], check=False)


def test_userspace_retries_the_next_endpoint_when_one_refuses(net, backends, make_proxy):
    dead = socket.socket()
    dead.bind((net.node_b, 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: a connect is refused
    proxy: Proxy = make_proxy("userspace")
    wire = ServiceRule(
        namespace="default",
        name="web",
        type="NodePort",
        ports=[
            ServicePortRule(
                port=80,
                node_port=net.node_port,
                endpoints=[
                    backends[0].endpoint,
                    WireEndpoint(address=net.node_b, port=dead_port),
                ],
            )
        ],
    )
    rules = rule_set(wire)
    proxy.apply(rules)
    assert tally(net.node_a, net.node_port, 20) == {"b0": 20}


def test_mode_is_detected_and_reported_as_a_node_condition(net, backends, make_proxy):
    proxy: Proxy = make_proxy(None)
    detected: ProxyMode = proxy.mode
    assert detected == "nftables"  # root with nft on this machine
    assert proxy.node_condition().status == "Unknown"
    proxy.apply(rule_set(service("web", backends, node_port=net.node_port)))
    condition = proxy.node_condition()
    assert (condition.type, condition.status, condition.reason) == (
        "ProxyReady",
        "True",
        "Nftables",
    )
    assert "1 Service ports" in (condition.message or "")


def test_refused_rules_leave_the_previous_ones_and_say_so(net, backends, make_proxy):
    def refuse_changes(argv, *, stdin=None):
        # The process boundary: nft refuses the batch (as it would a rule it cannot load).
        if list(argv[:2]) == ["nft", "-f"]:
            return CommandResult(1, "", "Error: Could not process rule: Operation not supported")
        return run_command(argv, stdin=stdin)

    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rule_set(service("web", backends[:1], node_port=net.node_port)))
    refusing: Proxy = make_proxy("nftables", runner=refuse_changes)
    with pytest.raises(CommandError, match="Operation not supported"):
        refusing.apply(rule_set(service("web", backends[1:2], node_port=net.node_port)))
    assert refusing.node_condition().status == "False"
    assert tally(net.node_a, net.node_port, 10) == {"b0": 10}


def test_node_addresses_must_be_ipv4(make_proxy):
    with pytest.raises(ValueError):
        make_proxy("userspace", node_addresses=["node-a"])


@pytest.mark.parametrize(("before", "after"), [("iptables", "nftables"), ("nftables", "iptables")])
def test_first_apply_removes_leftovers_of_another_mode(before, after, net, backends, make_proxy):
    if "iptables" not in KERNEL_MODES:
        pytest.skip("no iptables here")
    old: Proxy = make_proxy(before)
    old.apply(rule_set(service("web", backends[:1], node_port=net.node_port)))
    old.close()  # an agent that stopped without --cleanup
    new: Proxy = make_proxy(after)
    new.apply(rule_set(service("web", backends[1:2], node_port=net.node_port)))
    assert tally(net.node_a, net.node_port, 30) == {"b1": 30}
    leftovers = kernel_leftovers(net)
    other = net.prefix if before == "iptables" else net.table
    assert [line for line in leftovers if other in line] == []


def test_userspace_relays_large_payloads_and_half_close(net, make_proxy):
    # The backend reads until the client's EOF, then answers with what it counted: this
    # needs flow control (8 MiB through small socket buffers) and a relayed half-close.
    server = socket.create_server((net.node_b, 0))
    port = server.getsockname()[1]

    def count_until_eof() -> None:
        conn, _ = server.accept()
        with conn:
            total = 0
            while chunk := conn.recv(65536):
                total += len(chunk)
            conn.sendall(f"{total}\n".encode())

    thread = threading.Thread(target=count_until_eof)
    thread.start()
    try:
        proxy: Proxy = make_proxy("userspace")
        wire = ServiceRule(
            namespace="default",
            name="sink",
            type="NodePort",
            ports=[
                ServicePortRule(
                    port=80,
                    node_port=net.node_port,
                    endpoints=[WireEndpoint(address=net.node_b, port=port)],
                )
            ],
        )
        proxy.apply(rule_set(wire))
        payload = b"x" * (8 * 1024 * 1024)
        with socket.create_connection((net.node_a, net.node_port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(64):
                reply += chunk
        assert reply == f"{len(payload)}\n".encode()
    finally:
        thread.join(10)
        server.close()


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_restarted_agent_adopts_its_rules(mode, net, backends, make_proxy):
    rules = rule_set(service("web", backends, node_port=net.node_port))
    first: Proxy = make_proxy(mode)
    first.apply(rules)
    first.close()  # the agent restarts; its kernel rules stay and keep serving
    assert ask(net.node_a, net.node_port) in {"b0", "b1", "b2"}

    second: Proxy = make_proxy(mode)
    assert not second.apply(rules).changed
    second.apply(rule_set(service("web", backends[:1], node_port=net.node_port)))
    second.apply(rule_set(service("web", backends[:1], node_port=net.node_port)))
    assert tally(net.node_a, net.node_port, 20) == {"b0": 20}
    # Chains of the first run's endpoint set are gone once nothing points at them.
    if mode == "nftables":
        # Only this test's table: other suites may run their own proxies meanwhile.
        chains = subprocess.run(
            ["nft", "list", "table", "ip", net.table], capture_output=True, text=True
        ).stdout
        assert chains.count("chain svc_") == 1

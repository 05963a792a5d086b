"""The in-pod forwarder: Service virtual addresses inside network namespaces we create."""

from __future__ import annotations

import socket
import subprocess
from collections import Counter

import pytest
from proxy_testkit import ALL_MODES, ask, in_netns, rule_set, service, tally

from agent.proxy import CommandResult, PodUID, Proxy, run_command
from agent.proxy._podnat import RESERVED_PORTS


@pytest.mark.parametrize("mode", ALL_MODES)
def test_pod_reaches_service_on_its_virtual_address(mode, backends, make_proxy, netns):
    pod_ns = netns()
    proxy: Proxy = make_proxy(mode)
    proxy.apply(rule_set(service("web", backends, port=8080)))
    report = proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}")
    assert report.changed
    assert report.problems == ()
    (rule,) = proxy.rules

    counts = in_netns(pod_ns, lambda: tally(rule.virtual_address, 8080, 90))
    assert counts == {"b0": 30, "b1": 30, "b2": 30}  # round-robin
    assert not proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}").changed


def test_apply_updates_every_attached_pod(backends, make_proxy, netns):
    pods = {PodUID("pod-a"): netns(), PodUID("pod-b"): netns()}
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rule_set(service("web", backends)))
    for uid, name in pods.items():
        proxy.attach_pod(uid, netns_path=f"/run/netns/{name}")
    assert set(proxy.attached_pods()) == set(pods)

    # An endpoint leaves, a Service arrives: both show in every pod on the next connection.
    proxy.apply(rule_set(service("web", backends[:2]), service("api", backends[2:], port=9000)))
    web = proxy.rules.service("default", "web")[0]
    api = proxy.rules.service("default", "api")[0]
    for name in pods.values():
        counts: Counter[str] = in_netns(name, lambda: tally(web.virtual_address, 80, 40))
        assert counts == {"b0": 20, "b1": 20}
        assert in_netns(name, lambda: ask(api.virtual_address, 9000)) == "b2"

    # The Service goes: its listener closes in every pod.
    proxy.apply(rule_set(service("web", backends[:2])))
    for name in pods.values():
        with pytest.raises(OSError):
            in_netns(name, lambda: ask(api.virtual_address, 9000, timeout=2))


def test_detached_pod_has_no_listener_left(backends, make_proxy, netns):
    pod_ns = netns()
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rule_set(service("web", backends)))
    proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}")
    (rule,) = proxy.rules
    assert in_netns(pod_ns, lambda: ask(rule.virtual_address, 80)) in {"b0", "b1", "b2"}

    assert proxy.detach_pod(PodUID("pod-1"))
    assert not proxy.detach_pod(PodUID("pod-1"))
    with pytest.raises(OSError):
        in_netns(pod_ns, lambda: ask(rule.virtual_address, 80, timeout=2))
    assert proxy.attached_pods() == ()


def test_only_attached_pods_get_listeners(backends, make_proxy, netns):
    attached, other = netns(), netns()
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rule_set(service("web", backends, port=7070)))
    proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{attached}")
    (rule,) = proxy.rules
    assert in_netns(attached, lambda: ask(rule.virtual_address, 7070)) in {"b0", "b1", "b2"}
    with pytest.raises(OSError):
        in_netns(other, lambda: ask(rule.virtual_address, 7070, timeout=2))


def _pod_tables(netns: str) -> str:
    listing = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout


def _pod_redirects(netns: str) -> str:
    listing = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "map", "ip", "capstan_pod", "redirects"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout


def test_app_binds_service_port_on_wildcard_and_name_reaches_the_service(
    backends, make_proxy, netns
):
    pod_ns = netns()
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rule_set(service("web", backends, port=8080)))
    assert proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}").problems == ()
    assert "table ip capstan_pod" in _pod_tables(pod_ns)
    (rule,) = proxy.rules

    def app_then_client() -> str:
        # The pod's app, started after the forwarder, binds 0.0.0.0 on the Service's port
        # (this bind failed with EADDRINUSE while the forwarder listened on virtual:8080).
        with socket.create_server(("0.0.0.0", 8080)) as app:
            by_name = ask(rule.virtual_address, 8080)
            with socket.create_connection(("127.0.0.1", 8080), timeout=3):
                app.accept()[0].close()  # the app still gets its own port's connections
            return by_name

    assert in_netns(pod_ns, app_then_client) in {"b0", "b1", "b2"}
    assert f"{rule.virtual_address} . 8080 : {rule.virtual_address} . 61000" in (
        _pod_redirects(pod_ns)
    )

    assert proxy.detach_pod(PodUID("pod-1"))
    assert "capstan_pod" not in _pod_tables(pod_ns)


def test_reserved_port_held_by_the_app_is_skipped(backends, make_proxy, netns):
    pod_ns = netns()
    # An adopted pod: its app already holds the first reserved port on every address.
    app = in_netns(pod_ns, lambda: socket.create_server(("0.0.0.0", RESERVED_PORTS.start)))
    try:
        proxy: Proxy = make_proxy("nftables")
        proxy.apply(rule_set(service("web", backends, port=80)))
        report = proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}")
        assert report.problems == ()
        (rule,) = proxy.rules
        assert in_netns(pod_ns, lambda: ask(rule.virtual_address, 80)) in {"b0", "b1", "b2"}
        assert f"{RESERVED_PORTS.start + 1}" in _pod_redirects(pod_ns)
    finally:
        app.close()


def test_without_nft_in_the_pod_the_service_port_is_served_directly_and_reported(
    backends, make_proxy, netns
):
    def no_pod_nft(argv, *, stdin=None):
        # The process boundary: nft refused in the pod's namespace (no right there).
        if stdin and "capstan_pod" in stdin:
            return CommandResult(1, "", "Error: Operation not permitted")
        return run_command(argv, stdin=stdin)

    pod_ns = netns()
    proxy: Proxy = make_proxy("userspace", runner=no_pod_nft)
    proxy.apply(rule_set(service("web", backends, port=8080)))
    report = proxy.attach_pod(PodUID("pod-1"), netns_path=f"/run/netns/{pod_ns}")
    assert len(report.problems) == 1
    assert "Operation not permitted" in report.problems[0]
    assert "Address already in use" in report.problems[0]
    (rule,) = proxy.rules
    assert in_netns(pod_ns, lambda: ask(rule.virtual_address, 8080)) in {"b0", "b1", "b2"}
    # The limitation stands in every apply's report while the pod is attached.
    assert any("pod-1" in p for p in proxy.apply(proxy.rules).problems)
    assert "capstan_pod" not in _pod_tables(pod_ns)

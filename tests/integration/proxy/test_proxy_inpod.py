"""The in-pod forwarder: Service virtual addresses inside network namespaces we create."""

from __future__ import annotations

from collections import Counter

import pytest
from proxy_testkit import ALL_MODES, ask, in_netns, rule_set, service, tally

from agent.proxy import PodUID, Proxy


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

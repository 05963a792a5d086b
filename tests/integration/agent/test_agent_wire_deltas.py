"""What a large fleet keeps off the wire, on a real ``capstan-agent serve --runtime hollow``.

Status: the first status on a connection reports every pod (``complete``); after that a
status carries only the pods whose report changed, and the uids of pods gone (``removed``),
and the node's status only when more than its heartbeat times changed, so a heartbeat of an
unchanged node is a few bytes. Sync: ``servicesUnchanged`` leaves the
Service rules out, and the agent keeps those of the sync it applied last (and persists the
whole set); an agent with nothing applied refuses such a sync. ``servicesBase`` carries only
the rules changed since the last sync applied on this connection (whole rules, endpoints
added and removed per port, rules gone); the agent merges them, persists the whole set, and
refuses a delta against any other base, naming it, changing nothing.

The hollow runtime keeps containers in memory (agent.runtime.hollow); everything else is the
real agent: socket, protocol, desired-state file, kubelet, prober, proxy in userspace mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from agent_harness import Agent, httpd, make_pod, ready

from agent.state import DesiredStateFile
from schemas.protocol import FEATURE_NODE_UNCHANGED, WIRE_FEATURES, ServiceRule

HOLLOW = ("--runtime", "hollow", "--hollow-start-delay", "0.2", "--proxy-mode", "userspace")


@pytest.fixture
def hollow(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Agent]:
    node_agent = Agent(docker_client, tmp_path)
    node_agent.start(*HOLLOW)
    yield node_agent
    node_agent.close()
    if os.environ.get("CAPSTAN_SHOW_AGENT_LOG"):
        print(node_agent.log())


def _rule(address: str) -> dict[str, Any]:
    return {
        "namespace": "default",
        "name": "web",
        "clusterIP": "10.43.0.10",
        "ports": [{"port": 80, "endpoints": [{"address": address, "port": 32768}]}],
    }


def _statuses(client: Any, after: int = 0) -> list[dict[str, Any]]:
    return [m for m in client.messages[after:] if m["type"] == "status"]


def test_hollow_pods_run_and_heartbeats_carry_only_changes(hollow: Agent) -> None:
    client = hollow.client()
    first = client.wait_message(lambda m: m["type"] == "status")
    # Sent before the client's hello: the older form, which is always complete.
    assert first.get("complete", True) is True
    pods = [make_pod(f"h-{i}", [httpd()]) for i in range(3)]
    client.sync(pods, 1)
    client.wait_pods(lambda s: len(s) == 3 and all(ready(v) for v in s.values()), what="ready")
    assert not hollow.containers()  # hollow: nothing reached Docker

    # Once the pods settle, a status reports no pod at all, and so do the heartbeats after.
    client.wait_message(
        lambda m: m["type"] == "status" and m.get("complete") is False and not m.get("pods"),
        timeout=15,
    )
    mark = len(client.messages)
    client.heartbeats(2)
    quiet = _statuses(client, mark)
    assert quiet
    assert all(s["complete"] is False and not s.get("pods") for s in quiet), json.dumps(quiet)
    # Nor the node's status: it changed only in its heartbeat times.
    assert all("node" not in s for s in quiet), json.dumps(quiet)

    # A pod leaves the set: the next status names it as removed, and only it.
    mark = len(client.messages)
    client.sync(pods[:2], 2)
    gone = client.wait_message(lambda m: m["type"] == "status" and m.get("removed"), after=mark)
    assert gone["removed"] == [pods[2]["metadata"]["uid"]]
    assert set(client.pods()) == {"h-0", "h-1"}


def test_a_peer_without_node_unchanged_gets_the_node_status_in_every_heartbeat(
    hollow: Agent,
) -> None:
    client = hollow.client([f for f in WIRE_FEATURES if f != FEATURE_NODE_UNCHANGED])
    client.wait_message(lambda m: m["type"] == "status" and m.get("complete") is False)
    mark = len(client.messages)
    client.heartbeats(2)
    quiet = _statuses(client, mark)
    assert quiet
    assert all(s["complete"] is False and s["node"]["conditions"] for s in quiet), quiet


def test_a_sync_without_service_rules_keeps_the_applied_ones(hollow: Agent) -> None:
    client = hollow.client()
    first = client.sync([], 1, services=[_rule("127.0.0.2")])
    assert first["applied"] is True
    pod = make_pod("keep", [httpd()])
    second = client.sync([pod], 2, services=[], servicesUnchanged=True)
    assert second["applied"] is True
    # The persisted set is whole: a restarted agent has the rules without being told again.
    saved = DesiredStateFile(hollow.state_dir).load()
    assert saved is not None
    assert saved.generation == 2
    assert [p.metadata.name for p in saved.pods] == ["keep"]
    assert [r.name for r in saved.services] == ["web"]
    assert saved.services[0].ports[0].endpoints[0].address == "127.0.0.2"
    assert saved.services_unchanged is False
    # New rules replace them as before.
    client.sync([pod], 3, services=[_rule("127.0.0.3")])
    saved = DesiredStateFile(hollow.state_dir).load()
    assert saved is not None
    assert saved.services[0].ports[0].endpoints[0].address == "127.0.0.3"


@pytest.mark.parametrize("kept", ["servicesUnchanged", "podsUnchanged"])
def test_a_fresh_agent_refuses_a_sync_that_keeps_what_it_never_had(
    hollow: Agent, kept: str
) -> None:
    client = hollow.client()
    answer = client.sync([], 1, services=[], **{kept: True})
    assert answer["applied"] is False
    assert kept in answer["message"]
    assert DesiredStateFile(hollow.state_dir).load() is None


def test_a_sync_without_pods_keeps_the_applied_pods_running(hollow: Agent) -> None:
    client = hollow.client()
    pods = [make_pod(f"k-{i}", [httpd()]) for i in range(2)]
    assert client.sync(pods, 1, services=[_rule("127.0.0.2")])["applied"] is True
    client.wait_pods(lambda s: len(s) == 2 and all(ready(v) for v in s.values()), what="ready")
    # Endpoint churn elsewhere: only the rules travel, the node keeps its pods.
    answer = client.sync([], 2, services=[_rule("127.0.0.3")], podsUnchanged=True)
    assert answer["applied"] is True
    saved = DesiredStateFile(hollow.state_dir).load()
    assert saved is not None
    assert saved.generation == 2
    assert [p.metadata.name for p in saved.pods] == ["k-0", "k-1"]
    assert saved.services[0].ports[0].endpoints[0].address == "127.0.0.3"
    assert saved.pods_unchanged is False
    # The status that follows the sync still reports both pods running.
    mark = len(client.messages)
    client.heartbeats(1)
    assert set(client.pods()) == {"k-0", "k-1"}
    assert all(ready(v) for v in client.pods().values()), client.messages[mark:]


def test_a_resent_pod_keeps_its_report_and_a_changed_one_is_reported_again(
    hollow: Agent,
) -> None:
    client = hollow.client()
    pod = make_pod("same", [httpd()])
    assert client.sync([pod], 1, services=[_rule("127.0.0.2")])["applied"] is True
    client.wait_pods(lambda s: ready(s.get("same")), what="ready")
    client.wait_message(
        lambda m: m["type"] == "status" and m.get("complete") is False and not m.get("pods"),
        timeout=15,
    )
    # The same pod again, with other rules: nothing about the pod changed, nor its report.
    mark = len(client.messages)
    assert client.sync([pod], 2, services=[_rule("127.0.0.3")])["applied"] is True
    client.heartbeats(1)
    resent = _statuses(client, mark)
    assert not any(s.get("pods") for s in resent), json.dumps(resent)
    # The same uid with a spec this node refuses: its status is computed anew.
    refused = {**pod, "spec": {**pod["spec"], "hostNetwork": True}}
    assert client.sync([refused], 3)["applied"] is True
    client.wait_pods(lambda s: s["same"].get("reason") == "Refused", what="refused")
    assert not ready(client.pods()["same"])


def _rules(*rules: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [
        {
            "namespace": "default",
            "name": name,
            "ports": [
                {
                    "port": 80,
                    "endpoints": [{"address": a, "port": 32768} for a in sorted(addresses)],
                }
            ],
        }
        for name, addresses in rules
    ]


def _saved_rules(hollow: Agent) -> list[dict[str, Any]]:
    saved = DesiredStateFile(hollow.state_dir).load()
    assert saved is not None
    return [r.model_dump(by_alias=True, exclude_none=True) for r in saved.services]


def test_a_rules_delta_is_merged_into_the_applied_rules_and_persisted_whole(
    hollow: Agent,
) -> None:
    client = hollow.client()
    base = _rules(("api", ["127.0.0.2", "127.0.0.3"]), ("old", ["127.0.0.2"]), ("web", []))
    assert client.sync([], 1, services=base)["applied"] is True
    answer = client.sync(
        [],
        2,
        servicesBase=1,
        services=_rules(("new", ["127.0.0.5"])),
        servicesChanged=[
            {
                "namespace": "default",
                "name": "api",
                "ports": [
                    {
                        "port": 80,
                        "added": [{"address": "127.0.0.4", "port": 32768}],
                        "removed": [{"address": "127.0.0.2", "port": 32768}],
                    }
                ],
            }
        ],
        servicesRemoved=[{"namespace": "default", "name": "old"}],
    )
    assert answer["applied"] is True, answer
    whole = _rules(("api", ["127.0.0.3", "127.0.0.4"]), ("new", ["127.0.0.5"]), ("web", []))
    assert _saved_rules(hollow) == [
        ServiceRule.model_validate(rule).model_dump(by_alias=True, exclude_none=True)
        for rule in whole
    ]
    saved = DesiredStateFile(hollow.state_dir).load()
    assert saved is not None
    assert saved.services_base is None
    assert not saved.services_changed
    assert not saved.services_removed
    # The next delta is against the merged set.
    answer = client.sync(
        [], 3, servicesBase=2, servicesRemoved=[{"namespace": "default", "name": "new"}]
    )
    assert answer["applied"] is True, answer
    assert [r["name"] for r in _saved_rules(hollow)] == ["api", "web"]
    assert "rules delta against 2 merged" in hollow.log()


@pytest.mark.parametrize(
    ("delta", "why"),
    [
        ({"servicesBase": 5}, "servicesBase 5 but the last applied generation is 1"),
        (
            {"servicesBase": 1, "servicesRemoved": [{"namespace": "default", "name": "gone"}]},
            "servicesRemoved: Service default/gone is not in the base",
        ),
    ],
)
def test_a_delta_against_a_base_the_agent_lacks_is_refused_and_changes_nothing(
    hollow: Agent, delta: dict[str, Any], why: str
) -> None:
    client = hollow.client()
    assert client.sync([], 1, services=_rules(("api", ["127.0.0.2"])))["applied"] is True
    before = _saved_rules(hollow)
    answer = client.sync([], 2, **delta)
    assert answer["applied"] is False
    assert why in answer["message"], answer
    assert "send the whole set" in answer["message"]
    assert _saved_rules(hollow) == before
    # The whole set, as the control plane answers a refusal, is taken.
    assert client.sync([], 2, services=_rules(("api", ["127.0.0.9"])))["applied"] is True
    assert _saved_rules(hollow)[0]["ports"][0]["endpoints"] == [
        {"address": "127.0.0.9", "port": 32768}
    ]


def test_a_new_connection_starts_from_the_whole_rules(hollow: Agent) -> None:
    first = hollow.client()
    assert first.sync([], 1, services=_rules(("api", ["127.0.0.2"])))["applied"] is True
    first.close()
    # Reconnected: the applied set came on another connection, so it is no base.
    second = hollow.client()
    answer = second.sync(
        [], 2, servicesBase=1, servicesRemoved=[{"namespace": "default", "name": "api"}]
    )
    assert answer["applied"] is False
    assert "applied on another connection" in answer["message"], answer
    assert [r["name"] for r in _saved_rules(hollow)] == ["api"]
    # After a whole set on this connection, deltas against it are taken.
    assert second.sync([], 2, services=_rules(("api", ["127.0.0.2"])))["applied"] is True
    answer = second.sync(
        [], 3, servicesBase=2, servicesRemoved=[{"namespace": "default", "name": "api"}]
    )
    assert answer["applied"] is True, answer
    assert _saved_rules(hollow) == []

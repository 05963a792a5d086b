"""A real agent refuses a hostile sync whole: an error naming the field, nothing changed.

A newline in a Service name used to become a line of the iptables-restore script, and
``metadata.uid`` a directory under the state dir; both now fail the wire's validation (the
API's name, uid, port and address rules) before the agent acts on anything.
"""

from __future__ import annotations

from agent_harness import httpd, make_pod, ready

from agent.state import DesiredStateFile


def service(**fields: object) -> dict[str, object]:
    return {
        "namespace": "default",
        "name": "web",
        "ports": [{"port": 80, "endpoints": [{"address": "127.0.0.2", "port": 32768}]}],
        **fields,
    }


def test_hostile_identifiers_on_the_wire_change_nothing(agent):
    client = agent.client()
    steady = make_pod("steady", [httpd()])
    client.sync([steady], 1, services=[service()])
    client.wait_pods(lambda s: ready(s.get("steady")), what="steady ready")
    desired = (agent.state_dir / "desired.json").read_bytes()
    before = agent.container_ids()
    outside = agent.state_dir.parent / "escaped"

    escaping = {**steady, "metadata": {**steady["metadata"], "uid": "../../escaped"}}
    hostile = [
        (
            {"pods": [steady], "services": [service(name="web\n-A INPUT -j ACCEPT")]},
            "services.0.name",
        ),
        ({"pods": [steady], "services": [service(namespace="default\n")]}, "services.0.namespace"),
        ({"pods": [steady, escaping]}, "pods.1.metadata.uid"),
    ]
    for fields, where in hostile:
        mark = len(client.messages)
        client.send({"v": 1, "type": "sync", "id": where, "generation": 2, **fields})
        error = client.wait_message(lambda m: m.get("inReplyTo") == where, after=mark)
        assert error["type"] == "error"
        assert error["code"] == "invalid"
        assert f"{where}: " in error["message"]

    assert (agent.state_dir / "desired.json").read_bytes() == desired
    assert not outside.exists()
    # The connection still works: the same generation again is a no-op. (desired.json is
    # sealed with the node's data key: read it as the agent does.)
    kept = DesiredStateFile(agent.state_dir).load()
    assert kept is not None
    ack = client.sync([pod.to_dict() for pod in kept.pods], 1, services=[service()])
    assert ack["applied"] is True
    client.heartbeats(2)
    assert agent.container_ids() == before
    assert ready(client.pods()["steady"])

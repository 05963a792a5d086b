"""Pods converge on a real Docker Engine: from empty, shared network and volume, image change."""

from __future__ import annotations

import json
import random
import subprocess
import urllib.request

from agent_harness import AGENT, BUSYBOX, BUSYBOX_V2, host_port, httpd, make_pod, ready

from tests.fixtures.waiting import wait_until


def get(address: tuple[str, int], path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=3) as reply:
        return reply.read().decode()


def test_converge_from_empty_and_resync_is_a_no_op(agent):
    client = agent.client()
    pods = [make_pod(f"web-{i}", [httpd()]) for i in range(3)]
    fixed = random.randint(20000, 29999)
    pods[0]["spec"]["containers"][0]["ports"][0]["hostPort"] = fixed
    ack = client.sync(pods, 1)
    assert ack["type"] == "ack"
    assert ack["applied"] is True
    statuses = client.wait_pods(
        lambda s: len(s) == 3 and all(ready(v) for v in s.values()) and s, what="3 ready pods"
    )
    for status in statuses.values():
        ip, port = host_port(status, 8080)
        assert ip == agent.bind
        assert "capstan" in get((ip, port))
    assert host_port(statuses["web-0"], 8080) == (agent.bind, fixed)
    before = agent.container_ids()
    assert len(before) == 6  # a sandbox and an app container per pod
    ack = client.sync(pods, 1)
    assert ack["applied"] is True
    client.heartbeats(2)
    assert agent.container_ids() == before


def test_two_containers_share_localhost_and_an_empty_dir(agent):
    client = agent.client()
    pod = make_pod(
        "pair",
        [
            httpd(
                "server",
                root="/shared",
                command=[
                    "sh",
                    "-c",
                    "echo from-server > /shared/a.txt; exec httpd -f -p 8080 -h /shared",
                ],
                volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
            ),
            {
                "name": "fetcher",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "until wget -qO /shared/b.tmp http://127.0.0.1:8080/a.txt; "
                    "do sleep 0.2; done; mv /shared/b.tmp /shared/b.txt; exec sleep 3600",
                ],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            },
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    client.sync([pod], 1)
    status = client.wait_pods(lambda s: ready(s.get("pair")) and s["pair"], what="pair ready")
    address = host_port(status, 8080)
    # The fetcher reached the server on localhost and wrote into the volume the server serves.
    fetched = wait_until(lambda: _try_get(address, "/b.txt"), timeout=15, what="b.txt")
    assert fetched == "from-server\n"
    assert (agent.volume(pod, "shared") / "b.txt").read_text() == "from-server\n"


def _try_get(address, path):
    try:
        return get(address, path)
    except OSError:
        return None


def test_image_change_replaces_only_that_pod(agent, docker_client):
    client = agent.client()
    keep = make_pod("keep", [httpd()])
    change = make_pod("change", [httpd()])
    client.sync([keep, change], 1)
    client.wait_pods(lambda s: ready(s.get("keep")) and ready(s.get("change")), what="both ready")
    before = agent.container_ids()
    change["spec"]["containers"][0]["image"] = BUSYBOX_V2
    client.sync([keep, change], 2)

    def replaced():
        status = client.pods().get("change")
        return (
            ready(status)
            and status["containerStatuses"][0]["image"] == BUSYBOX_V2
            and status["containerStatuses"][0]["restartCount"] == 1
            and status["containerStatuses"][0]["containerID"].removeprefix("docker://")
            not in before.values()
        )

    wait_until(replaced, timeout=30, what="the changed pod to run the new image")
    after = agent.container_ids()
    assert {n: i for n, i in after.items() if "_keep_" in n} == {
        n: i for n, i in before.items() if "_keep_" in n
    }
    # The changed pod kept its sandbox (and so its address); only the app container is new.
    sandbox = [n for n in before if "_change_" in n and n.endswith("_POD_0")]
    assert sandbox
    assert after[sandbox[0]] == before[sandbox[0]]
    images = {c["name"]: c["image"] for c in agent.containers() if "_change_" in c["name"]}
    assert BUSYBOX_V2 in images.values()


def test_piping_a_sync_into_connect_starts_pods_and_again_changes_nothing(agent):
    pods = [make_pod(f"piped-{i}", [httpd()]) for i in range(2)]
    line = json.dumps({"v": 1, "type": "sync", "id": "p1", "generation": 1, "pods": pods}) + "\n"

    def pipe() -> list[dict]:
        done = subprocess.run(
            [str(AGENT), "connect", "--socket", str(agent.socket)],
            input=line.encode(),
            capture_output=True,
            timeout=30,
            check=True,
        )
        return [json.loads(x) for x in done.stdout.splitlines()]

    replies = pipe()
    assert replies[0]["type"] == "hello"
    assert replies[0]["nodeName"] == agent.node
    assert any(r["type"] == "ack" and r["applied"] for r in replies)
    client = agent.client()
    client.wait_pods(
        lambda s: len(s) == 2 and all(ready(v) for v in s.values()), what="piped pods ready"
    )
    before = agent.container_ids()
    starts = agent.log().count("agent.kubelet.executor: start")
    replies = pipe()
    assert any(r["type"] == "ack" and r["applied"] for r in replies)
    client.heartbeats(2)
    assert agent.container_ids() == before
    assert agent.log().count("agent.kubelet.executor: start") == starts


def test_a_projected_volume_alone_follows_its_configmap(agent):
    client = agent.client()
    pod = make_pod(
        "projected",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "volumeMounts": [{"name": "proj", "mountPath": "/proj"}],
            }
        ],
        volumes=[{"name": "proj", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}}],
    )

    def config_maps(greeting):
        return [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "default"},
                "data": {"greeting": greeting},
            }
        ]

    client.sync([pod], 1, configMaps=config_maps("hello"))
    client.wait_pods(lambda s: ready(s.get("projected")), what="projected ready")
    greeting = agent.volume(pod, "proj") / "greeting"
    assert greeting.read_text() == "hello"
    before = agent.container_ids()
    client.sync([pod], 2, configMaps=config_maps("bonjour"))
    wait_until(lambda: greeting.read_text() == "bonjour", timeout=10, what="the updated file")
    assert agent.container_ids() == before


def test_configmap_and_secret_reach_env_and_read_only_files(agent):
    client = agent.client()
    script = (
        'echo "$GREETING $PASSWORD" > /data/env; '
        "touch /cfg/new 2>/dev/null && echo writable > /data/ro "
        "|| echo read-only > /data/ro; exec sleep 3600"
    )
    pod = make_pod(
        "configured",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "env": [
                    {
                        "name": "GREETING",
                        "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                    },
                    {
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                    },
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/cfg"},
                    {"name": "creds", "mountPath": "/creds"},
                    {"name": "proj", "mountPath": "/proj"},
                ],
            }
        ],
        volumes=[
            {"name": "data", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "proj", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}},
        ],
    )

    def objects(greeting):
        return {
            "configMaps": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "cfg", "namespace": "default"},
                    "data": {"greeting": greeting, "app.conf": "level=debug\n"},
                }
            ],
            "secrets": [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "creds", "namespace": "default"},
                    "stringData": {"password": "s3cret"},
                }
            ],
        }

    client.sync([pod], 1, **objects("hello"))
    client.wait_pods(lambda s: ready(s.get("configured")), what="configured ready")
    data = agent.volume(pod, "data")
    wait_until(lambda: (data / "ro").exists(), timeout=10, what="the container's report")
    assert (data / "env").read_text() == "hello s3cret\n"
    assert (data / "ro").read_text() == "read-only\n"
    secret_file = agent.volume(pod, "creds") / "password"
    assert secret_file.read_text() == "s3cret"
    assert secret_file.stat().st_mode & 0o777 == 0o400
    assert (agent.volume(pod, "cfg") / "app.conf").read_text() == "level=debug\n"
    # A changed ConfigMap updates the mounted file without restarting the container.
    before = agent.container_ids()
    client.sync([pod], 2, **objects("bonjour"))
    greeting = agent.volume(pod, "cfg") / "greeting"
    wait_until(lambda: greeting.read_text() == "bonjour", timeout=10, what="the updated file")
    # A projected volume's ConfigMap files follow the ConfigMap too, as in Kubernetes.
    projected = agent.volume(pod, "proj") / "greeting"
    wait_until(
        lambda: projected.read_text() == "bonjour", timeout=10, what="the updated projected file"
    )
    assert agent.container_ids() == before
    assert "s3cret" not in agent.log()

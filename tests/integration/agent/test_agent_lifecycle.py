"""The daemon's life: restarts, orphans, bad input, logs, refusals."""

from __future__ import annotations

import json
import signal
import stat
import subprocess

from agent_harness import AGENT, BUSYBOX, LABEL, httpd, make_pod, ready

from agent.state import DesiredStateFile
from tests.fixtures.waiting import wait_until


def test_agent_killed_and_restarted_adopts_its_containers(agent):
    client = agent.client()
    pods = [make_pod(f"adopt-{i}", [httpd()]) for i in range(2)]
    client.sync(pods, 5)
    client.wait_pods(lambda s: len(s) == 2 and all(ready(v) for v in s.values()), what="ready")
    before = agent.container_ids()
    agent.kill(signal.SIGKILL)
    # The pods keep running with no agent at all.
    assert all(c["state"] == "running" for c in agent.containers())
    agent.start()
    client = agent.client()
    hello_status = client.wait_message(lambda m: m["type"] == "status" and m.get("pods"))
    assert hello_status["generation"] == 5  # resumed from disk
    statuses = client.wait_pods(
        lambda s: len(s) == 2 and all(ready(v) for v in s.values()) and s,
        what="ready after restart",
    )
    assert all(s["containerStatuses"][0]["restartCount"] == 0 for s in statuses.values())
    client.heartbeats(2)
    assert agent.container_ids() == before


def test_orphans_are_removed_and_foreign_containers_left_alone(agent, docker_client):
    client = agent.client()
    client.sync([make_pod("kept", [httpd()])], 1)
    client.wait_pods(lambda s: ready(s.get("kept")), what="kept ready")
    kept = agent.container_ids()
    # While the agent is down, an orphan of this node (a pod it no longer wants) and two
    # foreign containers appear; the restarted agent must sort them out.
    agent.kill(signal.SIGKILL)
    sleep = ["sleep", "3600"]
    foreign = []
    try:
        orphan = docker_client.containers.run(
            BUSYBOX,
            sleep,
            detach=True,
            labels={
                LABEL: agent.node,
                "io.capstan.pod-uid": "ghost",
                "io.capstan.container": "app",
                "io.capstan.grace-seconds": "1",
            },
        )
        foreign.append(
            docker_client.containers.run(
                BUSYBOX,
                sleep,
                detach=True,
                labels={LABEL: agent.node + "-other", "io.capstan.pod-uid": "ghost"},
            )
        )
        foreign.append(docker_client.containers.run(BUSYBOX, sleep, detach=True))
        agent.start()
        client = agent.client()

        def orphan_gone():
            return not docker_client.api.containers(all=True, filters={"id": orphan.id})

        wait_until(orphan_gone, timeout=20, what="the orphan to be removed")
        client.heartbeats(2)
        for container in foreign:
            container.reload()
            assert container.status == "running"
        client.wait_pods(lambda s: ready(s.get("kept")), what="kept adopted")
        assert agent.container_ids() == kept
    finally:
        for container in foreign:
            container.remove(force=True)


def test_malformed_input_gets_errors_and_changes_nothing(agent):
    client = agent.client()
    client.sync([make_pod("steady", [httpd()])], 3)
    client.wait_pods(lambda s: ready(s.get("steady")), what="steady ready")
    desired = (agent.state_dir / "desired.json").read_bytes()
    before = agent.container_ids()
    mark = len(client.messages)
    bad = [
        b"this is not json\n",
        b'{"v": 1, "type": "explode"}\n',
        b'{"v": 9, "type": "sync", "generation": 99, "pods": []}\n',
        b'{"v": 1, "type": "sync", "generation": 99, "pods": [{"kind": "Pod"}]}\n',
        b'{"v": 1, "type": "status", "nodeName": "x", "node": {}}\n',
        b"x" * (17 * 1024 * 1024) + b"\n",
    ]
    for line in bad:
        client.send(line)
    codes = []
    for _ in bad:
        error = client.wait_message(lambda m: m["type"] == "error", after=mark, timeout=30)
        mark = client.messages.index(error) + 1
        codes.append(error["code"])
    assert codes == [
        "malformed",
        "unknown_type",
        "unsupported_version",
        "invalid",
        "unexpected",
        "too_large",
    ]
    # A lower generation is acknowledged but ignored, and says so.
    ack = client.sync([], 2)
    assert ack["applied"] is False
    assert "older" in ack["message"]
    assert (agent.state_dir / "desired.json").read_bytes() == desired
    # The connection still works, and nothing changed.
    kept = DesiredStateFile(agent.state_dir).load()
    assert kept is not None
    ack = client.sync([pod.to_dict() for pod in kept.pods], 3)
    assert ack["applied"] is True
    client.heartbeats(2)
    assert agent.container_ids() == before
    assert ready(client.pods()["steady"])


def test_socket_is_private_and_logs_go_through_the_protocol(agent):
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
    client = agent.client()
    watcher = agent.client()
    pod = make_pod(
        "talker",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "for i in 1 2 3; do echo line $i; done; exec sleep 3600"],
            }
        ],
    )
    client.sync([pod], 1)
    client.wait_pods(lambda s: ready(s.get("talker")), what="talker ready")

    def logs(*args):
        return subprocess.run(
            [str(AGENT), "logs", "--socket", str(agent.socket), *args],
            capture_output=True,
            text=True,
            timeout=20,
        )

    wait_until(lambda: "line 3" in logs("talker").stdout, timeout=10, what="the log lines")
    assert logs("talker", "app", "--tail", "1").stdout == "line 3\n"
    missing = logs("nobody")
    assert missing.returncode == 1
    assert "no containers" in missing.stderr
    # Status reaches every client, on change and as a heartbeat (1 s here) when idle.
    assert ready(watcher.pods().get("talker"))
    mark = len(watcher.messages)
    first = watcher.wait_message(lambda m: m["type"] == "status", after=mark, timeout=3)
    watcher.wait_message(lambda m: m["type"] == "status" and m is not first, after=mark, timeout=3)


def test_refusals_and_image_errors_are_reported(agent):
    client = agent.client()
    client.sync(
        [
            make_pod("hostnet", [httpd()], hostNetwork=True),
            make_pod(
                "noimage",
                [{"name": "app", "image": "capstan.local/absent:1", "imagePullPolicy": "Never"}],
            ),
            make_pod(
                "nocfg",
                [
                    {
                        "name": "app",
                        "image": BUSYBOX,
                        "env": [
                            {
                                "name": "X",
                                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}},
                            }
                        ],
                    }
                ],
            ),
            make_pod("nocmd", [{"name": "app", "image": BUSYBOX, "command": ["/no/such/binary"]}]),
            # A registry on a closed loopback port: the pull fails fast, with Docker's message.
            make_pod("nopull", [{"name": "app", "image": "127.0.0.1:9/capstan/absent:1"}]),
        ],
        1,
    )

    def reason(status):
        return status["containerStatuses"][0]["state"].get("waiting", {}).get("reason")

    statuses = client.wait_pods(
        lambda s: (
            len(s) == 5
            and reason(s["noimage"]) == "ErrImageNeverPull"
            and reason(s["nopull"]) in ("ErrImagePull", "ImagePullBackOff")
            and reason(s["nocfg"]) == "CreateContainerConfigError"
            and reason(s["nocmd"]) == "CrashLoopBackOff"
            and s
        ),
        what="waiting reasons",
    )
    assert statuses["hostnet"]["phase"] == "Failed"
    assert "--allow-host-network" in statuses["hostnet"]["message"]
    waiting = statuses["noimage"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImageNeverPull"
    assert "capstan.local/absent:1" in waiting["message"]
    waiting = statuses["nocfg"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "absent" in waiting["message"]
    assert not [c for c in agent.containers() if "_hostnet_" in c["name"]]
    waiting = statuses["nopull"]["containerStatuses"][0]["state"]["waiting"]
    assert "127.0.0.1:9" in waiting["message"]
    assert "refused" in waiting["message"]
    client.wait_pods(
        lambda s: reason(s["nopull"]) == "ImagePullBackOff",
        timeout=15,
        what="ImagePullBackOff after repeated failures",
    )
    # The failed exec is reported as a non-zero exit and backed off. The code depends on who
    # saw the failure first (the init in the container: 127; the runtime: 128).
    terminated = statuses["nocmd"]["containerStatuses"][0]["lastState"]["terminated"]
    assert terminated["exitCode"] in (127, 128)


def test_connect_exits_when_the_agent_goes_away(agent):
    bridge = subprocess.Popen(
        [str(AGENT), "connect", "--socket", str(agent.socket)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        hello = json.loads(bridge.stdout.readline())
        assert hello["type"] == "hello"
        assert hello["nodeName"] == agent.node
        agent.kill(signal.SIGTERM)
        # stdin is still open: the bridge ends because the agent side closed.
        assert bridge.wait(timeout=10) == 0
    finally:
        bridge.kill()
        bridge.wait()
        bridge.stdin.close()
        bridge.stdout.close()


def test_logs_follow_streams_new_lines(agent):
    client = agent.client()
    ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    client.sync(
        [make_pod("ticker", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", ticker]}])],
        1,
    )
    client.wait_pods(lambda s: ready(s.get("ticker")), what="ticker ready")
    follow = subprocess.Popen(
        [str(AGENT), "logs", "--socket", str(agent.socket), "ticker", "--tail", "1", "-f"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = int(follow.stdout.readline().split()[1])
        # Lines written after the request arrive while it stays open.
        later = [int(follow.stdout.readline().split()[1]) for _ in range(5)]
        assert later == list(range(first + 1, first + 6))
        assert follow.poll() is None
    finally:
        follow.kill()
        follow.wait()
        follow.stdout.close()
    client.heartbeats(1)  # the agent lives on after the follower went away


def test_a_sync_from_an_older_leader_term_is_refused_even_after_a_restart(agent):
    client = agent.client()
    new_leader = [make_pod("term-new", [httpd()])]
    assert client.sync(new_leader, 10, term=7)["applied"] is True
    client.wait_pods(lambda s: "term-new" in s and ready(s["term-new"]), what="new term's pod")
    # A deposed leader woken from a pause: a higher generation but an older term.
    stale = client.sync([make_pod("term-old", [httpd()])], 99, term=6)
    assert stale["applied"] is False
    assert "term 6 is older" in stale["message"]
    # A newer term is taken even with a lower generation (a fresh leader's counter).
    newer = [make_pod("term-newer", [httpd()])]
    assert client.sync(newer, 3, term=8)["applied"] is True
    agent.kill(signal.SIGKILL)
    agent.start()
    client = agent.client()
    # The term is persisted with the desired set: a restart does not forget it.
    again = client.sync([make_pod("term-old", [httpd()])], 100, term=7)
    assert again["applied"] is False
    statuses = client.wait_pods(
        lambda s: set(s) == {"term-newer"} and ready(s["term-newer"]) and s,
        what="only the newest term's pod",
    )
    assert set(statuses) == {"term-newer"}
    client.sync([], 101, term=8)
    client.wait_pods(lambda s: not s, what="pods removed")

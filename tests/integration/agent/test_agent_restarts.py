"""Restarts and probes: crash-loop back-off, readiness, liveness, graceful stop."""

from __future__ import annotations

import itertools
import re
import signal
import time

from agent_harness import BUSYBOX, BUSYBOX_V2, httpd, make_pod, ready

from tests.fixtures.waiting import wait_until


def container(status, name=None):
    statuses = status["containerStatuses"]
    return statuses[0] if name is None else next(c for c in statuses if c["name"] == name)


def test_crash_loop_backs_off_more_and_more(agent):
    client = agent.client()
    pod = make_pod(
        "crasher",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "cut -d' ' -f1 /proc/uptime >> /data/starts; exit 3"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    client.sync([pod], 1)
    starts = agent.volume(pod, "data") / "starts"

    def started(n):
        return starts.exists() and len(starts.read_text().split()) >= n

    # As in Kubernetes the first crash is restarted at once, then back-off 0.5 s doubling:
    # starts at about 0, 0, 0.5, 1.5, 3.5 s.
    wait_until(lambda: started(5), timeout=30, what="5 starts")
    times = [float(t) for t in starts.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each wait is at least its back-off (0.5, 1, 2 s); load can only make it longer.
    assert gaps[1] >= 0.5, gaps
    assert gaps[2] >= 1.0, gaps
    assert gaps[3] >= 2.0, gaps
    status = client.wait_pods(
        lambda s: (
            s.get("crasher", {})
            .get("containerStatuses", [{}])[0]
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            == "CrashLoopBackOff"
            and s["crasher"]
        ),
        what="CrashLoopBackOff",
    )
    app = container(status)
    assert app["restartCount"] >= 3
    assert app["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in app["state"]["waiting"]["message"]
    # The status announced growing back-offs, in order. (On a very busy machine a short
    # back-off can expire before a pass sees the exit; then that one is not announced.)
    announced = []
    for message in list(client.messages):
        for report in message.get("pods", []) if message["type"] == "status" else []:
            waiting = report["status"]["containerStatuses"][0]["state"].get("waiting", {})
            found = re.search(r"back-off ([0-9.]+)s", waiting.get("message", ""))
            if found and (not announced or announced[-1] != float(found[1])):
                announced.append(float(found[1]))
    assert len(announced) >= 2, announced
    assert announced == sorted(set(announced)), announced
    assert set(announced) <= {0.5, 1.0, 2.0, 4.0}, announced


def test_readiness_flips_with_the_probe(agent):
    client = agent.client()
    # Three probe kinds: httpGet and exec readiness, tcpSocket liveness (on the other
    # container's port: the pod shares one network namespace).
    pod = make_pod(
        "flip",
        [
            httpd(
                root="/srv",
                # -v: one log line per request, so the test counts the probes made.
                command=["httpd", "-f", "-v", "-p", "8080", "-h", "/srv"],
                volumeMounts=[{"name": "srv", "mountPath": "/srv"}],
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": 8080},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            ),
            {
                "name": "checker",
                "image": BUSYBOX,
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "srv", "mountPath": "/srv"}],
                "readinessProbe": {
                    # Each run leaves a line in /srv/probes: the test counts them.
                    "exec": {"command": ["sh", "-c", "echo >> /srv/probes; test -f /srv/ready"]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
                "livenessProbe": {
                    "tcpSocket": {"port": 8080},
                    "periodSeconds": 1,
                    "timeoutSeconds": 5,
                },
            },
        ],
        volumes=[{"name": "srv", "emptyDir": {}}],
    )
    client.sync([pod], 1)
    client.wait_pods(lambda s: s.get("flip", {}).get("phase") == "Running", what="running")
    probes = agent.volume(pod, "srv") / "probes"
    # Two failed runs of each probe, then a status sent after them: still not ready.
    wait_until(
        lambda: (
            probes.exists()
            and len(probes.read_text().splitlines()) >= 2
            and agent.container_log("flip", "web").count("response:404") >= 2
        ),
        timeout=20,
        what="two failing runs of each readiness probe",
    )
    client.heartbeats(1)
    assert not ready(client.pods()["flip"])
    flag = agent.volume(pod, "srv") / "ready"
    flag.write_text("ok")
    status = client.wait_pods(
        lambda s: ready(s.get("flip")) and s["flip"], timeout=10, what="ready"
    )
    assert all(c["ready"] for c in status["containerStatuses"])
    flag.unlink()
    status = client.wait_pods(
        lambda s: not any(c["ready"] for c in s["flip"]["containerStatuses"]) and s["flip"],
        timeout=10,
        what="both containers not ready again",
    )
    assert not ready(status)
    assert [c["restartCount"] for c in status["containerStatuses"]] == [0, 0]


def test_liveness_failure_restarts_the_container(agent):
    client = agent.client()
    pod = make_pod(
        "live",
        [
            httpd(
                root="/srv",
                # -v: one log line per request, so the test counts the probes made.
                command=["sh", "-c", "echo ok > /srv/healthz; exec httpd -f -v -p 8080 -h /srv"],
                volumeMounts=[{"name": "srv", "mountPath": "/srv"}],
                # A generous timeout: CI machines are busy, and a slow answer is not a dead server.
                livenessProbe={
                    "httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                    "timeoutSeconds": 5,
                },
            )
        ],
        volumes=[{"name": "srv", "emptyDir": {}}],
    )
    client.sync([pod], 1)
    client.wait_pods(lambda s: ready(s.get("live")), what="live ready")
    health = agent.volume(pod, "live" and "srv") / "healthz"
    wait_until(health.exists, timeout=5, what="healthz written")
    # More passing probes than failureThreshold, then a status sent after them.
    wait_until(
        lambda: agent.container_log("live", "web").count("response:200") >= 3,
        timeout=20,
        what="three passing liveness probes",
    )
    client.heartbeats(1)
    assert container(client.pods()["live"])["restartCount"] == 0  # healthy: left alone
    health.unlink()
    status = client.wait_pods(
        lambda s: ready(s.get("live")) and container(s["live"])["restartCount"] == 1 and s["live"],
        timeout=20,
        what="a restart after liveness failure",
    )
    assert container(status)["lastState"]["terminated"]["exitCode"] in (137, 143)
    assert health.exists()  # the new container wrote it again


def test_graceful_stop_is_observed_by_the_container(agent):
    client = agent.client()
    trap = (
        'trap \'cut -d" " -f1 /proc/uptime > /data/term-at; sleep 1; '
        "echo got SIGTERM > /data/term; exit 0' TERM; while true; do sleep 0.1; done"
    )
    pre_stop = "sleep 0.5; cut -d' ' -f1 /proc/uptime > /data/pre-stop-at"
    pod = make_pod(
        "graceful",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", trap],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", pre_stop]}}},
            }
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    client.sync([pod], 1)
    client.wait_pods(lambda s: ready(s.get("graceful")), what="graceful ready")
    # Replacing the container (new image) stops the old one while the pod and its emptyDir stay.
    pod["spec"]["containers"][0]["image"] = BUSYBOX_V2
    started = time.monotonic()
    client.sync([pod], 2)
    term = agent.volume(pod, "data") / "term"
    wait_until(term.exists, timeout=15, what="the container's SIGTERM note")
    assert term.read_text() == "got SIGTERM\n"
    # The preStop hook ran to its end before SIGTERM was sent.
    data = agent.volume(pod, "data")
    assert float((data / "pre-stop-at").read_text()) <= float((data / "term-at").read_text())
    # The handler took a second: SIGKILL did not cut the grace period short.
    assert time.monotonic() - started >= 1.0
    status = client.wait_pods(
        lambda s: (
            ready(s.get("graceful"))
            and container(s["graceful"])["restartCount"] == 1
            and s["graceful"]
        ),
        what="replacement running",
    )
    assert container(status)["lastState"]["terminated"]["exitCode"] == 0


def test_container_removed_from_under_the_agent_counts_as_a_restart(agent, docker_client):
    client = agent.client()
    pod = make_pod("removed", [httpd()])
    client.sync([pod], 1)
    client.wait_pods(lambda s: ready(s.get("removed")), what="ready")

    def app_container():
        [(name, ident)] = [
            (n, i) for n, i in agent.container_ids().items() if "_removed_" in n and "_web_" in n
        ]
        return name, ident

    def restarted(count):
        def check(statuses):
            status = statuses.get("removed")
            if not ready(status) or container(status)["restartCount"] != count:
                return None
            return status

        return check

    name, ident = app_container()
    assert name.endswith("_web_0")
    docker_client.api.remove_container(ident, force=True)
    status = client.wait_pods(restarted(1), what="restart 1 reported")
    last = container(status)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("ContainerStatusUnknown", 137)
    assert last["containerID"] == f"docker://{ident}"
    assert app_container()[0].endswith("_web_1")

    # Removed again while the agent is down: the count survives the agent's restart.
    agent.kill(signal.SIGKILL)
    _name, ident = app_container()
    docker_client.api.remove_container(ident, force=True)
    agent.start()
    client = agent.client()
    status = client.wait_pods(restarted(2), what="restart 2 reported after the agent's restart")
    assert container(status)["lastState"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert app_container()[0].endswith("_web_2")

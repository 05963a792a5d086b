"""The kubelet never plans a pod on a listing taken while that pod's worker was acting.

In-process: a real :class:`~agent.kubelet.kubelet.Kubelet` on the hollow runtime (the
in-memory runtime the fleet bench runs), its proxy in userspace mode. The race it pins: a pass
lists the node while a worker is starting a pod's container, then awaits (the restart ledger's
save); the worker finishes during that await. The pod is then neither busy nor among the pods
that finished after the listing as computed before the await, and planning it on that listing
started the same attempt a second time (the hollow runtime's "name already in use", a
Docker ``created`` container read as a failed start, or a running container superseded).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from agent.kubelet.kubelet import Kubelet, KubeletTuning
from agent.kubelet.podspec import NodeSettings
from agent.kubelet.services import NodeServices
from agent.proxy import Proxy
from agent.runtime.facts import LABEL_CONTAINER, SANDBOX_CONTAINER, ContainerConfig, NodeName
from agent.runtime.hollow import HollowRuntime
from schemas.pod import Pod
from schemas.protocol import Sync

NODE = NodeName("race-node")


class GatedRuntime(HollowRuntime):
    """The hollow runtime whose app container starts only when the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(start_delay_s=0.0)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.app_starts = 0

    def create_and_start(self, config: ContainerConfig) -> str:  # type: ignore[override]
        if config.labels.get(LABEL_CONTAINER) not in (None, SANDBOX_CONTAINER):
            self.app_starts += 1
            self.entered.set()
            assert self.gate.wait(10), "the test never opened the gate"
        return super().create_and_start(config)


def _pod() -> Pod:
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
            "spec": {
                "nodeName": NODE,
                "containers": [{"name": "app", "image": "capstan.local/busybox:1"}],
            },
        }
    )


def test_a_worker_finishing_during_a_pass_is_not_planned_on_that_pass_listing(
    tmp_path: Path,
) -> None:
    runtime = GatedRuntime()
    proxy = Proxy(node_addresses=["127.0.0.1"], mode="userspace")
    kubelet = Kubelet(
        runtime=runtime,
        settings=NodeSettings(node_name=NODE, state_dir=tmp_path),
        services=NodeServices(proxy),
        tuning=KubeletTuning(resync_s=0.05),
    )
    ledger = kubelet._restarts  # the await the race needs is its save
    real_save = ledger.save
    finished = threading.Event()

    def save_while_the_worker_finishes() -> None:
        # A pass that listed the node while the app container was being started: open the
        # gate and let the worker finish before this await returns.
        if runtime.entered.is_set() and not runtime.gate.is_set():
            runtime.gate.set()
            deadline = time.monotonic() + 10
            while "uid-web" in kubelet._busy and time.monotonic() < deadline:
                time.sleep(0.005)
            finished.set()
        real_save()

    real_observe = ledger.observe

    def observe_and_save(*args: object, **kwargs: object) -> None:
        real_observe(*args, **kwargs)  # type: ignore[arg-type]
        ledger.dirty = True  # every pass awaits a save

    ledger.save = save_while_the_worker_finishes  # type: ignore[method-assign]
    ledger.observe = observe_and_save  # type: ignore[method-assign]

    async def scenario() -> None:
        await kubelet.start()
        try:
            kubelet.set_desired(Sync(generation=1, pods=[_pod()]))
            while not finished.is_set():
                await asyncio.sleep(0.01)
            # Passes after the worker finished: the pod's container is running, so none of
            # them starts it again. Wait for several so a duplicate would have been made.
            listed = runtime.calls["list_containers"]
            while runtime.calls["list_containers"] < listed + 5:
                await asyncio.sleep(0.01)
        finally:
            await kubelet.close()

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()
    assert runtime.app_starts == 1, f"the app container was started {runtime.app_starts} times"

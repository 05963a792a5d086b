"""The executor's memory of a pod (pull and config failures, last error) is dropped as a whole
when the pod leaves the node, and only that pod's."""

from __future__ import annotations

from agent.kubelet.executor import ExecutorMemory
from agent.runtime.facts import PodUID


def test_forget_drops_every_record_of_the_pods_and_keeps_the_others() -> None:
    gone, kept = PodUID("gone"), PodUID("kept")
    memory = ExecutorMemory()
    memory.pod_errors.update({gone: "boom", kept: "ouch"})
    memory.image_failures[(gone, "app")] = object()  # type: ignore[assignment]
    memory.config_failures[(gone, "app")] = object()  # type: ignore[assignment]
    memory.image_failures[(kept, "app")] = object()  # type: ignore[assignment]
    assert memory.pods() == {gone, kept}

    memory.forget(memory.pods() - {kept})

    assert memory.pods() == {kept}
    assert set(memory.pod_errors) == {kept}
    assert set(memory.image_failures) == {(kept, "app")}
    assert memory.config_failures == {}

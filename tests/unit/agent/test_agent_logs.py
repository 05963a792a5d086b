"""Which container a ``logs`` request reads (agent.kubelet.logs.find_container): plain data."""

from __future__ import annotations

import pytest

from agent.kubelet.logs import find_container
from tests.unit.agent.agent_testdata import desired, observed, pod

TWO = [
    {"name": "app", "image": "capstan.local/busybox:1"},
    {"name": "side", "image": "capstan.local/busybox:1"},
]


def test_the_newest_attempt_of_the_first_container_by_default() -> None:
    d = desired(pod(containers=TWO))
    facts = [
        observed(d, "app", state="exited", attempt=0, exit_code=1),
        observed(d, "app", attempt=1),
        observed(d, "side"),
    ]
    found = find_container([d], facts, namespace="default", pod="web", container=None)
    assert found == facts[1].id


def test_previous_is_the_attempt_before_the_newest() -> None:
    d = desired(pod(containers=TWO))
    facts = [
        observed(d, "app", attempt=2),
        observed(d, "app", state="exited", attempt=1, exit_code=1),
        observed(d, "side"),
    ]
    found = find_container(
        [d], facts, namespace="default", pod="web", container="app", previous=True
    )
    assert found == facts[1].id


def test_previous_of_a_container_that_never_restarted_says_so() -> None:
    d = desired(pod(containers=TWO))
    facts = [observed(d, "app"), observed(d, "side")]
    with pytest.raises(LookupError, match='previous terminated container "side" in pod "web"'):
        find_container([d], facts, namespace="default", pod="web", container="side", previous=True)


@pytest.mark.parametrize(
    ("pod_name", "container", "message"),
    [
        ("nobody", None, "pod default/nobody has no containers on this node"),
        ("web", "nope", "pod default/web has no container 'nope'"),
    ],
)
def test_unknown_pod_or_container(pod_name: str, container: str | None, message: str) -> None:
    d = desired(pod(containers=TWO))
    with pytest.raises(LookupError, match=message):
        find_container(
            [d], [observed(d, "app")], namespace="default", pod=pod_name, container=container
        )

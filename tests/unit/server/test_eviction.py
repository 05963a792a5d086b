"""``POST pods/NAME/eviction`` over the real HTTP server: 429 while a PodDisruptionBudget would
be broken (the pod stays), 201 and the pod gone once the budget allows it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from reconciler.api import Api, NotFound
from reconciler.client import Client, ClientConfig, TooManyRequests
from schemas import Pod
from schemas.meta import LabelSelector, ObjectMeta
from schemas.pod import Container, PodSpec, PodStatus
from schemas.policy import PodDisruptionBudget, PodDisruptionBudgetSpec
from tests.unit.server.conftest import ADMIN_TOKEN

EVICTION = "/api/v1/namespaces/shop/pods/web-1/eviction"
BODY = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1"}}


def ready_pod(api: Api, name: str) -> None:
    pod = api.create(
        Pod(
            metadata=ObjectMeta(name=name, namespace="shop", labels={"app": "web"}),
            spec=PodSpec(
                containers=[Container(name="app", image="capstan.local/busybox:1")],
                node_name="n1",
            ),
        )
    )
    status = PodStatus.model_validate(
        {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    )
    api.update_status(pod.model_copy(update={"status": status}))


def test_eviction_honours_the_disruption_budget(
    api: Api, make_client: Callable[..., httpx.Client]
) -> None:
    ready_pod(api, "web-1")
    ready_pod(api, "web-2")
    api.create(
        PodDisruptionBudget(
            metadata=ObjectMeta(name="web", namespace="shop"),
            spec=PodDisruptionBudgetSpec(
                selector=LabelSelector(match_labels={"app": "web"}), min_available=2
            ),
        )
    )
    client = make_client()
    refused = client.post(EVICTION, json=BODY)
    assert refused.status_code == 429, refused.text
    assert refused.json()["reason"] == "TooManyRequests"
    assert "disruption budget shop/web" in refused.json()["message"]
    assert api.get(Pod, "web-1", namespace="shop").name == "web-1"

    pdb = api.get(PodDisruptionBudget, "web", namespace="shop")
    api.update(pdb.model_copy(update={"spec": pdb.spec.model_copy(update={"min_available": 1})}))
    allowed = client.post(EVICTION, json=BODY)
    assert allowed.status_code == 201, allowed.text
    with pytest.raises(NotFound):
        api.get(Pod, "web-1", namespace="shop")
    names = {r["name"] for r in client.get("/api/v1").json()["resources"]}
    assert "pods/eviction" in names


def test_the_client_evicts_and_reports_the_budget(
    api: Api, make_client: Callable[..., httpx.Client]
) -> None:
    """``reconciler.client.Client.evict`` (what ``capstan node drain`` uses over HTTP)."""
    ready_pod(api, "web-1")
    api.create(
        PodDisruptionBudget(
            metadata=ObjectMeta(name="web", namespace="shop"),
            spec=PodDisruptionBudgetSpec(
                selector=LabelSelector(match_labels={"app": "web"}), min_available="100%"
            ),
        )
    )
    server = str(make_client().base_url)
    with Client(ClientConfig(server=server, token=ADMIN_TOKEN)) as client:
        with pytest.raises(TooManyRequests, match="disruption budget shop/web"):
            client.evict("web-1", namespace="shop")
        api.delete(PodDisruptionBudget, "web", namespace="shop")
        client.evict("web-1", namespace="shop")
    with pytest.raises(NotFound):
        api.get(Pod, "web-1", namespace="shop")

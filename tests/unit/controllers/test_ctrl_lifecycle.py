"""Garbage collection, namespace cascade and service account tokens, on the real manager."""

from __future__ import annotations

import base64

from reconciler.api import SERVICE_ACCOUNT_TOKEN_TYPE, Api, NotFound
from schemas import (
    ConfigMap,
    Deployment,
    Namespace,
    ObjectMeta,
    OwnerReference,
    Pod,
    ReplicaSet,
    Secret,
    ServiceAccount,
)


def web(namespace: str = "default", replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]},
            },
        },
    }


def test_deleting_a_deployment_collects_its_replicasets_and_pods(
    api: Api, start_manager, wait_for
) -> None:
    start_manager()
    api.create(web(replicas=3))
    wait_for(lambda: len(api.list(Pod).items) == 3)
    api.delete(Deployment, "web")
    wait_for(
        lambda: not api.list(ReplicaSet).items and not api.list(Pod).items,
        what="replicasets and pods collected",
    )


def test_orphans_are_collected_but_owned_objects_stay(api: Api, start_manager, wait_for) -> None:
    owner = api.create(ConfigMap(metadata=ObjectMeta(name="owner")))

    def child(name: str, uid: str) -> ConfigMap:
        return ConfigMap(
            metadata=ObjectMeta(
                name=name,
                owner_references=[
                    OwnerReference(
                        api_version="v1",
                        kind="ConfigMap",
                        name="owner",
                        uid=uid,
                    )
                ],
            )
        )

    api.create(child("owned", owner.metadata.uid or ""))
    api.create(child("wrong-uid", "not-the-owners-uid"))  # same name, another object
    api.create(ConfigMap(metadata=ObjectMeta(name="free")))
    start_manager()
    wait_for(
        lambda: {c.name for c in api.list(ConfigMap).items} == {"owner", "owned", "free"},
        what="the orphan collected",
    )
    api.delete(ConfigMap, "owner")
    wait_for(
        lambda: {c.name for c in api.list(ConfigMap).items} == {"free"},
        what="dependents of a deleted owner collected",
    )


def test_namespace_deletion_cascades(api: Api, start_manager, wait_for) -> None:
    start_manager()
    api.create(Namespace(metadata=ObjectMeta(name="team")))
    api.create(web(namespace="team", replicas=2))
    api.create(ConfigMap(metadata=ObjectMeta(name="cfg", namespace="team")))
    wait_for(lambda: len(api.list(Pod, namespace="team").items) == 2)
    wait_for(lambda: api.list(Secret, namespace="team").items)  # the default token
    cfg = api.get(ConfigMap, "cfg", namespace="team")
    api.record_event(cfg, reason="Touched", message="hello")
    api.delete(Namespace, "team")

    def gone() -> bool:
        try:
            api.get(Namespace, "team")
        except NotFound:
            return True
        return False

    wait_for(gone, what="namespace removed")
    for kind in (Deployment, ReplicaSet, Pod, ConfigMap, Secret, ServiceAccount):
        assert api.list(kind, namespace="team").items == ()
    assert api.list_events(namespace="team") == []
    assert api.list(Pod, namespace="default").items == ()


def test_every_namespace_gets_a_default_account_with_a_working_token(
    api: Api, start_manager, wait_for
) -> None:
    start_manager()
    api.create(Namespace(metadata=ObjectMeta(name="team")))
    for ns in ("default", "capstan-system", "team"):
        wait_for(
            lambda ns=ns: [
                s
                for s in api.list(Secret, namespace=ns).items
                if s.type == SERVICE_ACCOUNT_TOKEN_TYPE
            ],
            what=f"token secret in {ns}",
        )
    account = api.get(ServiceAccount, "default", namespace="team")
    (secret,) = api.list(Secret, namespace="team").items
    assert secret.metadata.owner_references[0].uid == account.metadata.uid
    token = base64.b64decode(secret.data["token"]).decode()
    identity = api.authenticate_token(token)
    assert identity is not None
    assert (identity.namespace, identity.service_account) == ("team", "default")
    # Exactly one token per account, even after resyncs.
    api.create(ServiceAccount(metadata=ObjectMeta(name="robot", namespace="team")))
    wait_for(lambda: len(api.list(Secret, namespace="team").items) == 2)
    # Deleting the account: the default one comes back with a new token; the old one dies.
    api.delete(ServiceAccount, "default", namespace="team")
    wait_for(lambda: api.authenticate_token(token) is None, what="old token rejected")

    def recreated() -> bool:
        try:
            fresh = api.get(ServiceAccount, "default", namespace="team")
        except NotFound:
            return False
        return fresh.metadata.uid != account.metadata.uid

    wait_for(recreated, what="default account recreated")


def test_secret_values_never_reach_the_log(api: Api, start_manager, wait_for, caplog) -> None:
    caplog.set_level("DEBUG")
    start_manager()
    wait_for(lambda: api.list(Secret, namespace="default").items)
    (secret,) = api.list(Secret, namespace="default").items
    token = base64.b64decode(secret.data["token"]).decode()
    assert token.split(".")[1] not in caplog.text

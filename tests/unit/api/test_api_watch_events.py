"""Api watch (resume without gaps, Expired on compaction), Events, node leases, tokens."""

from __future__ import annotations

import base64
import time

import pytest

from reconciler.api import (
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    Api,
    Expired,
    Invalid,
    ManualClock,
    WatchEvent,
    generate_token,
)
from reconciler.store import Store
from schemas import ConfigMap, ObjectMeta, Pod, Secret, ServiceAccount


def take(stream, count: int, *, timeout_s: float = 5.0) -> list[WatchEvent]:
    events = []
    deadline = time.monotonic() + timeout_s
    for event in stream:
        events.append(event)
        if len(events) == count or time.monotonic() > deadline:
            break
    return events


def test_watch_resumes_from_a_resource_version_with_no_gap(api: Api) -> None:
    first = api.create(ConfigMap(metadata=ObjectMeta(name="a")))
    second = api.update(first.model_copy(update={"data": {"x": "1"}}))
    api.create(ConfigMap(metadata=ObjectMeta(name="b")))
    api.delete(ConfigMap, "a")
    api.create(
        Pod.model_validate(
            {
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            }
        )
    )  # another kind: not in a ConfigMap watch
    with api.watch(ConfigMap, from_revision=first.metadata.resource_version) as stream:
        events = take(stream, 3)
    assert [(e.type, e.object.name) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert events[0].object == second
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions)
    # DELETED carries the last state, at the deletion's revision.
    assert events[2].object.data == {"x": "1"}
    assert events[2].object.metadata.resource_version == str(events[2].revision)


def test_list_then_watch_from_its_revision_sees_every_later_change(api: Api) -> None:
    api.create(ConfigMap(metadata=ObjectMeta(name="before")))
    listed = api.list(ConfigMap)
    api.create(ConfigMap(metadata=ObjectMeta(name="after")))
    with api.watch(ConfigMap, from_revision=listed.resource_version) as stream:
        events = take(stream, 1)
    assert [(e.type, e.object.name) for e in events] == [("ADDED", "after")]


def test_watch_of_compacted_history_is_expired(api: Api, store: Store) -> None:
    start = api.create(ConfigMap(metadata=ObjectMeta(name="a")))
    for value in range(3):
        current = api.get(ConfigMap, "a")
        api.update(current.model_copy(update={"data": {"v": str(value)}}))
    store.compact(store.revision())
    with (
        api.watch(ConfigMap, from_revision=start.metadata.resource_version) as stream,
        pytest.raises(Expired) as info,
    ):
        next(iter(stream))
    assert info.value.code == 410


def test_repeated_events_count_up(api: Api, clock: ManualClock) -> None:
    cfg = api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
    first = api.record_event(cfg, reason="Synced", message="all good")
    clock.advance(5)
    again = api.record_event(cfg, reason="Synced", message="all good")
    other = api.record_event(cfg, reason="Failed", message="oops", type="Warning")
    assert (first.count, again.count, other.count) == (1, 2, 1)
    assert again.name == first.name
    assert again.last_timestamp.timestamp() == first.first_timestamp.timestamp() + 5
    listed = api.list_events(involved=cfg)
    assert sorted((e.reason, e.count) for e in listed) == [("Failed", 1), ("Synced", 2)]
    with pytest.raises(Invalid):
        api.record_event(cfg, reason="X", message="y", type="Loud")


def test_events_expire_with_their_ttl(tmp_path, clock: ManualClock) -> None:
    from reconciler.store import open_store

    with open_store(f"sqlite://{tmp_path}/ttl.db", clock=clock.time) as store:
        api = Api(store, clock=clock, event_ttl_s=10)
        cfg = api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
        api.record_event(cfg, reason="Synced", message="ok")
        assert api.list_events()
        clock.advance(30)
        deadline = time.monotonic() + 10
        while api.list_events() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.list_events() == []


def test_node_lease_renewal_is_read_back(api: Api, clock: ManualClock) -> None:
    assert api.get_node_lease("n1") is None
    api.renew_node_lease("n1")
    clock.advance(7)
    renewed = api.renew_node_lease("n1", duration_s=20)
    lease = api.get_node_lease("n1")
    assert lease is not None
    assert lease.renew_time.timestamp() == clock.time()
    assert lease.lease_duration_seconds == 20
    assert lease.resource_version == renewed.resource_version
    assert [item.node_name for item in api.list_node_leases()] == ["n1"]
    explicit = api.renew_node_lease("n2", now=clock.time() - 100)
    assert explicit.renew_time.timestamp() == clock.time() - 100


def test_token_authenticates_only_while_its_account_and_secret_exist(api: Api) -> None:
    account = api.create(ServiceAccount(metadata=ObjectMeta(name="robot")))
    token = generate_token()
    api.create(
        Secret(
            metadata=ObjectMeta(
                name="robot-token",
                namespace="default",
                annotations={
                    SERVICE_ACCOUNT_NAME_ANNOTATION: "robot",
                    SERVICE_ACCOUNT_UID_ANNOTATION: account.metadata.uid or "",
                },
            ),
            type=SERVICE_ACCOUNT_TOKEN_TYPE,
            data={"token": base64.b64encode(token.encode()).decode()},
        )
    )
    identity = api.authenticate_token(token)
    assert identity is not None
    assert identity.username == "system:serviceaccount:default:robot"
    token_id, secret = token.split(".")
    assert api.authenticate_token(f"{token_id}.{secret[:-1]}x") is None
    assert api.authenticate_token("garbage") is None
    # The place tokens are checked holds only a hash, never the token.
    raw = api._store.range("/registry/capstan-tokens/", prefix=True).kvs
    assert raw
    assert all(secret.encode() not in kv.value for kv in raw)
    api.delete(Secret, "robot-token")
    assert api.authenticate_token(token) is None

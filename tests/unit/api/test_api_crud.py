"""Api CRUD: metadata the server sets, optimistic concurrency, status sub-resource, generation."""

from __future__ import annotations

import threading

import pytest

from reconciler.api import (
    AlreadyExists,
    Api,
    Conflict,
    Forbidden,
    Invalid,
    ManualClock,
    NotFound,
)
from schemas import (
    Condition,
    ConfigMap,
    Deployment,
    Namespace,
    Node,
    ObjectMeta,
    Pod,
    PodStatus,
)


def pod_doc(name: str = "web", **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }


def deployment_doc(name: str = "web", replicas: int = 2, image: str = "img:1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


def test_system_namespaces_exist_and_cannot_be_deleted(api: Api) -> None:
    names = {ns.name for ns in api.list(Namespace).items}
    assert {"default", "capstan-system"} <= names
    with pytest.raises(Forbidden) as info:
        api.delete(Namespace, "default")
    assert info.value.code == 403


def test_create_sets_server_fields_and_get_returns_them(api: Api, clock: ManualClock) -> None:
    created = api.create(pod_doc())
    assert created.metadata.uid
    assert created.metadata.generation == 1
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.creation_timestamp.timestamp() == clock.time()
    assert int(created.metadata.resource_version or 0) == api.current_revision()
    fetched = api.get(Pod, "web", namespace="default")
    assert fetched == created


def test_create_twice_is_already_exists(api: Api) -> None:
    api.create(pod_doc())
    with pytest.raises(AlreadyExists) as info:
        api.create(pod_doc())
    assert info.value.code == 409
    assert info.value.reason == "AlreadyExists"


def test_generate_name_fills_a_random_suffix(api: Api) -> None:
    doc = pod_doc()
    del doc["metadata"]["name"]
    doc["metadata"]["generateName"] = "web-"
    first, second = api.create(doc), api.create(doc)
    assert first.name.startswith("web-")
    assert len(first.name) == len("web-") + 5
    assert first.name != second.name


def test_namespaced_objects_need_their_namespace(api: Api) -> None:
    doc = pod_doc()
    doc["metadata"]["namespace"] = "nowhere"
    with pytest.raises(NotFound):
        api.create(doc)
    api.create(Namespace(metadata=ObjectMeta(name="nowhere")))
    assert api.create(doc).namespace == "nowhere"


def test_get_missing_is_not_found(api: Api) -> None:
    with pytest.raises(NotFound) as info:
        api.get(Pod, "ghost")
    assert info.value.code == 404


def test_list_filters_by_namespace_and_labels(api: Api) -> None:
    api.create(Namespace(metadata=ObjectMeta(name="other")))
    api.create(pod_doc("a", app="web"))
    api.create(pod_doc("b", app="db"))
    other = pod_doc("c", app="web")
    other["metadata"]["namespace"] = "other"
    api.create(other)
    assert {p.name for p in api.list(Pod).items} == {"a", "b", "c"}
    assert {p.name for p in api.list(Pod, namespace="default").items} == {"a", "b"}
    listed = api.list(Pod, label_selector={"app": "web"})
    assert {p.name for p in listed.items} == {"a", "c"}
    assert int(listed.resource_version) == api.current_revision()


def test_cluster_scoped_kind_has_no_namespace(api: Api) -> None:
    node = api.create(
        Node.model_validate({"metadata": {"name": "n1"}, "spec": {"address": "127.0.0.1"}})
    )
    assert node.namespace == ""
    assert api.get(Node, "n1").metadata.uid == node.metadata.uid


def test_invalid_object_is_rejected_with_field_paths(api: Api) -> None:
    doc = pod_doc()
    del doc["spec"]["containers"][0]["image"]
    doc["spec"]["containers"][0]["bogus"] = 1
    with pytest.raises(Invalid) as info:
        api.create(doc)
    fields = {cause.field for cause in info.value.causes}
    assert "spec.containers[0].image" in fields
    assert "spec.containers[0].bogus" in fields
    assert info.value.code == 422
    with pytest.raises(NotFound):
        api.get(Pod, "web")


def test_unknown_kind_is_invalid(api: Api) -> None:
    with pytest.raises(Invalid) as info:
        api.create({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "x"}})
    assert info.value.causes[0].field == "kind"


def test_stale_update_is_conflict_never_a_silent_overwrite(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "1"}))
    first = api.update(created.model_copy(update={"data": {"k": "2"}}))
    with pytest.raises(Conflict):
        api.update(created.model_copy(update={"data": {"k": "3"}}))
    assert api.get(ConfigMap, "cfg").data == {"k": "2"}
    assert int(first.metadata.resource_version or 0) > int(created.metadata.resource_version or 0)


def test_update_without_resource_version_is_invalid(api: Api) -> None:
    api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
    with pytest.raises(Invalid) as info:
        api.update(ConfigMap(metadata=ObjectMeta(name="cfg", namespace="default")))
    assert info.value.causes[0].field == "metadata.resourceVersion"


def test_two_concurrent_writers_one_wins_the_other_conflicts(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "0"}))
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def writer(value: str) -> None:
        barrier.wait()
        try:
            api.update(created.model_copy(update={"data": {"k": value}}))
            outcomes[value] = "won"
        except Conflict:
            outcomes[value] = "conflict"

    threads = [threading.Thread(target=writer, args=(v,)) for v in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["conflict", "won"]
    winner = next(v for v, o in outcomes.items() if o == "won")
    assert api.get(ConfigMap, "cfg").data == {"k": winner}


def test_generation_bumps_on_spec_change_only(api: Api) -> None:
    d = api.create(deployment_doc())
    assert d.metadata.generation == 1
    relabeled = api.update(
        d.model_copy(update={"metadata": d.metadata.model_copy(update={"labels": {"team": "a"}})})
    )
    assert relabeled.metadata.generation == 1
    scaled = api.update(
        relabeled.model_copy(update={"spec": relabeled.spec.model_copy(update={"replicas": 5})})
    )
    assert scaled.metadata.generation == 2
    assert api.get(Deployment, "web").metadata.labels == {"team": "a"}


def test_noop_update_writes_nothing(api: Api) -> None:
    created = api.create(deployment_doc())
    before = api.current_revision()
    again = api.update(created)
    assert api.current_revision() == before
    assert again.metadata.resource_version == created.metadata.resource_version


def test_status_and_spec_writers_do_not_clobber_each_other(api: Api) -> None:
    pod = api.create(pod_doc())
    running = PodStatus(phase="Running", conditions=[Condition(type="Ready", status="True")])
    with_status = api.update_status(pod.model_copy(update={"status": running}))
    # A spec writer that never saw the status (it sends status=None) keeps it.
    relabeled = api.update(
        with_status.model_copy(
            update={
                "status": None,
                "metadata": with_status.metadata.model_copy(update={"labels": {"x": "y"}}),
            }
        )
    )
    assert relabeled.status == running
    # A status writer cannot change labels or spec.
    changed = relabeled.model_copy(
        update={
            "metadata": relabeled.metadata.model_copy(update={"labels": {}}),
            "status": running.model_copy(update={"phase": "Failed"}),
        }
    )
    after = api.update_status(changed)
    assert after.labels == {"x": "y"}
    assert after.status is not None
    assert after.status.phase == "Failed"
    assert after.metadata.generation == 1
    # And a stale status write conflicts.
    with pytest.raises(Conflict):
        api.update_status(with_status)


def test_server_fields_cannot_be_changed_by_update(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
    forged = created.model_copy(
        update={"metadata": created.metadata.model_copy(update={"uid": "forged", "generation": 99})}
    )
    updated = api.update(forged.model_copy(update={"data": {"a": "b"}}))
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.generation == 2


def test_delete_returns_last_state_and_honours_precondition(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
    api.update(created.model_copy(update={"data": {"a": "b"}}))
    with pytest.raises(Conflict):
        api.delete(ConfigMap, "cfg", resource_version=created.metadata.resource_version)
    gone = api.delete(ConfigMap, "cfg")
    assert gone.data == {"a": "b"}
    with pytest.raises(NotFound):
        api.delete(ConfigMap, "cfg")


def test_namespace_delete_marks_terminating_and_refuses_new_objects(api: Api) -> None:
    api.create(Namespace(metadata=ObjectMeta(name="team")))
    marked = api.delete(Namespace, "team")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.status is not None
    assert marked.status.phase == "Terminating"
    doc = pod_doc()
    doc["metadata"]["namespace"] = "team"
    with pytest.raises(Forbidden):
        api.create(doc)
    # Removing the finalizer completes the delete.
    api.update(
        marked.model_copy(
            update={"metadata": marked.metadata.model_copy(update={"finalizers": []})}
        )
    )
    with pytest.raises(NotFound):
        api.get(Namespace, "team")


def test_bind_sets_node_and_scheduled_condition_once(api: Api) -> None:
    pod = api.create(pod_doc())
    bound = api.bind(pod, "node-1")
    assert bound.spec.node_name == "node-1"
    assert bound.status is not None
    scheduled = bound.status.condition("PodScheduled")
    assert scheduled is not None
    assert scheduled.status == "True"
    assert api.get(Pod, "web") == bound
    with pytest.raises(Conflict):
        api.bind(pod, "node-2")  # stale copy of an already bound pod
    assert api.get(Pod, "web").spec.node_name == "node-1"


def test_bind_retries_on_a_fresh_unbound_copy(api: Api) -> None:
    pod = api.create(pod_doc())
    api.update_status(pod.model_copy(update={"status": PodStatus(phase="Pending")}))
    bound = api.bind(pod, "node-1")  # pod's rv is stale, but it is still unbound
    assert bound.spec.node_name == "node-1"
    assert bound.status is not None
    assert bound.status.phase == "Pending"


def test_workload_selector_is_immutable(api: Api) -> None:
    d = api.create(deployment_doc())
    changed = d.spec.model_copy(
        update={
            "selector": d.spec.selector.model_copy(
                update={"match_labels": {"app": "web", "v": "2"}}
            ),
            "template": d.spec.template.model_copy(
                update={
                    "metadata": d.spec.template.metadata.model_copy(
                        update={"labels": {"app": "web", "v": "2"}}
                    )
                }
            ),
        }
    )
    with pytest.raises(Invalid) as info:
        api.update(d.model_copy(update={"spec": changed}))
    assert [(c.field, c.message) for c in info.value.causes] == [
        ("spec.selector", "field is immutable")
    ]

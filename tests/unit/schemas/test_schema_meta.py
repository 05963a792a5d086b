"""Names, labels, annotations, selectors and the object key."""

import pytest

from schemas import (
    ConfigMap,
    LabelSelector,
    Namespace,
    ObjectKey,
    ObjectMeta,
    Pod,
    parse_object,
)


def _configmap(name="app-config", **metadata):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **metadata}}


@pytest.mark.parametrize("name", ["web", "web-1", "a.b.c", "0abc", "x" * 253])
def test_subdomain_names_are_accepted(name):
    assert parse_object(_configmap(name)).name == name


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "web-", "a..b", "", "x" * 254, "wéb"])
def test_bad_subdomain_names_are_refused(name, error_locs):
    assert error_locs(_configmap(name)) == {("metadata", "name"): "object_name"}


def test_namespace_names_are_labels(error_locs):
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}
    assert error_locs(doc) == {("metadata", "name"): "object_name"}
    doc["metadata"]["name"] = "shop"
    assert isinstance(parse_object(doc), Namespace)


def test_service_names_must_start_with_a_letter(service, error_locs):
    service["metadata"]["name"] = "1web"
    assert error_locs(service) == {("metadata", "name"): "object_name"}


def test_missing_name_is_reported_at_metadata_name(error_locs):
    assert error_locs({"apiVersion": "v1", "kind": "ConfigMap"}) == {
        ("metadata", "name"): "missing"
    }
    assert error_locs({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}) == {
        ("metadata", "name"): "missing"
    }


def test_name_error_is_reported_alongside_spec_errors(pod, error_locs):
    pod["metadata"]["name"] = "Bad"
    pod["spec"]["containers"][0]["image"] = 3
    assert error_locs(pod) == {
        ("metadata", "name"): "object_name",
        ("spec", "containers", 0, "image"): "string_type",
    }


def test_cluster_scoped_kinds_refuse_a_namespace(node, error_locs):
    node["metadata"]["namespace"] = "default"
    assert error_locs(node) == {("metadata", "namespace"): "cluster_scoped"}


def test_namespace_must_be_a_label(error_locs):
    assert error_locs(_configmap(namespace="Shop")) == {("metadata", "namespace"): "dns1123_label"}


@pytest.mark.parametrize(
    "key", ["app", "app.kubernetes.io/name", "example.com/a_b-c.d", "A" * 63, "x/" + "a" * 63]
)
def test_good_label_keys(key):
    assert parse_object(_configmap(labels={key: "v"})).labels == {key: "v"}


@pytest.mark.parametrize(
    "key", ["", "-app", "app-", "a" * 64, "/app", "Example.com/app", "a/b/c", "a b", "ex.com/"]
)
def test_bad_label_keys(key, error_locs):
    locs = error_locs(_configmap(labels={key: "v"}))
    assert list(locs) == [("metadata", "labels", key, "[key]")]


@pytest.mark.parametrize("value", ["", "v1", "a.b_c-d", "A" * 63])
def test_good_label_values(value):
    parse_object(_configmap(labels={"k": value}))


@pytest.mark.parametrize("value", ["-v", "v-", "a b", "a" * 64, "a/b"])
def test_bad_label_values(value, error_locs):
    assert error_locs(_configmap(labels={"k": value})) == {
        ("metadata", "labels", "k"): "label_value"
    }


def test_label_values_must_be_strings(error_locs):
    assert error_locs(_configmap(labels={"version": 1.0})) == {
        ("metadata", "labels", "version"): "string_type"
    }


def test_annotations_take_any_value_but_checked_keys(error_locs):
    doc = _configmap(annotations={"example.com/note": "any text: {} / \n ok", "a b": "x"})
    assert list(error_locs(doc)) == [("metadata", "annotations", "a b", "[key]")]


def test_annotations_are_limited_in_size(error_locs):
    doc = _configmap(annotations={"big": "x" * (256 * 1024)})
    assert error_locs(doc) == {("metadata", "annotations"): "value_error"}


def test_one_controller_owner_only(error_locs):
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1"}
    doc = _configmap(
        ownerReferences=[{**ref, "controller": True}, {**ref, "uid": "2", "controller": True}]
    )
    assert error_locs(doc) == {("metadata", "ownerReferences", 1, "controller"): "owner_controller"}


def test_server_fields_round_trip():
    doc = _configmap(
        namespace="shop",
        uid="7d0b",
        resourceVersion="42",
        generation=3,
        creationTimestamp="2026-11-27T17:00:00Z",
        finalizers=["capstan.io/cleanup"],
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    )
    obj = parse_object(doc)
    assert obj.metadata.creation_timestamp.year == 2026
    assert obj.to_dict()["metadata"] == doc["metadata"]


def test_naive_timestamps_are_refused(error_locs):
    doc = _configmap(creationTimestamp="2026-11-27T17:00:00")
    assert error_locs(doc) == {("metadata", "creationTimestamp"): "timezone_aware"}


def test_key_and_namespace():
    obj = parse_object(_configmap(namespace="shop"))
    assert obj.key == ObjectKey("ConfigMap", "shop", "app-config")
    assert str(obj.key) == "ConfigMap/shop/app-config"
    assert parse_object(_configmap()).key == ("ConfigMap", "", "app-config")
    ns = Namespace(metadata=ObjectMeta(name="shop"))
    assert ns.key == ("Namespace", "", "shop")
    assert str(ns.key) == "Namespace/shop"
    assert (ConfigMap.NAMESPACED, Namespace.NAMESPACED, Pod.NAMESPACED) == (True, False, True)


def test_models_are_frozen():
    obj = parse_object(_configmap())
    with pytest.raises(ValueError, match="frozen"):
        obj.metadata.name = "other"
    changed = obj.model_copy(update={"data": {"a": "b"}})
    assert changed.data == {"a": "b"}
    assert obj.data == {}


def _selector(**terms):
    return LabelSelector.model_validate(terms)


def test_selector_matching():
    labels = {"app": "web", "tier": "front"}
    assert _selector().matches(labels)
    assert _selector().is_empty
    assert _selector(matchLabels={"app": "web"}).matches(labels)
    assert not _selector(matchLabels={"app": "web", "env": "prod"}).matches(labels)

    def expr(operator, *values, key="tier"):
        return _selector(
            matchExpressions=[{"key": key, "operator": operator, "values": list(values)}]
        )

    assert expr("In", "front", "back").matches(labels)
    assert not expr("In", "back").matches(labels)
    assert expr("NotIn", "back").matches(labels)
    assert not expr("NotIn", "front").matches(labels)
    assert expr("NotIn", "x", key="absent").matches(labels)
    assert expr("Exists").matches(labels)
    assert not expr("Exists", key="absent").matches(labels)
    assert expr("DoesNotExist", key="absent").matches(labels)
    assert not expr("DoesNotExist").matches(labels)


@pytest.mark.parametrize(
    ("operator", "values"), [("In", []), ("NotIn", []), ("Exists", ["a"]), ("DoesNotExist", ["a"])]
)
def test_selector_values_fit_the_operator(deployment, error_locs, operator, values):
    deployment["spec"]["selector"] = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": operator, "values": values}],
    }
    assert error_locs(deployment) == {
        ("spec", "selector", "matchExpressions", 0, "values"): "selector_values"
    }


def test_selector_operator_is_checked(deployment, error_locs):
    deployment["spec"]["selector"]["matchExpressions"] = [{"key": "a", "operator": "Gt"}]
    assert error_locs(deployment) == {
        ("spec", "selector", "matchExpressions", 0, "operator"): "literal_error"
    }

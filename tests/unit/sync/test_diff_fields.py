"""reconciler.diff: field paths, named lists, masking, what a comparison ignores."""

from __future__ import annotations

from reconciler.diff import comparable, diff_objects, diff_values, fill_server_defaults
from schemas import Pod, Secret, Service


def _pod(**container: object) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {
                "name": "p",
                "namespace": "default",
                "uid": "u1",
                "resourceVersion": "9",
                "annotations": {"capstan.io/commit": "abc", "team": "a"},
            },
            "spec": {
                "containers": [
                    {"name": "web", "image": "img:1", **container},
                    {"name": "side", "image": "side:1"},
                ]
            },
        }
    )


def test_named_list_items_are_matched_by_name() -> None:
    before = [{"name": "a", "v": 1}, {"name": "b", "v": 2}]
    after = [{"name": "new", "v": 0}, {"name": "a", "v": 1}, {"name": "b", "v": 3}]
    changes = diff_values({"items": before}, {"items": after})
    assert [(c.path, c.type) for c in changes] == [
        ("items[name=b].v", "changed"),
        ("items[name=new]", "added"),
    ]


def test_unnamed_lists_diff_by_index_and_odd_keys_are_quoted() -> None:
    changes = diff_values(
        {"args": ["a", "b"], "l": {"x.y/z": "1"}}, {"args": ["a"], "l": {"x.y/z": "2"}}
    )
    assert [(c.path, c.type) for c in changes] == [
        ("args[1]", "removed"),
        ('l["x.y/z"]', "changed"),
    ]


def test_server_metadata_and_bookkeeping_are_not_compared() -> None:
    data = comparable(_pod())
    assert data["metadata"] == {"labels": {}, "annotations": {"team": "a"}}
    assert "status" not in data
    assert (
        diff_objects(
            _pod(),
            _pod().model_copy(
                update={
                    "metadata": _pod().metadata.model_copy(
                        update={"uid": "other", "resource_version": "10"}
                    )
                }
            ),
        )
        == ()
    )


def test_field_change_inside_a_container() -> None:
    (change,) = diff_objects(_pod(), _pod(image="img:2"))
    assert change.path == "spec.containers[name=web].image"
    assert (change.before, change.after) == ("img:1", "img:2")


def test_server_filled_fields_are_kept_when_git_leaves_them_empty() -> None:
    bound = _pod().model_copy(
        update={"spec": _pod().spec.model_copy(update={"node_name": "node-1"})}
    )
    assert diff_objects(bound, _pod()) == ()
    service = Service.model_validate(
        {
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.0.0.1",
                "ports": [{"port": 80, "nodePort": 30080}],
            },
        }
    )
    desired = service.to_dict()
    del desired["spec"]["clusterIP"]
    del desired["spec"]["ports"][0]["nodePort"]
    filled = fill_server_defaults(desired, service.to_dict())
    assert filled["spec"]["clusterIP"] == "10.0.0.1"
    assert filled["spec"]["ports"][0]["nodePort"] == 30080


def test_secret_values_are_always_masked() -> None:
    old = Secret.model_validate(
        {
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"k": "c2VjcmV0MQ=="},
            "stringData": {"p": "pw-one"},
        }
    )
    new = Secret.model_validate(
        {
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"k": "c2VjcmV0Mg==", "k2": "eA=="},
            "stringData": {"p": "pw-two"},
        }
    )
    changes = diff_objects(old, new)
    assert {c.path for c in changes} == {"data.k", "data.k2", "stringData.p"}
    assert "pw-" not in repr(changes)
    assert "c2Vj" not in repr(changes)
    created = diff_objects(None, new)
    data = next(c for c in created if c.path == "data")
    assert data.after == {"k": "***", "k2": "***"}
    assert "pw-two" not in repr(created)

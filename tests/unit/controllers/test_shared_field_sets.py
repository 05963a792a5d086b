"""Cached objects share their models' fields-sets, and nothing a reader sees changes."""

from __future__ import annotations

from reconciler.controllers.runtime import share_field_sets
from schemas import Pod


def _pod(name: str) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "9"]}],
            },
        }
    )


def test_equal_fields_sets_become_one_and_copies_do_not_touch_it() -> None:
    first, second = _pod("a"), _pod("b")
    before = first.model_dump_json(by_alias=True, exclude_unset=True)
    share_field_sets(first)
    share_field_sets(second)
    assert first.spec.__pydantic_fields_set__ is second.spec.__pydantic_fields_set__
    shared = first.spec.containers[0].__pydantic_fields_set__
    assert shared is second.spec.containers[0].__pydantic_fields_set__
    assert first.model_dump_json(by_alias=True, exclude_unset=True) == before
    # A copy with an update gets a set of its own; the shared one keeps its names.
    container = first.spec.containers[0]
    changed = container.model_copy(update={"working_dir": "/tmp"})
    assert "working_dir" in changed.model_fields_set
    assert "working_dir" not in container.model_fields_set
    assert "working_dir" not in second.spec.containers[0].model_fields_set

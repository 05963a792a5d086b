"""Per-app pins: hold one Deployment at an earlier commit's version while the head is bad.

Written by the auto-rollback controller (`reconciler.controllers.autorollback`) when a
Deployment annotated `capstan.io/auto-rollback: "true"` fails its rollout; read by the sync
loop on every pass (`apply_pins`), which then applies that Deployment as the pinned commit
has it instead of as the head has it. Everything else follows the head.

A pin remembers the pod-template hash it rolled back *from*. It holds only while the head
still asks for that template: once the head changes the Deployment's template (a fix, or
the revert commit Capstan pushed so Git stays the truth) the pin is dropped by itself.

Storage: the ConfigMap `capstan-pins` in `capstan-system` (never managed, never pruned),
one key per pinned Deployment, the pin as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from reconciler.api import AlreadyExists, Api, Conflict, NotFound
from reconciler.controllers.deployment import pod_template_hash
from reconciler.source import LoadedRepository
from reconciler.sync.records import SYSTEM_NAMESPACE
from schemas import ConfigMap, Deployment, ObjectMeta

__all__ = ["PINS_NAME", "Pin", "apply_pins", "read_pins", "remove_pin", "set_pin"]

PINS_NAME = "capstan-pins"
_RETRIES = 5


class Pin(BaseModel):
    """`deployment` (`Deployment/ns/name`) is held at `commit`'s version; `bad_template`
    is the pod-template hash it was rolled back from, `bad_commit` the commit that set it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: str
    commit: str
    bad_commit: str | None
    bad_template: str
    reason: str
    at: datetime


def _data_key(deployment: str) -> str:
    # ConfigMap keys allow [-._a-zA-Z0-9]; namespaces and names never hold '.' twice in a row.
    return deployment.replace("/", "..")


def read_pins(api: Api) -> dict[str, Pin]:
    """Pins by `Deployment/ns/name`."""
    try:
        cm = api.get(ConfigMap, PINS_NAME, namespace=SYSTEM_NAMESPACE)
    except NotFound:
        return {}
    pins = (Pin.model_validate_json(value) for value in cm.data.values())
    return {pin.deployment: pin for pin in pins}


def _change(api: Api, edit: Callable[[dict[str, str]], dict[str, str]]) -> None:
    for _attempt in range(_RETRIES):
        try:
            cm = api.get(ConfigMap, PINS_NAME, namespace=SYSTEM_NAMESPACE)
        except NotFound:
            data = edit({})
            if not data:
                return
            try:
                api.create(ConfigMap(
                    metadata=ObjectMeta(name=PINS_NAME, namespace=SYSTEM_NAMESPACE),
                    data=data))
            except AlreadyExists:
                continue
            return
        data = edit(dict(cm.data))
        if data == cm.data:
            return
        try:
            api.update(cm.model_copy(update={"data": data}))
        except (Conflict, NotFound):
            continue
        return
    raise Conflict("the pins kept changing")


def set_pin(api: Api, pin: Pin) -> None:
    _change(api, lambda data: {**data, _data_key(pin.deployment): pin.model_dump_json()})


def remove_pin(api: Api, deployment: str) -> None:
    key = _data_key(deployment)
    _change(api, lambda data: {k: v for k, v in data.items() if k != key})


def apply_pins(
    api: Api,
    repo: LoadedRepository,
    *,
    load: Callable[[str], LoadedRepository | None],
) -> LoadedRepository:
    """`repo` (the head) with each pinned Deployment replaced by its pinned commit's
    version. `load(sha)` loads a commit (None when it cannot). Pins the head has moved past
    are removed here."""
    pins = read_pins(api)
    if not pins:
        return repo
    objects = list(repo.objects)
    index = {str(item.obj.key): i for i, item in enumerate(objects)}
    for name, pin in pins.items():
        at = index.get(name)
        head_obj = objects[at].obj if at is not None else None
        if not isinstance(head_obj, Deployment) or (
            pod_template_hash(head_obj.spec.template) != pin.bad_template
        ):
            remove_pin(api, name)  # gone from Git, or the head moved on: Git rules again
            continue
        pinned_repo = load(pin.commit)
        if pinned_repo is None:
            continue
        pinned = next((item for item in pinned_repo.objects if str(item.obj.key) == name),
                      None)
        if pinned is not None and at is not None:
            objects[at] = pinned
    return replace(repo, objects=objects)

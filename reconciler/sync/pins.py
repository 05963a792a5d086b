"""Per-app pins: hold one Deployment at an earlier commit's version while the head is bad.

Written by the auto-rollback controller (``reconciler.sync.autorollback``) when a
Deployment annotated ``capstan.io/auto-rollback: "true"`` fails its rollout; read by the sync
loop on every pass (``apply_pins``), which then applies that Deployment as the pinned commit
has it instead of as the head has it. Everything else follows the head.

A pin remembers the pod-template hash it rolled back *from*. It holds only while the head
still asks for that template: once the head changes the Deployment's template (a fix, or
the revert commit Capstan pushed so Git stays the truth) the pin is dropped by itself.

Beside the pins, the auto-rollback's *claims*: one per bad commit it acted on, written
(compare-and-swap) before it pins or pushes anything, so each bad commit is rolled back at
most once whatever the timing of status reports. A claim lists the steps of its rollback still
to do (``pending``: pin, event, record, revert); the controller removes each step once it is
done (``finish_step``), so a leader that takes over after a crash finishes exactly the steps
left, and a finished claim is never redone, however much of the sync log was pruned since. A
claim outlives its pin: the commit stays handled. The newest ``MAX_CLAIMS`` are kept.

Storage: the ConfigMaps ``capstan-pins`` (one key per pinned Deployment) and
``capstan-auto-rollbacks`` (one key per claimed bad commit) in ``capstan-system``, never managed,
never pruned by a sync; values are JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from reconciler.api import AlreadyExists, Api, Conflict, NotFound
from reconciler.source import LoadedRepository
from reconciler.sync.records import SYSTEM_NAMESPACE
from reconciler.workloads.deployment import pod_template_hash
from schemas import ConfigMap, Deployment, ObjectMeta

__all__ = [
    "CLAIMS_NAME",
    "MAX_CLAIMS",
    "PINS_NAME",
    "Pin",
    "RollbackClaim",
    "RollbackStep",
    "apply_pins",
    "claim_rollback",
    "finish_step",
    "read_claims",
    "read_pins",
    "remove_pin",
    "set_pin",
    "unfinished_claims",
]

PINS_NAME = "capstan-pins"
CLAIMS_NAME = "capstan-auto-rollbacks"
MAX_CLAIMS = 100
_RETRIES = 5


class Pin(BaseModel):
    """``deployment`` (``Deployment/ns/name``) is held at ``commit``'s version; ``bad_template``
    is the pod-template hash it was rolled back from, ``bad_commit`` the commit that set it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: str
    commit: str
    bad_commit: str | None
    bad_template: str
    reason: str
    at: datetime


#: The steps of one auto-rollback after its claim, in the order they are done.
RollbackStep = Literal["pin", "event", "record", "revert"]


class RollbackClaim(BaseModel):
    """The auto-rollback acted on ``bad_commit`` (rolling ``deployment`` back to ``good_commit``,
    away from the pod template ``bad_template``); ``revert`` is the revert commit it pushed,
    once pushed. ``pending``: the steps not done yet (none: the rollback is complete; a claim
    stored without the field is taken as complete)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bad_commit: str
    deployment: str
    good_commit: str
    reason: str
    at: datetime
    bad_template: str = ""
    revert: str | None = None
    pending: tuple[RollbackStep, ...] = ()


def _data_key(deployment: str) -> str:
    # ConfigMap keys allow [-._a-zA-Z0-9]; namespaces and names never hold '.' twice in a row.
    return deployment.replace("/", "..")


def _values(api: Api, name: str) -> list[str]:
    try:
        return list(api.get(ConfigMap, name, namespace=SYSTEM_NAMESPACE).data.values())
    except NotFound:
        return []


def read_pins(api: Api) -> dict[str, Pin]:
    """Pins by ``Deployment/ns/name``."""
    pins = (Pin.model_validate_json(value) for value in _values(api, PINS_NAME))
    return {pin.deployment: pin for pin in pins}


def _change(
    api: Api, edit: Callable[[dict[str, str]], dict[str, str]], *, name: str = PINS_NAME
) -> bool:
    """Apply ``edit`` to ConfigMap ``name``'s data as one compare-and-swap (retried on a
    concurrent write). True when this call changed it."""
    for _attempt in range(_RETRIES):
        try:
            cm = api.get(ConfigMap, name, namespace=SYSTEM_NAMESPACE)
        except NotFound:
            data = edit({})
            if not data:
                return False
            try:
                api.create(
                    ConfigMap(metadata=ObjectMeta(name=name, namespace=SYSTEM_NAMESPACE), data=data)
                )
            except AlreadyExists:
                continue
            return True
        data = edit(dict(cm.data))
        if data == cm.data:
            return False
        try:
            api.update(cm.model_copy(update={"data": data}))
        except (Conflict, NotFound):
            continue
        return True
    raise Conflict(f"{name} kept changing")


def set_pin(api: Api, pin: Pin) -> None:
    _change(api, lambda data: {**data, _data_key(pin.deployment): pin.model_dump_json()})


def remove_pin(api: Api, deployment: str) -> None:
    key = _data_key(deployment)
    _change(api, lambda data: {k: v for k, v in data.items() if k != key})


def read_claims(api: Api) -> dict[str, RollbackClaim]:
    """Claims by bad commit sha."""
    claims = (RollbackClaim.model_validate_json(value) for value in _values(api, CLAIMS_NAME))
    return {claim.bad_commit: claim for claim in claims}


def unfinished_claims(cm: ConfigMap) -> list[RollbackClaim]:
    """The claims in ``cm`` (the claims ConfigMap, e.g. from an informer's cache) with steps
    pending."""
    claims = (RollbackClaim.model_validate_json(value) for value in cm.data.values())
    return [claim for claim in claims if claim.pending]


def claim_rollback(api: Api, claim: RollbackClaim) -> bool:
    """Record that the auto-rollback acts on ``claim.bad_commit``. True only for the one call
    that added it: False when it was claimed already (by this or another control plane)."""

    def add(data: dict[str, str]) -> dict[str, str]:
        if claim.bad_commit in data:
            return data
        kept = sorted(data.items(), key=lambda kv: RollbackClaim.model_validate_json(kv[1]).at)
        return {**dict(kept[-(MAX_CLAIMS - 1) :]), claim.bad_commit: claim.model_dump_json()}

    return _change(api, add, name=CLAIMS_NAME)


def finish_step(
    api: Api, bad_commit: str, step: RollbackStep, *, revert: str | None = None
) -> None:
    """Mark ``step`` of ``bad_commit``'s rollback done (and note the ``revert`` commit pushed,
    if given), as one compare-and-swap; a claim that has it done already is left as it is."""

    def mark(data: dict[str, str]) -> dict[str, str]:
        if bad_commit not in data:
            return data
        claim = RollbackClaim.model_validate_json(data[bad_commit])
        update: dict[str, object] = {"pending": tuple(s for s in claim.pending if s != step)}
        if revert is not None:
            update["revert"] = revert
        return {**data, bad_commit: claim.model_copy(update=update).model_dump_json()}

    _change(api, mark, name=CLAIMS_NAME)


def apply_pins(
    api: Api,
    repo: LoadedRepository,
    *,
    load: Callable[[str], LoadedRepository | None],
) -> LoadedRepository:
    """``repo`` (the head) with each pinned Deployment replaced by its pinned commit's
    version. ``load(sha)`` loads a commit (None when it cannot). Pins the head has moved past
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
        pinned = next((item for item in pinned_repo.objects if str(item.obj.key) == name), None)
        if pinned is not None and at is not None:
            objects[at] = pinned
    return replace(repo, objects=objects)

"""What the API's readers and writers share: the store, the clock, key and validation helpers.

The base of :class:`reconciler.api.Api`, whose parts are split as controller-runtime splits its
client: ``_reader.py`` (get, list, watch), ``_writer.py`` (create, update, delete),
``_status_writer.py`` (the status and binding sub-resources), ``_api.py`` (the whole, with
events, node leases and tokens).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from reconciler.api import _tokens
from reconciler.api._codec import (
    REGISTRY,
    encode,
    invalid_from,
)
from reconciler.api._errors import (
    Cause,
    Conflict,
    Invalid,
    NotFound,
    store_errors,
)
from reconciler.api.clock import Clock
from reconciler.store import (
    Compare,
    KeyValue,
    Op,
    Store,
)
from schemas import (
    KUBERNETES_NAMESPACES,
    KubeObject,
    LabelSelector,
    UnsupportedKindError,
    model_for,
)

__all__ = [
    "NAMESPACE_FINALIZER",
    "RETRIES",
    "SYSTEM_NAMESPACES",
    "ApiCore",
    "T",
    "at_revision",
    "check_immutable",
    "random_suffix",
    "spec_part",
    "with_rv",
]

T = TypeVar("T", bound=KubeObject)

#: Namespaces that always exist: created when the API starts, and never deletable.
SYSTEM_NAMESPACES = (*KUBERNETES_NAMESPACES, "capstan-system")
#: Put on every Namespace at create; the namespace controller removes it once the namespace is
#: empty, and only then does the delete complete (Kubernetes' ``spec.finalizers: [kubernetes]``).
NAMESPACE_FINALIZER = "capstan.io/namespace"

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels
RETRIES = 5


def random_suffix(length: int = 5) -> str:
    """``generateName``'s random part (Kubernetes' alphabet: no vowels, no look-alikes)."""
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(length))


def spec_part(doc: Mapping[str, Any]) -> dict[str, Any]:
    # "spec" for generation purposes is everything but metadata and status: ConfigMap data,
    # Secret data and ServiceAccount fields count as spec changes too.
    return {k: v for k, v in doc.items() if k not in ("metadata", "status")}


#: Fields an update may not change, per kind, as apps/v1 has it: a workload's selector decides
#: which pods it owns, so changing it would orphan them (delete and recreate instead).
_IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "Deployment": (("spec", "selector"),),
    "ReplicaSet": (("spec", "selector"),),
}


def check_immutable(
    model: type[KubeObject], current: Mapping[str, Any], updated: Mapping[str, Any]
) -> None:
    kind = model.model_fields["kind"].default
    for path in _IMMUTABLE.get(str(kind), ()):
        before: Any = current
        after: Any = updated
        for part in path:
            before = before.get(part) if isinstance(before, Mapping) else None
            after = after.get(part) if isinstance(after, Mapping) else None
        if before != after:
            raise Invalid(
                f"{kind} {current['metadata'].get('name')!r} is invalid",
                (Cause(".".join(path), "field is immutable"),),
            )


def with_rv(obj: T, revision: int) -> T:
    meta = obj.metadata.model_copy(update={"resource_version": str(revision)})
    return obj.model_copy(update={"metadata": meta})


class ApiCore:
    """The state and helpers every part of :class:`reconciler.api.Api` uses."""

    _store: Store
    _clock: Clock

    # -- helpers ---------------------------------------------------------------------------

    def _replace(
        self,
        model: type[T],
        key: str,
        rv: int,
        current: dict[str, Any],
        validated: T,
    ) -> T:
        stored = validated.to_dict()
        stored["metadata"].pop("resourceVersion", None)
        if stored == current:
            return with_rv(validated, rv)
        committed = self._commit(key, rv, current, stored)
        if committed is None:
            raise Conflict(f"{model.__name__} {key} was modified; re-read and retry")
        return with_rv(validated, committed[1])

    def _commit(
        self, key: str, rv: int, current: dict[str, Any], stored: dict[str, Any]
    ) -> tuple[bytes, int] | None:
        """Write ``stored`` over ``current`` if the key is still at ``rv``; the stored bytes
        and the revision of the write, or None if the key moved on. Removing the last
        finalizer of an object being deleted deletes it instead."""
        guard = [Compare.mod_revision(key, "==", rv)]
        meta = stored["metadata"]
        value = encode(stored)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            ops = [Op.delete(key), *_tokens.index_ops(current, None)]
        else:
            ops = [Op.put(key, value), *_tokens.index_ops(current, stored)]
        with store_errors():
            result = self._store.txn(guard, ops)
        if not result.succeeded:
            return None
        return value, int(result.revision)

    def _read_at(
        self, model: type[KubeObject], key: str, rv: int, meta: Mapping[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        with store_errors():
            kv = at_revision(model, key, self._store.get(key), rv, meta.get("name"))
        current: dict[str, Any] = json.loads(kv.value)
        return kv, current

    @staticmethod
    def _required_rv(meta: Mapping[str, Any]) -> int:
        rv = meta.get("resourceVersion")
        if not rv or not str(rv).isdigit():
            raise Invalid(
                "update is invalid",
                (Cause("metadata.resourceVersion", "must be the resourceVersion read"),),
            )
        return int(rv)

    @staticmethod
    def _model(data: Mapping[str, Any]) -> type[KubeObject]:
        api_version, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise Invalid("object is invalid", (Cause("kind", "apiVersion and kind required"),))
        try:
            return model_for(api_version, kind)
        except UnsupportedKindError as exc:
            raise invalid_from(exc, what="object") from exc

    @staticmethod
    def _validate(model: type[T], data: dict[str, Any], *, what: str) -> T:
        try:
            return model.model_validate(data, by_name=False)
        except ValidationError as exc:
            raise invalid_from(exc, what=what) from exc

    @staticmethod
    def _ns(kind: type[KubeObject], namespace: str | None) -> str:
        if not kind.NAMESPACED:
            return ""
        return namespace or "default"

    @staticmethod
    def _selector(
        selector: LabelSelector | Mapping[str, str] | None,
    ) -> LabelSelector | None:
        if selector is None or isinstance(selector, LabelSelector):
            return selector
        return LabelSelector(match_labels=dict(selector))

    def _describe(self, kind: type[KubeObject], namespace: str | None, name: str) -> str:
        return f"{self._ns(kind, namespace)}/{name}" if kind.NAMESPACED else name


def at_revision(
    model: type[KubeObject], key: str, kv: KeyValue | None, rv: int, name: object
) -> KeyValue:
    """``kv`` if the object exists at resourceVersion ``rv``: else 404, or 409 if stale."""
    if kv is None:
        raise NotFound(f"{model.__name__} {key.removeprefix(REGISTRY)} not found")
    if kv.mod_revision != rv:
        raise Conflict(
            f"{model.__name__} {name!r}: resourceVersion {rv} is stale "
            f"(now {kv.mod_revision}); re-read and retry"
        )
    return kv

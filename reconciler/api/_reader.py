"""Reading objects: get, list and watch (controller-runtime's Reader).

Part of :class:`reconciler.api.Api` (see :mod:`reconciler.api._core`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from reconciler.api._codec import (
    REGISTRY,
    decode,
    kind_prefix,
    object_key,
)
from reconciler.api._core import (
    ApiCore,
    T,
)
from reconciler.api._errors import (
    NotFound,
    store_errors,
)
from reconciler.api._types import (
    ObjectList,
    WatchEvent,
    WatchStream,
    event_kind,
)
from reconciler.store import (
    Event,
    RangeResult,
    Revision,
)
from schemas import (
    KubeObject,
    LabelSelector,
)

__all__ = ["Reader"]


class Reader(ApiCore):
    # -- reads -----------------------------------------------------------------------------

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        """The object, or :class:`NotFound`. ``namespace`` defaults to ``default``."""
        key = object_key(kind, self._ns(kind, namespace), name)
        with store_errors():
            kv = self._store.get(key)
        if kv is None:
            raise NotFound(f"{kind.__name__} {self._describe(kind, namespace, name)} not found")
        return decode(kind, kv)

    def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | Mapping[str, str] | None = None,
    ) -> ObjectList[T]:
        """Every object of a kind (in one namespace, or all when None) matching the selector,
        with the store revision of the read: watch from it for a gap-free list+watch."""
        with store_errors():
            result: RangeResult = self._store.range(kind_prefix(kind, namespace), prefix=True)
        selector = self._selector(label_selector)
        if selector is None:
            items = [decode(kind, kv) for kv in result.kvs]
        else:
            # Labels are read from the JSON before the (far dearer) model validation: a
            # selective list of a big kind (managed pods among thousands) decodes only hits.
            # Before that, an object whose JSON does not even contain a label key the selector
            # requires cannot match, and is not parsed at all.
            needles = _required_label_keys(selector)
            items = []
            for kv in result.kvs:
                if not all(needle in kv.value for needle in needles):
                    continue
                data = json.loads(kv.value)
                labels = (data.get("metadata") or {}).get("labels") or {}
                if selector.matches(labels):
                    data["metadata"]["resourceVersion"] = str(kv.mod_revision)
                    items.append(kind.model_validate(data))
        return ObjectList(tuple(items), str(result.revision))

    def watch(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        from_revision: int | str | None = None,
    ) -> WatchStream[T]:
        """Changes after ``from_revision`` (default: now), in order, none missed, none twice.
        Iterating raises :class:`Expired` once that revision is compacted away: relist."""
        start = Revision(int(from_revision)) if from_revision is not None else None

        def convert(event: Event) -> WatchEvent[T]:
            kind_name = event_kind(event)
            if kind_name == "DELETED":
                assert event.prev_kv is not None
                obj = decode(kind, event.prev_kv, revision=event.revision)
            else:
                obj = decode(kind, event.kv)
            return WatchEvent(kind_name, obj, int(event.revision))

        with store_errors():
            watch = self._store.watch(
                kind_prefix(kind, namespace), prefix=True, from_revision=start
            )
        return WatchStream(watch, convert)

    def watch_kinds(
        self,
        kinds: Sequence[type[KubeObject]],
        *,
        from_revision: int | str | None = None,
    ) -> WatchStream[KubeObject]:
        """One stream of the changes to several kinds (all namespaces), in store order.

        What a controller manager's informers share: the store wakes and scans each watch on
        every commit, so one watch for nine kinds costs a ninth of nine watches."""
        models = {kind_prefix(kind, None): kind for kind in kinds}
        start = Revision(int(from_revision)) if from_revision is not None else None

        def convert(event: Event) -> WatchEvent[KubeObject] | None:
            key = event.kv.key
            model = models.get(key[: key.find("/", len(REGISTRY)) + 1])
            if model is None:
                return None
            kind_name = event_kind(event)
            if kind_name == "DELETED":
                assert event.prev_kv is not None
                obj = decode(model, event.prev_kv, revision=event.revision)
            else:
                obj = decode(model, event.kv)
            return WatchEvent(kind_name, obj, int(event.revision))

        with store_errors():
            watch = self._store.watch(REGISTRY, prefix=True, from_revision=start)
        return WatchStream(watch, convert)


def _required_label_keys(selector: LabelSelector) -> list[bytes]:
    """Label keys, as JSON strings, that every object matching ``selector`` has (a label key
    is ASCII and needs no escaping, so it appears in the JSON exactly so)."""
    keys = set(selector.match_labels)
    keys.update(r.key for r in selector.match_expressions if r.operator in ("In", "Exists"))
    return [json.dumps(key).encode() for key in sorted(keys)]

"""Store keys and the stored form of objects: the only place that knows the key layout.

Used by :class:`reconciler.api.Api` on every read and write. The layout is Kubernetes'
``/registry/<plural>/<namespace>/<name>`` (cluster-scoped kinds leave the namespace out), so a
prefix range or watch on ``/registry/pods/`` sees every pod and ``/registry/pods/web/`` one
namespace's. Values are compact JSON of ``to_dict()`` *without* ``resourceVersion``: it is the
key's ``mod_revision`` and is filled in on every read, as Kubernetes' etcd3 storage does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from reconciler.api._errors import Cause, Invalid
from reconciler.store import KeyValue
from schemas import KubeObject, UnsupportedKindError, model_for

__all__ = [
    "REGISTRY",
    "decode",
    "encode",
    "invalid_from",
    "kind_prefix",
    "object_key",
    "plural",
]

REGISTRY = "/registry/"

T = TypeVar("T", bound=KubeObject)


def plural(kind: str) -> str:
    # Every supported kind pluralises with a plain "s" (pods, services, replicasets...).
    return kind.lower() + "s"


def object_key(model: type[KubeObject], namespace: str, name: str) -> str:
    kind = _kind_of(model)
    if model.NAMESPACED:
        return f"{REGISTRY}{plural(kind)}/{namespace}/{name}"
    return f"{REGISTRY}{plural(kind)}/{name}"


def kind_prefix(model: type[KubeObject], namespace: str | None) -> str:
    base = f"{REGISTRY}{plural(_kind_of(model))}/"
    if model.NAMESPACED and namespace:
        return f"{base}{namespace}/"
    return base


def _kind_of(model: type[KubeObject]) -> str:
    default = model.model_fields["kind"].default
    if not isinstance(default, str):
        raise TypeError(f"{model.__name__} is not a concrete kind")
    return default


def encode(data: Mapping[str, Any]) -> bytes:
    """The stored bytes of an object's dict form; ``resourceVersion`` is never stored."""
    metadata = dict(data.get("metadata") or {})
    metadata.pop("resourceVersion", None)
    return json.dumps({**data, "metadata": metadata}, separators=(",", ":")).encode()


def decode(model: type[T], kv: KeyValue, *, revision: int | None = None) -> T:
    """A stored value as a typed object whose resourceVersion is its mod_revision (or
    ``revision``: a DELETED watch event reports the deletion's revision, as Kubernetes does)."""
    data = json.loads(kv.value)
    data["metadata"]["resourceVersion"] = str(revision if revision is not None else kv.mod_revision)
    return model.model_validate(data)


def decode_any(kv: KeyValue, *, revision: int | None = None) -> KubeObject:
    data = json.loads(kv.value)
    data["metadata"]["resourceVersion"] = str(revision if revision is not None else kv.mod_revision)
    return model_for(data["apiVersion"], data["kind"]).model_validate(data)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's loc as a Kubernetes field path: ``spec.containers[0].image``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def invalid_from(exc: ValidationError | UnsupportedKindError, *, what: str) -> Invalid:
    if isinstance(exc, UnsupportedKindError):
        return Invalid(f"{what} is invalid", (Cause("kind", str(exc)),))
    causes = tuple(Cause(field_path(tuple(e["loc"])), e["msg"]) for e in exc.errors())
    return Invalid(f"{what} is invalid", causes)

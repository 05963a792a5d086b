"""Smaller cached objects: the models of an object tree share one set of "fields set".

Called by the informers on every object before it enters their cache (and by the node
dispatcher's pod wire cache), so that what the control plane keeps per object is its values.

WHY: pydantic gives every model instance its own ``set`` of the field names the input set
(``__pydantic_fields_set__``); a Pod is some twenty models, so those sets are a large part
of what a cached Pod takes (the figures are in this file's commit messages). The sets of one
model class hardly vary, so equal sets are made one. Only frozen models take part: pydantic
changes a model's set in place only on attribute assignment, which a frozen model refuses
(``model_copy`` copies the set before changing it).
"""

from __future__ import annotations

import threading

from pydantic import BaseModel

__all__ = ["share_field_sets"]

#: One set per distinct set of names. Bounded in practice by the model classes and the
#: field combinations their inputs use (a few hundred); ``_MAX_SHARED`` bounds it anyway.
_shared: dict[frozenset[str], set[str]] = {}
_shared_lock = threading.Lock()
_MAX_SHARED = 10_000


def share_field_sets(obj: BaseModel) -> None:
    """Replace each frozen model's fields-set in ``obj``'s tree with the shared equal one.

    Nothing a reader can see changes: the sets are equal, and nobody changes them. Models
    inside lists, tuples and dicts are reached; other values are not looked into.
    """
    cls = type(obj)
    frozen = _frozen.get(cls)
    if frozen is None:
        frozen = _frozen[cls] = bool(cls.model_config.get("frozen"))
    if frozen:
        fields_set = obj.__pydantic_fields_set__
        key = frozenset(fields_set)
        shared = _shared.get(key)
        if shared is None:
            with _shared_lock:
                if len(_shared) < _MAX_SHARED:
                    shared = _shared.setdefault(key, fields_set)
        if shared is not None and shared is not fields_set:
            object.__setattr__(obj, "__pydantic_fields_set__", shared)
    for value in obj.__dict__.values():
        kind = type(value)
        if kind is list or kind is tuple:
            for item in value:
                if isinstance(item, BaseModel):
                    share_field_sets(item)
        elif kind is dict:
            for item in value.values():
                if isinstance(item, BaseModel):
                    share_field_sets(item)
        elif isinstance(value, BaseModel):
            share_field_sets(value)


#: Whether a model class is frozen, looked up once per class.
_frozen: dict[type[BaseModel], bool] = {}

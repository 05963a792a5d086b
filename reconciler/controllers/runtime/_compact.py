"""Smaller cached objects: equal parts of cached objects become one object.

Called by the informers on every object before it enters their cache (``share_values``) and
by the node dispatcher on what it keeps of pods and agents' statuses (``share_field_sets``),
so that what the control plane keeps per object is what sets it apart from the others.

WHY: a decoded Pod is some twenty pydantic models, each with its own ``__dict__``, its own
``set`` of the field names the input set (``__pydantic_fields_set__``) and its own copies of
every string and list, and most of it is the same in every pod of a ReplicaSet (the
containers, volumes, labels, owner reference) or of a node. The figures are in this file's
commit messages.

Sharing is safe because nothing changes a cached object: the models are frozen (pydantic
changes a fields-set in place only on attribute assignment, which a frozen model refuses, and
``model_copy`` copies the set before changing it), and no code changes a list or dict inside
a model in place (an update is a ``model_copy(update=...)`` with new values).
"""

from __future__ import annotations

import sys
import threading
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from schemas.quantity import Quantity

__all__ = ["share_field_sets", "share_values"]

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
    _share_own_set(obj)
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


def _share_own_set(obj: BaseModel) -> bool:
    """Give ``obj`` the shared fields-set equal to its own; whether ``obj`` is frozen."""
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
    return frozen


#: Whether a model class is frozen, looked up once per class.
_frozen: dict[type[BaseModel], bool] = {}


def share_values(obj: BaseModel) -> None:
    """Make the parts of ``obj`` (a freshly decoded object nobody else holds yet) the very
    objects equal parts of other cached objects are, in place.

    Below ``obj``, every frozen model, list and dict equal to one already seen becomes that
    one; strings are interned; fields-sets are shared as :func:`share_field_sets` does.
    ``obj`` itself stays the object it is. What a reader sees does not change: every value
    is equal to the one it replaces and of the same type. Values carrying a time
    (``datetime``) are kept as they are and so are the models holding them: they differ
    from object to object anyway.
    """
    _share_own_set(obj)
    with _values.lock:
        fields = obj.__dict__
        for name, value in fields.items():
            fields[name] = _values.canonical(value)[0]
        _values.collect_if_grown()


class _Unshared:
    """The key of a value that is not shared: nothing equal to it is looked for."""


_UNSHARED = _Unshared()
_intern = sys.intern

#: Plain values that are their own key, tagged with their type (``1 == True``).
_SCALARS = frozenset({int, bool, bytes})
#: Values whose key is their text: equal ones may print differently (``0.0 == -0.0``,
#: ``Decimal("1.0") == Decimal("1")``, ``Quantity("1") == Quantity("1000m")``).
_BY_TEXT = frozenset({float, Decimal})


class _Values:
    """The shared values: key → the one object every equal part of a cached object is.

    A key is the value's type and its parts' keys: a string is its own key, a number its
    type and value, a shared model, list or dict its identity (the entry's value keeps it
    alive, so the identity stays its). The table holds each shared object until nothing else
    does: ``collect_if_grown`` drops those, newest first (a container after its parts, so
    its parts go in the same pass), when the table has doubled since it last looked.
    """

    _FIRST_COLLECT = 4096

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._table: dict[tuple[Any, ...], Any] = {}
        self._collect_at = self._FIRST_COLLECT

    def canonical(self, value: Any) -> tuple[Any, Any]:
        """The shared object equal to ``value`` (or ``value``, its parts shared) and its key."""
        kind = type(value)
        if kind is str:
            interned = _intern(value)
            return interned, interned
        if value is None:
            return None, None
        if kind in _SCALARS:
            return value, (kind, value)
        part: Any
        if kind is list:
            parts: list[Any] = [kind]
            shared = True
            for index, item in enumerate(value):
                if type(item) is str:
                    value[index] = part = _intern(item)
                else:
                    value[index], part = self.canonical(item)
                    shared = shared and part is not _UNSHARED
                parts.append(part)
            return self._shared(value, parts) if shared else (value, _UNSHARED)
        if kind is dict:
            parts = [kind]
            shared = True
            items = {}
            for key, item in value.items():
                if type(key) is str:
                    key = _intern(key)
                else:
                    shared = False
                if type(item) is str:
                    items[key] = part = _intern(item)
                else:
                    items[key], part = self.canonical(item)
                    shared = shared and part is not _UNSHARED
                parts.extend((key, part))
            return self._shared(items, parts) if shared else (items, _UNSHARED)
        if isinstance(value, BaseModel):
            frozen = _share_own_set(value)
            fields = value.__dict__
            parts = [kind, id(value.__pydantic_fields_set__)]
            shared = (
                frozen and value.__pydantic_private__ is None and value.__pydantic_extra__ is None
            )
            for name, item in fields.items():
                # The commonest values inline: a call per field is most of the cost.
                if item is None:
                    part = None
                elif type(item) is str:
                    fields[name] = part = _intern(item)
                else:
                    fields[name], part = self.canonical(item)
                    shared = shared and part is not _UNSHARED
                parts.append(part)
            return self._shared(value, parts) if shared else (value, _UNSHARED)
        if kind in _BY_TEXT:
            return value, (kind, repr(value))
        if kind is Quantity:
            return value, (kind, value.text)
        if kind is tuple:
            canon = tuple(self.canonical(item) for item in value)
            value = tuple(item for item, _ in canon)
            if any(part is _UNSHARED for _, part in canon):
                return value, _UNSHARED
            return self._shared(value, [kind, *(part for _, part in canon)])
        # A datetime, and anything else: kept as it is, and its holder is not shared.
        return value, _UNSHARED

    def _shared(self, value: Any, parts: list[Any]) -> tuple[Any, int]:
        shared = self._table.setdefault(tuple(parts), value)
        return shared, id(shared)

    def collect_if_grown(self) -> None:
        table = self._table
        if len(table) < self._collect_at:
            return
        for key in reversed(list(table)):
            value = table[key]
            # Held by the table, ``value`` and getrefcount's argument only: nobody uses it.
            if sys.getrefcount(value) <= 3:
                del table[key]
            del value
        self._collect_at = max(self._FIRST_COLLECT, 2 * len(table))

    def __len__(self) -> int:
        return len(self._table)


_values = _Values()

"""The controller runtime: informers, a work queue and the reconcile loop.

Used by every controller in :mod:`reconciler.controllers`, by the scheduler (a controller
keyed by pod, its queue ordered by priority) and by the
:class:`~reconciler.controllers.manager.ControllerManager` that runs them all on one
:class:`~reconciler.api.Api`. Offers :class:`Informer` / :class:`InformerFactory`
(list + watch + cache + indexes per kind; :func:`share_values` makes equal parts of
cached objects one object, :func:`share_field_sets` their fields-sets),
:class:`WorkQueue`, the :class:`Controller` base with its contract (:class:`Result`,
:class:`TransientError`, :class:`TerminalError`), :class:`ControllerContext` /
:class:`Component` for wiring, and :class:`MemoryTrimmer` (freed memory back to the system
after a burst of changes).
"""

from reconciler.controllers.runtime._compact import share_field_sets, share_values
from reconciler.controllers.runtime._controller import (
    Component,
    ComponentFactory,
    Controller,
    ControllerContext,
    Result,
    TerminalError,
    TransientError,
)
from reconciler.controllers.runtime._informer import (
    Informer,
    InformerEvent,
    InformerFactory,
    controller_uid,
)
from reconciler.controllers.runtime._queue import WorkQueue
from reconciler.controllers.runtime._trim import MemoryTrimmer, limit_malloc_arenas

__all__ = [
    "Component",
    "ComponentFactory",
    "Controller",
    "ControllerContext",
    "Informer",
    "InformerEvent",
    "InformerFactory",
    "MemoryTrimmer",
    "Result",
    "TerminalError",
    "TransientError",
    "WorkQueue",
    "controller_uid",
    "limit_malloc_arenas",
    "share_field_sets",
    "share_values",
]

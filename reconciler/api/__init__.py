"""The API server: the only code that touches the store.

Sits between :mod:`reconciler.store` and everything that reads or writes cluster state
(controllers, scheduler, sync, agents' status reports, the CLI). Offers:

- :class:`Api` — typed ``create`` / ``get`` / ``list`` / ``update`` / ``update_status`` /
  ``delete`` / ``watch`` for every kind in :mod:`schemas`, the ``bind`` sub-resource,
  ``record_event``, node heartbeat leases and ``authenticate_token``; ``update_document``
  (the HTTP server's update: a parsed body in, :class:`StoredObject` bytes out). Blocking,
  thread-safe; :class:`AsyncApi` wraps it for event loops.
- Errors, all :class:`ApiError` (``reason``, HTTP-ish ``code``): :class:`NotFound`,
  :class:`AlreadyExists`, :class:`Conflict`, :class:`Invalid` (``causes``: field path +
  message), :class:`Expired` (410: relist), :class:`Forbidden`, :class:`TooLarge`,
  :class:`Unavailable`.
- :class:`ObjectList`, :class:`WatchEvent`, :class:`WatchStream`; :class:`EventRecord`,
  :class:`NodeLease`, :class:`Identity`; clocks (:class:`Clock`, :class:`SystemClock`,
  :class:`ManualClock`).

Objects live at ``/registry/<plural>/<namespace>/<name>`` as JSON; ``resourceVersion`` is the
key's store ``mod_revision``. :func:`seal_secrets` wraps a store so Secret objects are
AES-GCM sealed at rest with the data keys in ``<state-dir>/data-keys`` (:data:`DATA_KEYS_FILE`).
"""

from reconciler.api._aio import AsyncApi
from reconciler.api._atrest import (
    DATA_KEYS_FILE,
    DataKeysMismatch,
    check_data_keys,
    seal_secrets,
)
from reconciler.api._errors import (
    AlreadyExists,
    ApiError,
    Cause,
    Conflict,
    Expired,
    Forbidden,
    InsufficientStorage,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
)
from reconciler.api._records import EventRecord, InvolvedObject, NodeLease
from reconciler.api._server import NAMESPACE_FINALIZER, SYSTEM_NAMESPACES, Api, random_suffix
from reconciler.api._tokens import (
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    Identity,
    generate_token,
)
from reconciler.api._types import EventKind, ObjectList, StoredObject, WatchEvent, WatchStream
from reconciler.api.clock import Clock, ManualClock, SystemClock, now_utc

__all__ = [
    "DATA_KEYS_FILE",
    "NAMESPACE_FINALIZER",
    "SERVICE_ACCOUNT_NAME_ANNOTATION",
    "SERVICE_ACCOUNT_TOKEN_TYPE",
    "SERVICE_ACCOUNT_UID_ANNOTATION",
    "SYSTEM_NAMESPACES",
    "AlreadyExists",
    "Api",
    "ApiError",
    "AsyncApi",
    "Cause",
    "Clock",
    "Conflict",
    "DataKeysMismatch",
    "EventKind",
    "EventRecord",
    "Expired",
    "Forbidden",
    "Identity",
    "InsufficientStorage",
    "Invalid",
    "InvolvedObject",
    "ManualClock",
    "NodeLease",
    "NotFound",
    "ObjectList",
    "StoredObject",
    "SystemClock",
    "TooLarge",
    "Unavailable",
    "WatchEvent",
    "WatchStream",
    "check_data_keys",
    "generate_token",
    "now_utc",
    "random_suffix",
    "seal_secrets",
]

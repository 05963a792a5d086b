"""The API server: the only code that touches the store.

Sits between :mod:`reconciler.store` and everything that reads or writes cluster state
(controllers, scheduler, sync, agents' status reports, the CLI). Offers:

- :class:`Api` — typed ``create`` / ``get`` / ``list`` / ``update`` / ``update_status`` /
  ``delete`` / ``watch`` for every kind in :mod:`schemas`, the ``bind`` sub-resource,
  ``record_event``, node heartbeat leases and ``authenticate_token``; ``update_document``
  (the HTTP server's update: a parsed body in, :class:`StoredObject` bytes out). Blocking,
  thread-safe (code on an event loop calls it through ``asyncio.to_thread``).
- Errors, all :class:`ApiError` (``reason``, HTTP-ish ``code``): :class:`NotFound`,
  :class:`AlreadyExists`, :class:`Conflict`, :class:`Invalid` (``causes``: field path +
  message), :class:`Expired` (410: relist), :class:`Forbidden`, :class:`TooLarge`,
  :class:`Unavailable`; and the three only the HTTP client raises, :class:`Unauthorized`,
  :class:`BadRequest`, :class:`TooManyRequests`.
- :class:`ObjectList`, :class:`WatchEvent`, :class:`WatchStream`; :class:`EventRecord`,
  :class:`NodeLease`, :class:`Identity`; clocks (:class:`Clock`, :class:`SystemClock`,
  :class:`ManualClock`).

For the HTTP server (:mod:`reconciler.api.server`), which serves stored bytes without decoding
them: :func:`object_key` and :func:`kind_prefix` (the store key layout), :func:`event_kind`
(a store event as a watch event type) and :func:`invalid_from` (a validation error as
:class:`Invalid`).

Objects live at ``/registry/<plural>/<namespace>/<name>`` as JSON; ``resourceVersion`` is the
key's store ``mod_revision``. :func:`seal_secrets` wraps a store so Secret objects are
AES-GCM sealed at rest with the data keys in ``<state-dir>/data-keys`` (:data:`DATA_KEYS_FILE`).
"""

from reconciler.api._api import NAMESPACE_FINALIZER, SYSTEM_NAMESPACES, Api, random_suffix
from reconciler.api._atrest import (
    DATA_KEYS_FILE,
    DataKeysMismatch,
    check_data_keys,
    seal_secrets,
)
from reconciler.api._codec import REGISTRY, invalid_from, kind_prefix, object_key
from reconciler.api._errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Cause,
    Conflict,
    DisruptionBudgetExceeded,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from reconciler.api._records import EventRecord, InvolvedObject, NodeLease
from reconciler.api._tokens import (
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    Identity,
    generate_token,
)
from reconciler.api._types import (
    EventKind,
    ObjectList,
    StoredObject,
    WatchEvent,
    WatchStream,
    event_kind,
)
from reconciler.api.clock import Clock, ManualClock, SystemClock, now_utc

__all__ = [
    "DATA_KEYS_FILE",
    "NAMESPACE_FINALIZER",
    "REGISTRY",
    "SERVICE_ACCOUNT_NAME_ANNOTATION",
    "SERVICE_ACCOUNT_TOKEN_TYPE",
    "SERVICE_ACCOUNT_UID_ANNOTATION",
    "SYSTEM_NAMESPACES",
    "AlreadyExists",
    "Api",
    "ApiError",
    "BadRequest",
    "Cause",
    "Clock",
    "Conflict",
    "DataKeysMismatch",
    "DisruptionBudgetExceeded",
    "EventKind",
    "EventRecord",
    "Expired",
    "Forbidden",
    "Identity",
    "Invalid",
    "InvolvedObject",
    "ManualClock",
    "NodeLease",
    "NotFound",
    "ObjectList",
    "StoredObject",
    "SystemClock",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "WatchEvent",
    "WatchStream",
    "check_data_keys",
    "event_kind",
    "generate_token",
    "invalid_from",
    "kind_prefix",
    "now_utc",
    "object_key",
    "random_suffix",
    "seal_secrets",
]

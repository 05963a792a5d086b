"""Content negotiation: which form of a response the client's ``Accept`` header asks for.

Called by the REST handler for every read. Capstan answers JSON in three shapes: the plain
object or list, a ``meta.k8s.io/v1 Table`` (what ``kubectl get`` asks for, so it can print
the columns Kubernetes prints for each kind), and for ``/api`` and ``/apis`` the aggregated
``APIGroupDiscoveryList``. The entries of ``Accept`` are tried in the client's order (highest
``q`` first), as Kubernetes does; kinds of bodies Capstan does not serve (protobuf, CBOR,
YAML) are passed over, so ``application/vnd.kubernetes.protobuf,application/json`` is
answered in JSON, and an ``Accept`` that names none of the served forms is a 406.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.api.server._status import HttpError

__all__ = ["TABLE_MEDIA_TYPE", "Form", "negotiate"]

#: The media type of a ``Table`` response (Kubernetes writes the parameters in this order).
TABLE_MEDIA_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


class Form(enum.Enum):
    """The shape of a JSON response."""

    OBJECT = "object"
    TABLE = "table"
    AGGREGATED_DISCOVERY = "aggregated"


@dataclass(frozen=True)
class _Range:
    media: str
    params: Mapping[str, str]
    q: float


def _parse(header: str) -> list[_Range]:
    ranges: list[_Range] = []
    for entry in header.split(","):
        media, *raw_params = (part.strip() for part in entry.split(";"))
        if not media:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        ranges.append(_Range(media.lower(), params, q))
    # Stable: entries with the same q keep the client's order.
    return sorted(ranges, key=lambda r: -r.q)


def _form(entry: _Range, *, allowed: frozenset[Form]) -> Form | None:
    if entry.q <= 0:
        return None
    if entry.media in ("*/*", "application/*"):
        return Form.OBJECT
    if entry.media != "application/json":
        return None
    shape = entry.params.get("as")
    if shape is None:
        return Form.OBJECT
    group, version = entry.params.get("g"), entry.params.get("v")
    if shape == "Table" and group == "meta.k8s.io" and version in ("v1", "v1beta1"):
        chosen = Form.TABLE
    elif shape == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io" and version == "v2":
        chosen = Form.AGGREGATED_DISCOVERY
    else:
        return None
    return chosen if chosen in allowed else None


def negotiate(accept: str | None, *, allowed: frozenset[Form]) -> Form:
    """The form to answer in: the first entry of ``accept`` whose form is one of ``allowed``
    (plain JSON is always allowed). No header, or an empty one, means plain JSON."""
    if not accept or not accept.strip():
        return Form.OBJECT
    allowed = allowed | {Form.OBJECT}
    for entry in _parse(accept):
        form = _form(entry, allowed=allowed)
        if form is not None:
            return form
    raise HttpError(
        406,
        f"none of the media types in Accept ({accept}) is served here; "
        "the server answers application/json (optionally as=Table;"
        "g=meta.k8s.io;v=v1)",
    )

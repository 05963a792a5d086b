"""Request bodies in Kubernetes' protobuf encoding, read into the JSON form every handler
takes.

kubectl's typed clients (``kubectl create configmap|secret|namespace|serviceaccount|
deployment|service|role|...``) send their object as ``application/vnd.kubernetes.protobuf``
whatever the server prefers; Kubernetes reads it, so Capstan does too. Called by the REST
handler for a create or update whose Content-Type says protobuf; responses stay JSON (every
such client accepts it). The wire format is Kubernetes' envelope (the magic ``k8s\\0``, then a
``runtime.Unknown`` carrying apiVersion, kind and the object's bytes); the field numbers and
JSON names come from the upstream ``generated.proto`` files (``_protobuf_table``, made by
``scripts/k8s-proto-table``). A field or a kind the table does not know is a 400 naming it,
never dropped.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reconciler.api.server._protobuf_table import MESSAGES
from reconciler.api.server._status import HttpError

__all__ = ["PROTOBUF_MEDIA_TYPE", "decode_object", "message_for"]

PROTOBUF_MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
_PACKAGES = {
    "v1": "k8s.io.api.core.v1",
    "apps/v1": "k8s.io.api.apps.v1",
    "rbac.authorization.k8s.io/v1": "k8s.io.api.rbac.v1",
    "autoscaling/v1": "k8s.io.api.autoscaling.v1",
    "authorization.k8s.io/v1": "k8s.io.api.authorization.v1",
}
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

Wire = tuple[int, int, Any]  # field number, wire type, raw value (int or bytes)


class _Malformed(ValueError):
    pass


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> list[Wire]:
    out: list[Wire] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, at = _varint(data, at)
        elif wire == _BYTES:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise _Malformed("truncated field")
            value, at = data[at : at + size], at + size
        elif wire == _FIXED64:
            value, at = data[at : at + 8], at + 8
        elif wire == _FIXED32:
            value, at = data[at : at + 4], at + 4
        else:
            raise _Malformed(f"wire type {wire} of field {number}")
        out.append((number, wire, value))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32:
        value = ((value + (1 << 31)) % (1 << 32)) - (1 << 31)
    return value


def _scalar(type_: str, wire: int, raw: Any) -> Any:
    if type_ == "string":
        return bytes(raw).decode("utf-8")
    if type_ == "bytes":
        return base64.b64encode(bytes(raw)).decode("ascii")
    if type_ == "bool":
        return bool(raw)
    if type_ in ("int32", "int64"):
        return _signed(int(raw), 32 if type_ == "int32" else 64)
    if type_ in ("uint32", "uint64"):
        return int(raw)
    if type_ in ("double", "float"):
        return struct.unpack("<d" if type_ == "double" else "<f", bytes(raw))[0]
    raise _Malformed(f"unknown scalar type {type_}")


def _packed(type_: str, raw: bytes) -> list[Any]:
    values: list[Any] = []
    at = 0
    while at < len(raw):
        value, at = _varint(raw, at)
        values.append(_scalar(type_, _VARINT, value))
    return values


def _time(data: bytes, *, micro: bool) -> str | None:
    parts = {n: v for n, _, v in _fields(data)}
    seconds = _signed(int(parts.get(1, 0)), 64)
    nanos = int(parts.get(2, 0))
    if not seconds and not nanos:
        return None  # Go's zero Time, which its JSON form writes as null
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    if micro:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(data: bytes) -> int | str:
    parts = {n: v for n, _, v in _fields(data)}
    if int(parts.get(1, 0)) == 1:
        return bytes(parts.get(3, b"")).decode("utf-8")
    return _signed(int(parts.get(2, 0)), 32)


def _first_bytes(data: bytes) -> bytes:
    return next((bytes(v) for n, _, v in _fields(data) if n == 1), b"")


def _duration(data: bytes) -> str:
    nanos = _signed(int(next((v for n, _, v in _fields(data) if n == 1), 0)), 64)
    return f"{nanos / 1e9:g}s"


_SPECIAL: dict[str, Callable[[bytes], Any]] = {
    f"{_META}.Time": lambda d: _time(d, micro=False),
    f"{_META}.MicroTime": lambda d: _time(d, micro=True),
    f"{_META}.Duration": _duration,
    f"{_META}.FieldsV1": lambda d: json.loads(_first_bytes(d) or b"{}"),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": lambda d: json.loads(
        _first_bytes(d) or b"null"
    ),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda d: _first_bytes(d).decode("utf-8"),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
}


def _value(type_: str, wire: int, raw: Any, *, where: str) -> Any:
    special = _SPECIAL.get(type_)
    if special is not None:
        return special(bytes(raw))
    if type_ in MESSAGES:
        return _message(type_, bytes(raw), where=where)
    return _scalar(type_, wire, raw)


def _is_zero(value: Any) -> bool:
    return value in ("", 0, False) or value == {}


def _message(name: str, data: bytes, *, where: str) -> dict[str, Any]:
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(data):
        field = table.get(number)
        if field is None:
            short = name.rsplit(".", 1)[-1]
            raise HttpError(
                400,
                f"protobuf body: field {number} of {short} (at {where or 'the object'}) is "
                "not one Capstan knows; send the object as application/json",
            )
        json_name, type_, repeated, omit_zero = field
        path = f"{where}.{json_name}" if where else json_name
        if type_.startswith("map:"):
            entry = {n: (w, v) for n, w, v in _fields(bytes(raw))}
            key = bytes(entry.get(1, (_BYTES, b""))[1]).decode("utf-8")
            value_wire, value_raw = entry.get(2, (_BYTES, b""))
            mapping = out.setdefault(json_name, {})
            mapping[key] = _value(type_[4:], value_wire, value_raw, where=f"{path}[{key}]")
            continue
        if repeated:
            items = out.setdefault(json_name, [])
            if (
                wire == _BYTES
                and type_ not in MESSAGES
                and type_ not in _SPECIAL
                and type_
                not in (
                    "string",
                    "bytes",
                )
            ):
                items.extend(_packed(type_, bytes(raw)))
            else:
                items.append(_value(type_, wire, raw, where=f"{path}[{len(items)}]"))
            continue
        value = _value(type_, wire, raw, where=path)
        if not json_name:  # an embedded message (Go's json:",inline")
            out.update(value)
            continue
        if value is None or (omit_zero and _is_zero(value)):
            out.pop(json_name, None)
            continue
        out[json_name] = value
    return out


def message_for(api_version: str, kind: str) -> str | None:
    """The protobuf message of a kind (``k8s.io.api.core.v1.Pod``), None if not known."""
    package = _PACKAGES.get(api_version)
    name = f"{package}.{kind}" if package else ""
    return name if name in MESSAGES else None


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded Kubernetes object (the body of a create or an
    update); a 400 for bytes that are not one, or a kind Capstan has no table for."""
    if not body.startswith(_MAGIC):
        raise HttpError(400, "protobuf body: does not start with Kubernetes' k8s\\0 prefix")
    try:
        envelope = {n: v for n, _, v in _fields(body[len(_MAGIC) :])}
        type_meta = {n: bytes(v).decode("utf-8") for n, _, v in _fields(envelope.get(1, b""))}
        encoding = bytes(envelope.get(3, b"")).decode("utf-8")
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        if encoding:
            raise HttpError(415, f"protobuf body: content encoding {encoding!r} is not served")
        name = message_for(api_version, kind)
        if name is None:
            raise HttpError(
                415,
                f"protobuf body: {api_version}/{kind} is not a kind Capstan reads as protobuf; "
                "send application/json",
            )
        document = _message(name, bytes(envelope.get(2, b"")), where="")
    except (_Malformed, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError too
        raise HttpError(400, f"protobuf body is malformed: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **document}

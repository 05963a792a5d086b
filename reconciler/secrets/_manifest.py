"""Sealing and opening the Secrets of a manifest file, value by value (docs/secrets.md).

Used by ``capstan secret encrypt|decrypt|edit|rotate`` on the YAML text of a file, and by the
sync (:mod:`reconciler.secrets._open`) on typed Secrets. A sealed Secret carries the annotation
``capstan.io/encrypted: age`` and one armored age message per key: in ``data`` the message's
plaintext is the value's bytes (base64 is undone before sealing), in ``stringData`` its UTF-8
text. Documents that are not Secrets pass through untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml
from pyrage import x25519

from reconciler.secrets._age import AgeError, Identities, seal_value
from schemas import Secret
from schemas.sealed import (
    DIGESTS_ANNOTATION,
    ENCRYPTED_ANNOTATION,
    ENCRYPTED_VALUE,
    ciphertext_digest,
    is_armored,
)

__all__ = [
    "dump_documents",
    "load_documents",
    "open_document",
    "open_secret",
    "plaintexts",
    "seal_document",
]

_FIELDS = ("data", "stringData")


def load_documents(text: str, *, where: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise AgeError(f"{where}{line}: not valid YAML") from None


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Armored messages (and any multi-line value) as block scalars: one line per armor line,
    # so a Git diff of a changed value stays within that key.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_documents(docs: Sequence[Any]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _is_secret(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Secret"


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"Secret {meta.get('name', '?')}" if isinstance(meta, Mapping) else "Secret ?"


def seal_document(
    doc: Any,
    recipients: Sequence[x25519.Recipient],
    *,
    keep: Callable[[str, str, bytes], str | None] | None = None,
) -> Any:
    """``doc`` with every plain value of a Secret sealed for ``recipients`` (values already
    sealed are kept). ``keep(field, key, plaintext)`` may return an existing message to reuse
    for an unchanged value (``edit``). Not a Secret: ``doc`` itself."""
    if not _is_secret(doc):
        return doc
    out = dict(doc)
    for field in _FIELDS:
        values = doc.get(field)
        if not values:
            continue
        sealed: dict[str, str] = {}
        for key, value in values.items():
            text = str(value)
            if is_armored(text):
                sealed[key] = text
                continue
            plain = _plain_bytes(field, key, text, doc)
            reused = keep(field, key, plain) if keep is not None else None
            sealed[key] = reused if reused is not None else seal_value(plain, recipients)
        out[field] = sealed
    meta = dict(out.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), ENCRYPTED_ANNOTATION: ENCRYPTED_VALUE}
    out["metadata"] = meta
    return out


def _plain_bytes(field: str, key: str, text: str, doc: Mapping[str, Any]) -> bytes:
    if field == "stringData":
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AgeError(
            f"{_name(doc)}: data.{key} is not base64; put plain text in stringData"
        ) from None


def plaintexts(doc: Any, identities: Identities) -> dict[tuple[str, str], bytes]:
    """(field, key) -> plaintext of every sealed value of a Secret document."""
    found: dict[tuple[str, str], bytes] = {}
    if not _is_secret(doc):
        return found
    for field in _FIELDS:
        for key, value in (doc.get(field) or {}).items():
            if is_armored(str(value)):
                try:
                    found[(field, key)] = identities.open(str(value))
                except AgeError as exc:
                    raise AgeError(f"{_name(doc)}: {field}.{key} {exc}") from None
    return found


def open_document(doc: Any, identities: Identities) -> Any:
    """``doc`` with every sealed value of a Secret opened (for people to read or edit); the
    encryption annotation goes, so sealing it again is ``seal_document``."""
    if not _is_secret(doc):
        return doc
    opened = plaintexts(doc, identities)
    out = dict(doc)
    for field in _FIELDS:
        values = doc.get(field)
        if not values:
            continue
        out[field] = {
            key: _shown(field, opened[(field, key)]) if (field, key) in opened else value
            for key, value in values.items()
        }
    meta = dict(out.get("metadata") or {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != ENCRYPTED_ANNOTATION
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def _shown(field: str, plain: bytes) -> str:
    if field == "data":
        return base64.b64encode(plain).decode()
    return plain.decode("utf-8", errors="replace")


def open_secret(secret: Secret, identities: Identities) -> tuple[Secret, dict[str, str]]:
    """A sealed Secret as the store keeps it: every value opened into ``data`` (base64), and
    the per-key ciphertext digests in ``capstan.io/encrypted-digests`` (so a plan without the
    key still compares it). Raises AgeError per key, as ``(field.key, message)`` pairs in
    its args."""
    data: dict[str, str] = {}
    digests: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for field, values in (("data", secret.data), ("stringData", secret.string_data)):
        for key, armored in values.items():
            try:
                plain = identities.open(armored)
            except AgeError as exc:
                problems.append((f"{field}.{key}", str(exc)))
                continue
            data[key] = base64.b64encode(plain).decode()
            digests[key] = ciphertext_digest(armored)
    if problems:
        raise AgeError(*problems)
    annotations = {
        k: v for k, v in secret.metadata.annotations.items() if k != ENCRYPTED_ANNOTATION
    }
    annotations[DIGESTS_ANNOTATION] = json.dumps(digests, sort_keys=True, separators=(",", ":"))
    meta = secret.metadata.model_copy(update={"annotations": annotations})
    opened = secret.model_copy(update={"metadata": meta, "data": data, "string_data": {}})
    return opened, digests

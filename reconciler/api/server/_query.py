"""Request query parameters and bodies, validated before anything acts on them.

Used by the REST handlers: every ``?labelSelector=``, ``?watch=``, ``?resourceVersion=``,
``?timeoutSeconds=`` and JSON body passes through here, and bad input becomes a 400/413/415
``Status`` instead of reaching the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from reconciler.api.server._status import HttpError
from schemas import LabelSelector

__all__ = [
    "json_object",
    "merge_patch",
    "parse_bool",
    "parse_label_selector",
    "parse_revision",
    "parse_timeout",
]

_SET_RE = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\Z")
_MAX_SELECTOR_CHARS = 4096


def parse_bool(name: str, value: str | None) -> bool:
    if value is None or value in ("false", "0", ""):
        return False
    if value in ("true", "1"):
        return True
    raise HttpError(400, f"{name}={value!r}: must be true or false")


def parse_revision(value: str | None) -> int | None:
    """A ``resourceVersion``: digits (at most 18, so it fits every store's integer)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or not value.isascii() or len(value) > 18:
        raise HttpError(400, f"resourceVersion={value!r}: must be a non-negative integer")
    return int(value)


def parse_timeout(value: str | None, *, maximum: int) -> int:
    if value is None or value == "":
        return maximum
    if not value.isdigit() or not value.isascii() or len(value) > 6:
        raise HttpError(400, f"timeoutSeconds={value!r}: must be a non-negative integer")
    return min(int(value), maximum)


def _split_terms(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        elif char == "," and depth == 0:
            terms.append(text[start:index].strip())
            start = index + 1
    if depth != 0:
        raise ValueError("unbalanced parentheses")
    terms.append(text[start:].strip())
    return terms


def _requirement(term: str) -> dict[str, Any]:
    match = _SET_RE.match(term)
    if match:
        values = [v.strip() for v in match.group("values").split(",")]
        operator = "In" if match.group("op") == "in" else "NotIn"
        return {"key": match.group("key"), "operator": operator, "values": values}
    if term.startswith("!"):
        return {"key": term[1:].strip(), "operator": "DoesNotExist"}
    for op, operator in (("!=", "NotIn"), ("==", "In"), ("=", "In")):
        if op in term:
            key, _, value = term.partition(op)
            return {"key": key.strip(), "operator": operator, "values": [value.strip()]}
    return {"key": term, "operator": "Exists"}


def parse_label_selector(text: str | None) -> LabelSelector | None:
    """Kubernetes' selector syntax: ``a=b,c!=d,e in (x,y),f notin (z),g,!h``."""
    if text is None or not text.strip():
        return None
    if len(text) > _MAX_SELECTOR_CHARS:
        raise HttpError(400, f"labelSelector is longer than {_MAX_SELECTOR_CHARS} characters")
    try:
        terms = _split_terms(text)
        if any(not term for term in terms):
            raise ValueError("empty term")
        requirements = [_requirement(term) for term in terms]
        return LabelSelector.model_validate({"matchExpressions": requirements}, by_name=False)
    except (ValueError, ValidationError) as exc:
        detail = (
            "; ".join(e["msg"] for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise HttpError(400, f"unable to parse labelSelector {text!r}: {detail}") from exc


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result

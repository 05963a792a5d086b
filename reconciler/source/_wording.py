"""Pydantic's error wording turned into the loader's: "must be an integer", not "Input should
be a valid integer, unable to parse string as an integer".

Called by ``load._message`` for every validation error that is not a missing or unknown field.
Capstan's own rule errors (``schemas._validation.rule_error``) are already worded for people and
pass through; pydantic's built-in errors are reworded from their type and context, so no
message a user sees carries pydantic's phrasing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["plain_message"]

_TYPE_WORDS: Final[Mapping[str, str]] = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "datetime_type": "must be a time (RFC 3339, e.g. 2024-05-01T12:00:00Z)",
    "datetime_parsing": "must be a time (RFC 3339, e.g. 2024-05-01T12:00:00Z)",
    "datetime_from_date_parsing": "must be a time (RFC 3339, e.g. 2024-05-01T12:00:00Z)",
    "timezone_aware": "must name its time zone (e.g. a trailing Z for UTC)",
    "none_required": "must be empty",
}
# Pydantic's sentence openings, for an error type not worded above.
_OPENINGS: Final = (
    ("Input should be ", "must be "),
    ("Input should have ", "must have "),
    ("Input should ", "must "),
    ("Value should be ", "must be "),
    ("Value error, ", ""),
    ("Assertion failed, ", ""),
)


def plain_message(entry: Mapping[str, Any]) -> str:
    """The message for one entry of ``ValidationError.errors()``."""
    kind = str(entry.get("type", ""))
    context: Mapping[str, Any] = entry.get("ctx") or {}
    worded = _TYPE_WORDS.get(kind) or _with_context(kind, context)
    if worded is not None:
        return worded
    message = str(entry.get("msg", "invalid value"))
    for opening, replacement in _OPENINGS:
        if message.startswith(opening):
            message = replacement + message.removeprefix(opening)
            break
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    return message


def _with_context(kind: str, context: Mapping[str, Any]) -> str | None:
    if kind == "literal_error" and "expected" in context:
        return f"must be {context['expected']}"
    if kind in ("too_short", "too_long"):
        bound = context.get("min_length" if kind == "too_short" else "max_length")
        if isinstance(bound, int):
            items = "item" if bound == 1 else "items"
            return f"must have at {'least' if kind == 'too_short' else 'most'} {bound} {items}"
    if kind == "string_too_short":
        bound = context.get("min_length")
        return "must not be empty" if bound == 1 else f"must be at least {bound} characters"
    if kind == "string_too_long":
        return f"must be at most {context.get('max_length')} characters"
    bounds = {
        "greater_than_equal": ("ge", "{} or more"),
        "less_than_equal": ("le", "{} or less"),
        "greater_than": ("gt", "more than {}"),
        "less_than": ("lt", "less than {}"),
    }
    if kind in bounds:
        key, template = bounds[kind]
        if key in context:
            return "must be " + template.format(context[key])
    return None

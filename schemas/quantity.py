"""Kubernetes resource quantities (``100m``, ``0.5``, ``128Mi``, ``1G``, ``1e3``) as exact numbers.

Used by the schemas for ``resources``, node capacity and ``emptyDir.sizeLimit``; the scheduler
and the agent turn them into millicores and bytes with :func:`cpu_millicores` and
:func:`memory_bytes`. A :class:`Quantity` keeps the text it was written as, so a manifest
round-trips unchanged, and exposes the exact value as a :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any, Final

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["Quantity", "cpu_millicores", "memory_bytes", "parse_quantity"]

# The grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal number, then a binary
# suffix (Ki..Ei), a decimal exponent (e3, E-2) or a decimal SI suffix (n, u, m, "", k..E).
# WARNING: "E" alone is exa, "E3" is an exponent; the regex tries the exponent form first.
_QUANTITY_RE: Final = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))$"
)
# The same grammar without named groups, for JSON Schema (ECMA-262 regular expressions).
_JSON_PATTERN: Final = (
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)((Ki|Mi|Gi|Ti|Pi|Ei)|[eE][+-]?[0-9]+|[numkMGTPE]?)$"
)
_BINARY: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: Final = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
# Longer texts are not quantities anyone means; bounding them keeps Decimal work cheap.
_MAX_TEXT: Final = 64
_MAX_EXPONENT: Final = 64
_PRECISION: Final = 200


def parse_quantity(text: str) -> Decimal:
    """Parse a quantity's text to its exact value; raise ``ValueError`` saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"quantity must be a string or a number, not {type(text).__name__}")
    if not text:
        raise ValueError("quantity must not be empty")
    if len(text) > _MAX_TEXT:
        raise ValueError(f"quantity is longer than {_MAX_TEXT} characters")
    match = _QUANTITY_RE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a quantity: expected a number with an optional suffix "
            "(m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or exponent (e3), like 100m, 0.5, 128Mi"
        )
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        number = Decimal(match["number"])
        if match["binary"] is not None:
            scaled: Decimal = number * (2 ** _BINARY[match["binary"]])
            return scaled
        if match["exponent"] is not None:
            exponent = int(match["exponent"])
            if abs(exponent) > _MAX_EXPONENT:
                raise ValueError(f"{text!r}: exponent {exponent} is out of range")
            return number.scaleb(exponent)
        return number.scaleb(_DECIMAL[match["decimal"]])


def _text_of(value: object) -> str:
    """The quantity text of a YAML/JSON scalar: strings as they are, numbers as written."""
    if isinstance(value, bool):
        raise ValueError("quantity must be a string or a number, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("quantity must be a finite number")
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"quantity must be a string or a number, not {type(value).__name__}")


class Quantity:
    """A resource quantity: the text as written (``text``) and its exact value (``value``).

    Equality and ordering compare values, as Kubernetes' semantic equality does:
    ``Quantity("1") == Quantity("1000m")``; their ``text`` (and manifest form) still differ.
    """

    __slots__ = ("_text", "_value")

    def __init__(self, value: str | int | float | Decimal) -> None:
        text = _text_of(value)
        self._text = text
        self._value = parse_quantity(text)

    @property
    def text(self) -> str:
        return self._text

    @property
    def value(self) -> Decimal:
        return self._value

    @property
    def millicores(self) -> int:
        """The value read as CPU, in millicores, rounded up (``100m`` → 100, ``0.5`` → 500)."""
        return _ceil(self._value * 1000)

    @property
    def bytes(self) -> int:
        """The value read as memory or storage, in bytes, rounded up (``100m`` → 1)."""
        return _ceil(self._value)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Quantity({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __lt__(self, other: Quantity) -> bool:
        return self._value < other._value

    def __le__(self, other: Quantity) -> bool:
        return self._value <= other._value

    def __gt__(self, other: Quantity) -> bool:
        return self._value > other._value

    def __ge__(self, other: Quantity) -> bool:
        return self._value >= other._value

    def __setattr__(self, name: str, value: object) -> None:
        # Quantities sit inside frozen models; they must be immutable too.
        if hasattr(self, "_value"):
            raise AttributeError("Quantity is immutable")
        object.__setattr__(self, name, value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize, when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": _JSON_PATTERN},
                {"type": "number"},
            ],
            "description": "A Kubernetes resource quantity, e.g. 100m, 0.5, 128Mi, 1G, 1e3.",
        }


def _ceil(value: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return int(value.to_integral_value(rounding=ROUND_CEILING))


def _validate(value: object) -> Quantity:
    if isinstance(value, Quantity):
        return value
    try:
        return Quantity(value)  # type: ignore[arg-type]  # _text_of rejects other types
    except (ValueError, InvalidOperation) as exc:
        raise PydanticCustomError("quantity", "{reason}", {"reason": str(exc)}) from None


def _serialize(value: Quantity) -> str:
    return value.text


def cpu_millicores(value: Quantity | str | int | float) -> int:
    """CPU quantity in millicores, rounded up: ``"100m"`` → 100, ``0.5`` → 500, ``2`` → 2000."""
    return _validate_plain(value).millicores


def memory_bytes(value: Quantity | str | int | float) -> int:
    """Memory quantity in bytes, rounded up: ``"128Mi"`` → 134217728, ``"100m"`` → 1."""
    return _validate_plain(value).bytes


def _validate_plain(value: Quantity | str | int | float) -> Quantity:
    return value if isinstance(value, Quantity) else Quantity(value)

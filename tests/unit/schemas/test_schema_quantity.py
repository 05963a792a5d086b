from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from schemas import Quantity, cpu_millicores, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("2e-3", Decimal("0.002")),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Ei", Decimal(2**60)),
        ("3k", Decimal(3000)),
        ("2T", Decimal(2 * 10**12)),
        ("1P", Decimal(10**15)),
        ("250u", Decimal("0.00025")),
        ("5n", Decimal("0.000000005")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+2M", Decimal(2 * 10**6)),
        ("-1", Decimal(-1)),
        ("0", Decimal(0)),
    ],
)
def test_parse_quantity_exact(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "Mi", "1.2.3", "1e", "1Kb", "1 Mi", "1mi", "0x10", "ten", "1e99", "1" * 65, "\u0661"],
)
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError, match=r"quantity|exponent"):
        parse_quantity(text)


def test_quantity_from_yaml_numbers_keeps_written_form():
    assert Quantity(1).text == "1"
    assert Quantity(0.5).text == "0.5"
    assert Quantity(0.5).value == Decimal("0.5")
    assert Quantity(1e-05).value == Decimal("0.00001")


@pytest.mark.parametrize("bad", [True, None, [], float("inf"), float("nan")])
def test_quantity_rejects_non_numbers(bad):
    with pytest.raises(ValueError):
        Quantity(bad)


@pytest.mark.parametrize(
    ("value", "millicores"),
    [("100m", 100), ("0.5", 500), (2, 2000), ("1.0001", 1001), ("0.1m", 1), ("1e-3", 1)],
)
def test_cpu_millicores_rounds_up(value, millicores):
    assert cpu_millicores(value) == millicores


@pytest.mark.parametrize(
    ("value", "size"),
    [("100m", 1), ("128Mi", 134_217_728), ("1G", 10**9), ("1.5Ki", 1536), (Quantity("1k"), 1000)],
)
def test_memory_bytes_rounds_up(value, size):
    assert memory_bytes(value) == size


def test_quantities_compare_by_value_and_keep_text():
    assert Quantity("1") == Quantity("1000m")
    assert Quantity("1Ki") > Quantity("1k")
    assert Quantity("500m") <= Quantity("0.5")
    assert {Quantity("1"), Quantity("1000m")} == {Quantity("1")}
    assert str(Quantity("1000m")) == "1000m"
    assert repr(Quantity("1Gi")) == "Quantity('1Gi')"


def test_quantity_is_immutable():
    quantity = Quantity("1")
    with pytest.raises(AttributeError):
        quantity._value = Decimal(2)


class _Holder(BaseModel):
    size: Quantity


def test_quantity_as_a_pydantic_field():
    holder = _Holder.model_validate({"size": "128Mi"})
    assert holder.size.bytes == 128 * 2**20
    assert holder.model_dump(mode="json") == {"size": "128Mi"}
    assert _Holder.model_validate({"size": 0.25}).model_dump(mode="json") == {"size": "0.25"}


def test_bad_quantity_error_is_at_the_field_and_says_why():
    with pytest.raises(ValidationError) as info:
        _Holder.model_validate({"size": "12 apples"})
    (error,) = info.value.errors()
    assert error["loc"] == ("size",)
    assert error["type"] == "quantity"
    assert "not a quantity" in error["msg"]

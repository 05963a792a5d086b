"""The module lists of pyproject's import-linter contracts name every module they mean to.

A ``forbidden`` contract only checks the modules it lists, so a controller or a private API
module added later would slip past it unnoticed; ``lint-imports`` (scripts/test) cannot
tell. These tests hold each list to the modules on disk.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        config = tomllib.load(handle)
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _children(package: str) -> set[str]:
    """The dotted names of ``package``'s direct submodules and subpackages."""
    directory = ROOT.joinpath(*package.split("."))
    names = {p.stem for p in directory.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in directory.iterdir() if (p / "__init__.py").is_file()}
    return {f"{package}.{name}" for name in names}


CONTROLLERS = _children("reconciler.controllers") - {"reconciler.controllers.runtime"}


@pytest.mark.parametrize(
    "name",
    [
        "sync, plan, rollback and the node dispatcher read workloads/, never a controller",
        "the scheduler uses the controller runtime, not the controllers",
    ],
)
def test_every_controller_is_forbidden_to_the_layers_that_read_workloads(name: str) -> None:
    assert set(_contracts()[name]["forbidden_modules"]) == CONTROLLERS


def test_every_private_api_module_is_kept_from_the_http_server() -> None:
    private = {m for m in _children("reconciler.api") if m.rsplit(".", 1)[1].startswith("_")}
    contract = _contracts()["the HTTP server uses the API's public seam, not its private modules"]
    assert set(contract["forbidden_modules"]) == private


def test_the_helpers_outside_the_layers_are_the_ones_the_helper_contract_checks() -> None:
    contracts = _contracts()
    layers = contracts["control-plane layers"]
    helpers = {f"reconciler.{name}" for name in layers["exhaustive_ignores"]}
    assert layers["exhaustive"] is True
    above_api = layers["layers"][: layers["layers"].index("api")]
    upper = {
        f"reconciler.{name.strip()}" for layer in above_api for name in re.split("[:|]", layer)
    }
    contract = contracts["the shared helpers import no layer above the API"]
    assert set(contract["source_modules"]) == helpers
    assert set(contract["forbidden_modules"]) == upper

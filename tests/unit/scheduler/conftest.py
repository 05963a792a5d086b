"""Fixtures of the live scheduler tests: a store-backed API on a manual clock, hollow nodes
(``tests.fixtures.hollow``) and the scheduler alone in a controller manager."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.manager import ControllerManager
from reconciler.scheduler import Scheduler
from tests.fixtures.hollow import HollowCluster, temp_api


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(tmp_path: Path, clock: ManualClock) -> Iterator[Api]:
    with temp_api(tmp_path, clock) as api:
        yield api


@pytest.fixture
def hollow(api: Api, clock: ManualClock) -> Iterator[HollowCluster]:
    with HollowCluster(api, clock=clock, start_delay_s=1.0) as cluster:
        yield cluster


@pytest.fixture
def scheduler(api: Api, clock: ManualClock) -> Iterator[Scheduler]:
    manager = ControllerManager(
        api, clock=clock, components=[functools.partial(Scheduler, unschedulable_retry_s=3600)]
    )
    with manager:
        yield manager.component(Scheduler)

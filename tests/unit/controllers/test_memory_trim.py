"""The memory trimmer trims once a burst of changes has passed, and not while nothing moves."""

from __future__ import annotations

import sys

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.runtime import ControllerContext, InformerFactory, MemoryTrimmer
from reconciler.controllers.runtime._trim import glibc_trim, limit_malloc_arenas
from schemas import ConfigMap, ObjectMeta


def _write(api: Api, factory: InformerFactory, names: list[str]) -> None:
    revision = 0
    for name in names:
        created = api.create(ConfigMap(metadata=ObjectMeta(name=name)))
        revision = int(created.metadata.resource_version or 0)
    assert factory.informer(ConfigMap).wait_for_revision(revision, 5)


def test_trims_after_a_burst_or_its_tail_and_never_while_idle(api: Api, clock: ManualClock) -> None:
    factory = InformerFactory(api)
    factory.informer(ConfigMap)
    trims: list[int] = []
    trimmer = MemoryTrimmer(
        ControllerContext(api, factory, clock),
        burst=5,
        quiet=2,
        trim=lambda: trims.append(factory.last_revision()),
    )
    factory.start()
    try:
        assert factory.wait_synced(5)
        trimmer.start()
        trimmer.stop()  # its thread is not what this test drives: tick() is
        assert not trimmer.tick()  # nothing moved
        _write(api, factory, ["a", "b", "c"])
        assert not trimmer.tick()  # 3 changes, still coming in: the burst goes on
        assert trimmer.tick()  # none since: the burst's tail has passed
        assert not trimmer.tick()
        _write(api, factory, [f"d{i}" for i in range(6)])
        assert trimmer.tick()  # 6 changes: a burst, trimmed even while it goes on
        assert trims == [trims[0], factory.last_revision()]
        assert trimmer.trims == 2
    finally:
        factory.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_trim_runs_and_the_thread_stops(api: Api, clock: ManualClock) -> None:
    trim = glibc_trim()
    assert trim is not None
    trim()
    trimmer = MemoryTrimmer(ControllerContext(api, InformerFactory(api), clock))
    trimmer.start()
    trimmer.stop()
    assert trimmer.trims == 0


def test_malloc_arenas_are_limited_unless_the_environment_says(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # glibc's own knob wins: nothing is set
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is True  # this machine's C library is glibc

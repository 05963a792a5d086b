"""Fixtures for controller tests: a real temp store, a real Api, a ManualClock, the real
controller manager, and a stand-in for kubelets that marks pods Ready (hollow nodes and the
scheduler replace it in tests/integration/controlplane)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from reconciler.api import Api, ApiError, ManualClock, now_utc
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.runtime import ComponentFactory
from reconciler.store import open_store
from schemas import Condition, Pod, PodStatus


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(tmp_path: Path, clock: ManualClock) -> Iterator[Api]:
    store = open_store(f"sqlite://{tmp_path}/state.db", clock=clock.time)
    yield Api(store, clock=clock)
    store.close()


WaitFor = Callable[..., None]


@pytest.fixture
def wait_for() -> WaitFor:
    def wait(predicate: Callable[[], object], *, timeout_s: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")

    return wait


@pytest.fixture
def start_manager(api: Api) -> Iterator[Callable[..., ControllerManager]]:
    started: list[ControllerManager] = []

    def start(components: Sequence[ComponentFactory] | None = None) -> ControllerManager:
        manager = ControllerManager(api, components=components)
        manager.start(sync_timeout_s=10)
        started.append(manager)
        return manager

    yield start
    for manager in started:
        manager.stop()


class PodReadier:
    """Marks pods Running + Ready, at most ``per_tick`` every tick, like slow kubelets."""

    def __init__(
        self, api: Api, clock: ManualClock, *, per_tick: int = 1000, tick_s: float = 0.02
    ) -> None:
        self.api = api
        self.clock = clock
        self.per_tick = per_tick
        self.tick_s = tick_s
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodReadier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if self.paused.is_set():
                continue
            pending = [p for p in self.api.list(Pod).items if not (p.status and p.status.ready)]
            pending.sort(key=lambda p: int(p.metadata.resource_version or 0))
            for pod in pending[: self.per_tick]:
                status = PodStatus(
                    phase="Running",
                    conditions=[
                        Condition(
                            type="Ready", status="True", last_transition_time=now_utc(self.clock)
                        )
                    ],
                )
                try:
                    self.api.update_status(pod.model_copy(update={"status": status}))
                except ApiError:
                    continue  # deleted or changed meanwhile; next tick sees it again


@pytest.fixture
def readier(api: Api, clock: ManualClock) -> Iterator[Callable[..., PodReadier]]:
    made: list[PodReadier] = []

    def make(**kwargs: object) -> PodReadier:
        r = PodReadier(api, clock, **kwargs).start()  # type: ignore[arg-type]
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()

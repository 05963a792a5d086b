"""``capstan up``: its component list (``reconciler.app``) and run-info file."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from reconciler.app import (
    AlreadyRunning,
    CapstanApp,
    UpConfig,
    control_plane_components,
    local_agent_args,
)
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.node import NodeController
from reconciler.nodes import NodeDispatcher
from reconciler.runinfo import RunInfo, read_run_info, write_run_info
from reconciler.scheduler import Scheduler
from reconciler.sync.autorollback import AutoRollbackController


def _types(factories: list[object]) -> list[object]:
    return [f.func if isinstance(f, functools.partial) else f for f in factories]


def test_every_part_runs_exactly_once() -> None:
    types = _types(control_plane_components(local_agent_command="capstan-agent connect"))
    for needed in (
        EndpointsController,
        NodeController,
        Scheduler,
        AutoRollbackController,
        NodeDispatcher,
    ):
        assert types.count(needed) == 1, needed
    assert types[-1] is NodeDispatcher


def test_a_short_node_grace_makes_the_dispatcher_renew_leases_within_it() -> None:
    # A lease renewed every 5 s would go stale between renewals under a 6 s grace.
    components = control_plane_components(
        local_agent_command="capstan-agent connect", node_grace_s=6, pod_eviction_timeout_s=15
    )
    (dispatcher,) = [f for f in components if getattr(f, "func", None) is NodeDispatcher]
    assert isinstance(dispatcher, functools.partial)
    settings = dispatcher.keywords["settings"]
    assert settings.lease_renew_s == 1.5
    assert settings.lease_duration_s == 6
    (node,) = [f for f in components if getattr(f, "func", None) is NodeController]
    assert isinstance(node, functools.partial)
    assert node.keywords == {"grace_period_s": 6, "eviction_timeout_s": 15}


def test_run_info_round_trip(tmp_path: Path) -> None:
    assert read_run_info(tmp_path) is None
    info = RunInfo(
        pid=42,
        store="sqlite:////x/state.db",
        repo="/r",
        branch="main",
        agent_socket="/x/agent.sock",
        listen="127.0.0.1:6443",
    )
    write_run_info(tmp_path, info)
    assert read_run_info(tmp_path) == info
    (tmp_path / "up.json").write_text("{not json")
    assert read_run_info(tmp_path) is None


def test_a_second_capstan_up_on_one_state_dir_is_refused(tmp_path: Path) -> None:
    # This test process stands in for a running capstan up (its pid is alive).
    write_run_info(
        tmp_path,
        RunInfo(
            pid=os.getppid(), store="sqlite:////x", repo="/r", branch="main", agent_socket="/s"
        ),
    )
    with pytest.raises(AlreadyRunning, match="already running"):
        CapstanApp(UpConfig(repo="/nonexistent", state_dir=tmp_path, local_agent=False)).start()


def test_a_short_node_grace_makes_the_local_agent_beat_within_it() -> None:
    assert local_agent_args((), None) == ()
    assert local_agent_args(("--pod-security=privileged",), 6) == (
        "--pod-security=privileged",
        "--heartbeat=1.5",
    )
    assert local_agent_args((), 40) == ()  # the default already beats every 10 s
    assert local_agent_args(("--heartbeat", "2"), 6) == ("--heartbeat", "2")

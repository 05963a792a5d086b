"""Fixtures for the fault suite: real etcd members, a real agent with Docker, replicas.

Each test gets its own rig (``tests.faults.scenario.fault_rig``): a 3-member etcd cluster,
a Git repository at v1, a ``capstan-agent serve`` and three supervised ``capstan up``
replicas; all are removed afterwards. ``CAPSTAN_FAULT_KILLS`` sets how many leader kills
the kill test makes (20 by default, as in CI and ``bench/faults.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

# docker_client: the e2e tier's session fixture (Docker, with the busybox image present).
from tests.e2e.conftest import docker_client  # noqa: F401
from tests.faults.scenario import FaultRig, fault_rig


@pytest.fixture
def rig(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[FaultRig]:  # noqa: F811
    with fault_rig(docker_client, tmp_path) as made:
        yield made

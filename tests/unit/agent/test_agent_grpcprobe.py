"""gRPC probes against a real gRPC health server (grpc.health.v1) started in the test.

The probe dials through its relay from this process's own network namespace, as it dials a
pod's from the sandbox's."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.kubelet._grpcprobe import probe_grpc
from agent.kubelet._netprobe import NetTarget


@pytest.fixture
def health_server() -> Iterator[tuple[health.HealthServicer, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def target(port: int) -> NetTarget:
    return NetTarget(sandbox_pid=os.getpid(), port=port, fallback=("127.0.0.1", port))


def test_serving_is_a_success_and_not_serving_a_failure(health_server):
    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("shop.Cart", health_pb2.HealthCheckResponse.NOT_SERVING)
    serving = probe_grpc(target(port), service=None, timeout_s=2)
    assert (serving.success, serving.message) == (True, "gRPC SERVING")
    cart = probe_grpc(target(port), service="shop.Cart", timeout_s=2)
    assert (cart.success, cart.message) == (False, "gRPC NOT_SERVING")
    unknown = probe_grpc(target(port), service="nope", timeout_s=2)
    assert (unknown.success, unknown.message) == (False, "gRPC health check failed: NOT_FOUND")


def test_nothing_listening_is_a_failure():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    outcome = probe_grpc(target(port), service=None, timeout_s=1)
    assert not outcome.success
    assert outcome.message.startswith("gRPC health check")

"""The ingress proxy (agent/ingress/server.py) on loopback with real sockets: routing by Host,
a refused endpoint retried on the next one, streaming in both directions, keep-alive, and its
own 404/503 answers. Backends are tiny asyncio HTTP servers on ephemeral ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from agent.ingress import IngressServer, IngressSettings
from agent.proxy import ServiceRuleSet
from schemas.networking import Ingress
from schemas.protocol import Endpoint, ServicePortRule, ServiceRule

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _backend(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def _named(name: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        forwarded = b"x-forwarded-proto: http" in head.lower()
        body = f"{name} forwarded={forwarded}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return handle


def _rules(services: dict[str, list[int]]) -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace="default",
                name=name,
                ports=[
                    ServicePortRule(
                        name="http",
                        port=80,
                        endpoints=[Endpoint(address="127.0.0.1", port=p) for p in ports],
                    )
                ],
            )
            for name, ports in services.items()
        ]
    )


def _ingress(rules: list[dict[str, Any]]) -> Ingress:
    return Ingress.model_validate(
        {"metadata": {"name": "i", "namespace": "default"}, "spec": {"rules": rules}}
    )


def _host_rule(host: str, service: str) -> dict[str, Any]:
    backend = {"service": {"name": service, "port": {"number": 80}}}
    return {
        "host": host,
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
    }


async def _serving(ingress: Ingress, rules: ServiceRuleSet) -> tuple[IngressServer, int]:
    server = IngressServer(IngressSettings(address="127.0.0.1", http_port=0, https_port=None))
    server.take_rules(rules)
    server.take([ingress], [])
    for _ in range(200):
        if "http" in server.listening:
            return server, server.listening["http"]
        await asyncio.sleep(0.01)
    raise AssertionError(f"ingress not listening: {server.condition()}")


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await reader.readexactly(length)


def test_routes_by_host_retries_refused_endpoints_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        a, a_port = await _backend(_named("a"))
        b, b_port = await _backend(_named("b"))
        refused = _free_port()  # nothing listens: every other dial is refused
        server, port = await _serving(
            _ingress(
                [_host_rule("a.test", "a"), _host_rule("b.test", "b"), _host_rule("c.test", "c")]
            ),
            _rules({"a": [refused, a_port], "b": [b_port], "c": []}),
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = []
            for index in range(20):
                host = "a.test" if index % 2 else "b.test:8080"
                writer.write(f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                answers.append(await _response(reader))
            assert answers == [
                (200, b"a forwarded=True") if i % 2 else (200, b"b forwarded=True")
                for i in range(20)
            ]
            writer.write(b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n")
            status, body = await _response(reader)
            assert status == 503
            assert b"default/c:80 has no ready endpoint" in body
            writer.write(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
            assert (await _response(reader))[0] == 404
            writer.close()
        finally:
            await server.close()
            a.close()
            b.close()

    asyncio.run(scenario())


def test_bodies_stream_both_ways_without_being_buffered() -> None:
    release = asyncio.Event()
    received: list[int] = []

    async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        total = 0
        while True:  # a chunked request body, counted as it arrives
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            total += len(await reader.readexactly(size + 2)) - 2
        received.append(total)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()  # the rest only after the client saw the first part
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        backend, backend_port = await _backend(streaming)
        server, port = await _serving(
            _ingress([_host_rule("s.test", "s")]), _rules({"s": [backend_port]})
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            piece = b"x" * 65536
            for _ in range(64):  # 4 MiB
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readuntil(b"first\r\n"), 10) == b"5\r\nfirst\r\n"
            release.set()
            assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == (
                b"4\r\nlast\r\n0\r\n\r\n"
            )
            assert received == [64 * 65536]
            writer.close()
        finally:
            await server.close()
            backend.close()

    asyncio.run(scenario())

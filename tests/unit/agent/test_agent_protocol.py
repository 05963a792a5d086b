"""The wire protocol: one JSON object per line, versioned, errors that never echo secrets."""

from __future__ import annotations

import json

import pytest

from schemas.protocol import (
    MAX_LINE_BYTES,
    Ack,
    ErrorMessage,
    Hello,
    LogsRequest,
    ProtocolError,
    ServiceRule,
    Status,
    Sync,
    decode_message,
    encode_message,
)

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
    "spec": {"containers": [{"name": "app", "image": "capstan.local/busybox:1"}]},
}


def test_sync_round_trips_with_camel_case_fields():
    line = json.dumps(
        {
            "v": 1,
            "type": "sync",
            "generation": 7,
            "pods": [POD],
            "configMaps": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "cm", "namespace": "default"},
                    "data": {"k": "v"},
                }
            ],
            "services": [
                {
                    "namespace": "default",
                    "name": "web",
                    "type": "NodePort",
                    "ports": [
                        {
                            "port": 80,
                            "nodePort": 30080,
                            "endpoints": [{"address": "127.0.0.2", "port": 32768}],
                        }
                    ],
                }
            ],
        }
    )
    message = decode_message(line)
    assert isinstance(message, Sync)
    assert message.generation == 7
    assert message.pods[0].name == "web"
    assert message.services[0].ports[0].endpoints[0].port == 32768
    encoded = encode_message(message)
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert b'"configMaps"' in encoded
    assert b'"nodePort":30080' in encoded
    assert decode_message(encoded[:-1]) == message


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"type": "sync", "generation": 1}', "unsupported_version"),
        (b'{"v": 2, "type": "sync", "generation": 1}', "unsupported_version"),
        (b'{"v": 1, "type": "launch"}', "unknown_type"),
        (b'{"v": 1, "type": "sync"}', "invalid"),
        (b'{"v": 1, "type": "sync", "generation": -1}', "invalid"),
        (b'{"v": 1, "type": "sync", "generation": 1, "extra": true}', "invalid"),
    ],
)
def test_bad_lines_raise_protocol_errors(line, code):
    with pytest.raises(ProtocolError) as info:
        decode_message(line)
    assert info.value.code == code
    assert isinstance(info.value.to_message(), ErrorMessage)


def test_error_keeps_the_request_id():
    with pytest.raises(ProtocolError) as info:
        decode_message(b'{"v": 1, "id": "r7", "type": "logs"}')
    assert info.value.to_message().in_reply_to == "r7"


def test_invalid_secret_is_not_echoed():
    line = json.dumps(
        {
            "v": 1,
            "type": "sync",
            "generation": 1,
            "secrets": [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "s"},
                    "data": {"password": "hunter2-not-base64!"},
                }
            ],
        }
    )
    with pytest.raises(ProtocolError) as info:
        decode_message(line)
    assert "hunter2" not in str(info.value)


def test_oversized_line_is_refused():
    with pytest.raises(ProtocolError) as info:
        decode_message(b"x" * (MAX_LINE_BYTES + 1))
    assert info.value.code == "too_large"


def test_every_message_type_round_trips():
    from schemas.node import NodeStatus

    messages = [
        Hello(role="agent", node_name="n1", agent_version="0.1.0", capabilities=["sync"]),
        Ack(generation=3, applied=False, message="older"),
        Status(node_name="n1", generation=2, node=NodeStatus()),
        LogsRequest(id="x", namespace="default", pod="web", tail=10, follow=True),
        ErrorMessage(code="invalid", message="nope"),
    ]
    for message in messages:
        assert decode_message(encode_message(message).rstrip(b"\n")) == message
    assert ServiceRule(namespace="d", name="s").type == "ClusterIP"


def _sync_with(*, pod: dict | None = None, service: dict | None = None) -> bytes:
    message: dict = {"v": 1, "type": "sync", "generation": 1, "pods": [pod or POD]}
    if service is not None:
        message["services"] = [service]
    return json.dumps(message).encode()


def _service(**fields) -> dict:
    port = {"port": 80, "endpoints": [{"address": "127.0.0.2", "port": 32768}]}
    port.update(fields.pop("port", {}))
    return {"namespace": "default", "name": "web", "ports": [port], **fields}


def _endpoint(address: str) -> dict:
    return {"endpoints": [{"address": address, "port": 32768}]}


@pytest.mark.parametrize(
    ("line", "where"),
    [
        # A newline in a name became a new line of the iptables-restore script.
        (_sync_with(service=_service(name="web\n-A INPUT -j ACCEPT")), "services.0.name"),
        (_sync_with(service=_service(name="web\n")), "services.0.name"),
        (_sync_with(service=_service(namespace="default\n")), "services.0.namespace"),
        (_sync_with(service=_service(clusterIP="10.0.0.1 -j ACCEPT")), "services.0.clusterIP"),
        (
            _sync_with(service=_service(port=_endpoint("127.0.0.2\n-A X"))),
            "services.0.ports.0.endpoints.0.address",
        ),
        (_sync_with(service=_service(port={"name": "http\nx"})), "services.0.ports.0.name"),
        (_sync_with(service=_service(port={"nodePort": 70000})), "services.0.ports.0.nodePort"),
        (_sync_with(service=_service(port={"port": 0})), "services.0.ports.0.port"),
        # metadata.uid names the pod's directory on the node.
        (
            _sync_with(pod={**POD, "metadata": {**POD["metadata"], "uid": "../../etc"}}),
            "pods.0.metadata.uid",
        ),
        (
            _sync_with(pod={**POD, "metadata": {"name": "web", "namespace": "default"}}),
            "pods.0.metadata.uid",
        ),
        (
            _sync_with(pod={**POD, "metadata": {"name": "web", "uid": "u1"}}),
            "pods.0.metadata.namespace",
        ),
        (
            _sync_with(pod={**POD, "metadata": {**POD["metadata"], "name": "web\n"}}),
            "pods.0.metadata.name",
        ),
        (b'{"v": 1, "type": "logs", "namespace": "default", "pod": "../x"}', "pod"),
        (
            b'{"v": 1, "type": "status", "nodeName": "n1", "node": {}, "pods": [{"namespace": '
            b'"default", "name": "web", "uid": "a/b", "status": {}}]}',
            "pods.0.uid",
        ),
        (b'{"v": 1, "type": "hello", "role": "agent", "nodeName": "n1\\nforged"}', "nodeName"),
    ],
)
def test_hostile_identifiers_are_refused_with_the_field(line: bytes, where: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(line)
    assert info.value.code == "invalid"
    assert f"{where}: " in str(info.value), str(info.value)
    # The offending value is quoted, never written raw into the reply.
    assert "\n" not in str(info.value)


def test_uids_as_the_api_assigns_them_are_accepted() -> None:
    pod = {**POD, "metadata": {**POD["metadata"], "uid": "3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f"}}
    message = decode_message(_sync_with(pod=pod))
    assert isinstance(message, Sync)

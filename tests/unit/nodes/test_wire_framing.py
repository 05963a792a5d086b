"""The reconciler's framing of the agent protocol."""

from __future__ import annotations

import json

import pytest

from reconciler.nodes import DesiredSet, _wire
from schemas.core import Secret
from schemas.protocol import Ack, ErrorMessage, Hello, Sync, decode_message, encode_message


def test_sync_line_is_one_json_line_the_agent_parses():
    line = _wire.encode_sync(42, DesiredSet())
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    message = decode_message(line.rstrip(b"\n"))
    assert isinstance(message, Sync)
    assert message.generation == 42
    assert message.pods == []
    assert message.id == "sync-42"


def test_hello_says_reconciler():
    message = decode_message(_wire.encode_hello("n1").rstrip(b"\n"))
    assert isinstance(message, Hello)
    assert message.role == "reconciler"


def test_decode_agent_messages_and_reject_garbage():
    ack = _wire.decode(encode_message(Ack(generation=3, applied=True)))
    assert isinstance(ack, Ack)
    assert ack.generation == 3
    with pytest.raises(_wire.WireError, match="malformed"):
        _wire.decode(b"{not json\n")
    with pytest.raises(_wire.WireError, match="unknown_type"):
        _wire.decode(json.dumps({"v": 1, "type": "boom"}).encode())
    with pytest.raises(_wire.WireError, match="only a reconciler sends"):
        _wire.decode(_wire.encode_sync(1, DesiredSet()))


def test_error_maps_back_to_the_refused_generation():
    refused = ErrorMessage(code="invalid", message="x", in_reply_to="sync-77")
    assert _wire.refused_generation(refused) == 77
    assert _wire.refused_generation(ErrorMessage(code="invalid", message="x")) is None
    other = ErrorMessage(code="invalid", message="x", in_reply_to="logs-1")
    assert _wire.refused_generation(other) is None


def test_desired_set_repr_never_shows_secrets():
    secret = Secret.model_validate(
        {"metadata": {"name": "db", "namespace": "default"}, "stringData": {"pw": "hunter2"}}
    )
    assert "hunter2" not in repr(DesiredSet(secrets=(secret,)))


def test_equal_sets_compare_equal():
    assert DesiredSet() == DesiredSet()

"""The agent's sync decoder: unchanged pods and rules come back as the same objects, and a
line is accepted or refused exactly as the protocol's own decoder does."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from agent.state import DesiredStateFile, prepare_state_dir
from agent.wire import MergedRuleTexts, SyncDecoder
from schemas.protocol import (
    ProtocolError,
    ServiceRule,
    Sync,
    decode_message,
    encode_message,
    merge_service_rules,
    service_rules_delta,
)


def pod(name: str, *, image: str = "capstan.local/busybox:1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def rule(name: str, ports: list[int]) -> dict[str, Any]:
    endpoints = [{"address": f"127.0.0.{2 + i}", "port": port} for i, port in enumerate(ports)]
    return {"namespace": "default", "name": name, "ports": [{"port": 80, "endpoints": endpoints}]}


def sync(generation: int, pods: list[dict[str, Any]], rules: list[dict[str, Any]]) -> dict:
    return {"v": 1, "type": "sync", "generation": generation, "pods": pods, "services": rules}


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_unchanged_parts_are_the_same_objects_and_the_result_equals_a_plain_decode():
    decoder = SyncDecoder()
    first = sync(1, [pod("a"), pod("b")], [rule("web", [32768, 32769]), rule("db", [32770])])
    one = decoder.decode(line(first))
    second = copy.deepcopy(first)
    second["generation"] = 2
    second["pods"][1] = pod("b", image="capstan.local/busybox:2")
    second["services"][0] = rule("web", [32768, 32771])
    two = decoder.decode(line(second))
    assert isinstance(one, Sync)
    assert isinstance(two, Sync)
    assert two == decode_message(line(second))
    assert two.pods[0] is one.pods[0]
    assert two.pods[1] is not one.pods[1]
    assert two.services[1] is one.services[1]
    # In the changed rule, the endpoint seen before is the model made of it before.
    assert two.services[0].ports[0].endpoints[0] is one.services[0].ports[0].endpoints[0]


def test_a_sync_keeping_its_pods_keeps_the_known_ones_for_the_next():
    decoder = SyncDecoder()
    one = decoder.decode(line(sync(1, [pod("a")], [rule("web", [32768])])))
    kept = {"v": 1, "type": "sync", "generation": 2, "podsUnchanged": True}
    assert isinstance(decoder.decode(line(kept)), Sync)
    three = decoder.decode(line(sync(3, [pod("a")], [rule("web", [32768])])))
    assert isinstance(one, Sync)
    assert isinstance(three, Sync)
    assert three.pods[0] is one.pods[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", True), ("port", "32768"), ("extra", 1), ("address", ["127.0.0.2"])],
)
def test_a_bad_endpoint_is_refused_as_the_protocol_refuses_it_after_a_good_one(field, value):
    decoder = SyncDecoder()
    decoder.decode(line(sync(1, [], [rule("web", [1, 32768])])))
    bad = sync(2, [], [rule("web", [1, 32768])])
    bad["services"][0]["ports"][0]["endpoints"][1][field] = value
    with pytest.raises(ProtocolError) as plain:
        decode_message(line(bad))
    with pytest.raises(ProtocolError) as cached:
        decoder.decode(line(bad))
    assert str(cached.value) == str(plain.value)


def test_other_messages_and_bad_lines_decode_as_before():
    decoder = SyncDecoder()
    hello = line({"v": 1, "type": "hello", "role": "reconciler"})
    assert decoder.decode(hello) == decode_message(hello)
    bad_lines = (
        b"{half",
        b"[]",
        line({"v": 2, "type": "sync", "generation": 1}),
        line({"v": 1, "type": "sync", "generation": 1, "services": 5}),
        line({"v": 1, "type": "sync", "generation": 1, "services": [{"ports": 5}]}),
        line({"v": 1, "type": "sync", "generation": 1, "pods": [5, "x"]}),
    )
    for bad in bad_lines:
        with pytest.raises(ProtocolError) as plain:
            decode_message(bad)
        with pytest.raises(ProtocolError) as cached:
            decoder.decode(bad)
        assert (cached.value.code, str(cached.value)) == (plain.value.code, str(plain.value))


def test_the_state_file_writes_the_decoded_text_and_reads_back_an_equal_sync(tmp_path):
    prepare_state_dir(tmp_path)
    state = DesiredStateFile(tmp_path)
    decoder = SyncDecoder()
    first = sync(1, [pod("a"), pod("b")], [rule("web", [32768])])
    one = decoder.decode(line(first))
    assert isinstance(one, Sync)
    state.save(one, known=decoder.text)
    assert state.load() == one
    # A set sharing some objects with the last one, and one the decoder never saw.
    two = one.model_copy(update={"generation": 2, "pods": [one.pods[1]]})
    state.save(two, known=decoder.text)
    assert state.load() == two
    three = decode_message(encode_message(two.model_copy(update={"generation": 3})))
    assert isinstance(three, Sync)
    state.save(three)
    assert state.load() == three


def test_merged_rules_are_written_from_their_endpoints_text_and_read_back_equal(tmp_path):
    prepare_state_dir(tmp_path)
    state = DesiredStateFile(tmp_path)
    every_field = ServiceRule.model_validate(
        {
            "namespace": "default",
            "name": "web",
            "type": "NodePort",
            "clusterIP": "10.43.0.10",
            "externalTrafficPolicy": "Local",
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": 80,
                    "nodePort": 30080,
                    "endpoints": [
                        {"address": "127.0.0.2", "port": 1, "hostname": "web-0"},
                        {"address": "127.0.0.3", "port": 1},
                    ],
                },
                {"port": 81},
            ],
        }
    )
    base = [ServiceRule.model_validate(rule("db", [32768])), every_field]
    delta = service_rules_delta(
        base,
        [
            base[0],
            every_field.model_copy(
                update={
                    "ports": [
                        every_field.ports[0].model_copy(
                            update={"endpoints": [every_field.ports[0].endpoints[1]]}
                        ),
                        every_field.ports[1],
                    ]
                }
            ),
        ],
    )
    assert delta is not None
    merged = merge_service_rules(
        base, services=delta.services, changed=delta.changed, removed=delta.removed
    )
    texts = MergedRuleTexts()
    texts.note(merged, {id(merged[1])})
    assert texts.text(merged[0]) is None  # the base's own rule: not merged
    text = texts.text(merged[1])
    assert text is not None
    assert ServiceRule.model_validate_json(text) == merged[1]
    saved = Sync(generation=2, services=merged)
    state.save(saved, known=texts.text)
    assert state.load() == saved

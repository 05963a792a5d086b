"""The in-pod redirects (pure parts): reserved-port assignment and the nft batches."""

from __future__ import annotations

from agent.proxy._podnat import (
    POD_TABLE,
    RESERVED_PORTS,
    assign_reserved_ports,
    render_redirects,
    render_removal,
)

A, B = "127.200.0.1", "127.200.0.2"
FIRST = RESERVED_PORTS.start


def test_services_share_reserved_ports_across_addresses():
    # Different virtual addresses never collide: a pod holds as few reserved ports as it can.
    ports = assign_reserved_ports([(A, 80), (A, 443), (B, 8080)], previous={}, blocked=())
    assert ports == {(A, 80): FIRST, (A, 443): FIRST + 1, (B, 8080): FIRST}


def test_assignment_is_stable_while_a_port_exists():
    before = assign_reserved_ports([(A, 80), (A, 443)], previous={}, blocked=())
    # 80 goes, 81 comes: 443 keeps its port (its listener survives), 81 takes the freed one.
    after = assign_reserved_ports([(A, 81), (A, 443)], previous=before, blocked=())
    assert after == {(A, 443): FIRST + 1, (A, 81): FIRST}
    assert assign_reserved_ports([(A, 81), (A, 443)], previous=after, blocked=()) == after


def test_blocked_ports_are_skipped_even_when_held_before():
    before = assign_reserved_ports([(A, 80)], previous={}, blocked=())
    after = assign_reserved_ports([(A, 80)], previous=before, blocked={FIRST})
    assert after == {(A, 80): FIRST + 1}


def test_an_address_out_of_reserved_ports_leaves_the_rest_assigned():
    wanted = [(A, port) for port in range(1, 4)] + [(B, 1)]
    ports = assign_reserved_ports(wanted, previous={}, blocked=(), reserved=range(100, 102))
    assert ports == {(A, 1): 100, (A, 2): 101, (B, 1): 100}


def test_create_replaces_the_table_in_one_batch():
    script = render_redirects({(A, 8080): FIRST, (B, 80): FIRST}, create=True)
    lines = script.splitlines()
    assert lines[:3] == [
        f"add table ip {POD_TABLE}",
        f"delete table ip {POD_TABLE}",
        f"table ip {POD_TABLE} {{",
    ]
    assert "type nat hook output priority -100; policy accept;" in script
    assert "meta l4proto tcp dnat ip to ip daddr . tcp dport map @redirects" in script
    assert lines[-1] == (
        f"add element ip {POD_TABLE} redirects {{ {A} . 8080 : {A} . {FIRST}, "
        f"{B} . 80 : {B} . {FIRST} }}"
    )


def test_update_only_refills_the_map():
    assert render_redirects({(A, 80): FIRST}, create=False) == (
        f"flush map ip {POD_TABLE} redirects\n"
        f"add element ip {POD_TABLE} redirects {{ {A} . 80 : {A} . {FIRST} }}\n"
    )
    assert render_redirects({}, create=False) == f"flush map ip {POD_TABLE} redirects\n"


def test_removal_is_idempotent():
    assert render_removal() == f"add table ip {POD_TABLE}\ndelete table ip {POD_TABLE}\n"

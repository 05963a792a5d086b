"""Reading a node link without a thread of its own: lines cut from what ``receive`` returns,
the agent's stderr logged from inside ``receive``, and the end of its stream.

The local link runs a real process as its agent command (``sh``), the way a ``local`` node
runs ``capstan-agent connect``.
"""

from __future__ import annotations

import logging
import select

import pytest

from reconciler.nodes import NodeEndpoint, NodeName
from reconciler.nodes._links import LineSplitter, Link, LinkSettings, open_link
from reconciler.nodes.endpoint import LOCAL_ADDRESS


def test_lines_are_cut_across_chunks_and_a_partial_line_waits() -> None:
    lines = LineSplitter(max_bytes=100)
    assert lines.feed(b'{"a":') == []
    assert lines.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}\n', b'{"b":2}\n']
    assert lines.feed(b":3}\n") == [b'{"c":3}\n']
    assert lines.partial == b""


def test_a_line_longer_than_the_limit_is_refused_even_before_its_newline() -> None:
    with pytest.raises(OSError, match="longer than 10 bytes"):
        LineSplitter(max_bytes=10).feed(b"x" * 10)
    with pytest.raises(OSError, match="longer than 10 bytes"):
        LineSplitter(max_bytes=10).feed(b"x" * 10 + b"\n")
    assert LineSplitter(max_bytes=10).feed(b"x" * 9 + b"\n") == [b"x" * 9 + b"\n"]


def _read_to_end(link: Link) -> bytes:
    """Everything the agent writes until its end, waiting on the link's descriptors."""
    received = b""
    while True:
        data = link.receive()
        if data == b"":
            return received
        if data is None:
            poller = select.poll()
            for fd in link.filenos():
                poller.register(fd, select.POLLIN)
            assert poller.poll(10_000), "the agent went quiet without ending"
            continue
        received += data


def test_local_link_reads_stdout_logs_stderr_and_sees_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = "read hello; echo got $hello; echo oops >&2; echo done"
    endpoint = NodeEndpoint(
        name=NodeName("n1"),
        address=LOCAL_ADDRESS,
        agent_command=f"sh -c '{script}'",
    )
    link = open_link(endpoint, LinkSettings())
    try:
        assert link.receive() is None  # nothing yet, and no wait for it
        link.send(b"hi\n")
        with caplog.at_level(logging.WARNING, logger="reconciler.nodes._links"):
            output = _read_to_end(link)
        assert LineSplitter(max_bytes=100).feed(output) == [b"got hi\n", b"done\n"]
        assert "n1: agent stderr: oops" in caplog.messages
    finally:
        link.close()
    assert link.receive() == b""

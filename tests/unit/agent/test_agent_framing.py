"""Line framing on the agent's socket: bounded lines, an oversized one skipped not fatal."""

from __future__ import annotations

import asyncio

from agent._framing import LineReader, TooLong


async def _lines(chunks: list[bytes], max_line: int) -> list[bytes | TooLong]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    lines = LineReader(reader, max_line=max_line)
    out: list[bytes | TooLong] = []
    while (line := await lines.next_line()) is not None:
        out.append(line)
    return out


def test_splits_lines_across_chunks():
    assert asyncio.run(_lines([b"ab", b"c\nde", b"f\n", b"tail"], 100)) == [b"abc", b"def", b"tail"]


def test_long_line_is_reported_once_and_the_next_line_survives():
    chunks = [b"x" * 30, b"x" * 30, b"x" * 30 + b"\n", b"ok\n"]
    out = asyncio.run(_lines(chunks, 40))
    assert len(out) == 2
    assert isinstance(out[0], TooLong)
    assert out[1] == b"ok"


def test_long_line_in_one_chunk():
    out = asyncio.run(_lines([b"y" * 50 + b"\nnext\n"], 10))
    assert isinstance(out[0], TooLong)
    assert out[1] == b"next"

"""JSON-lines framing for the agent's socket: whole lines, bounded in size.

Used by the server for every connection. A line longer than the limit is reported once and
skipped up to its newline, so one oversized message costs an ``error`` reply, not the
connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

_CHUNK: Final = 256 * 1024


@dataclass(frozen=True)
class TooLong:
    """Stands in for a line that exceeded the limit (its bytes were discarded)."""

    size_seen: int


class LineReader:
    """Reads newline-terminated lines of at most ``max_line`` bytes from a stream."""

    def __init__(self, reader: asyncio.StreamReader, *, max_line: int) -> None:
        self._reader = reader
        self._max = max_line
        self._buffer = bytearray()
        self._scanned = 0
        self._discarding = False
        self._discarded = 0
        self._eof = False

    async def next_line(self) -> bytes | TooLong | None:
        """The next line without its newline, :class:`TooLong`, or None at end of stream."""
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                if self._discarding:
                    self._discarding = False
                    self._discarded = 0
                    continue
                if len(line) > self._max:
                    return TooLong(len(line))
                return line
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._max:
                # Report once, then drop the rest of this line as it arrives.
                size = len(self._buffer)
                self._buffer.clear()
                self._scanned = 0
                if not self._discarding:
                    self._discarding = True
                    self._discarded = size
                    return TooLong(size)
            if self._eof:
                if self._buffer and not self._discarding:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                self._eof = True
            self._buffer += chunk

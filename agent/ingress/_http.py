"""HTTP/1.1 message heads and body framing for the ingress proxy: parse, rewrite, relay.

Used by :mod:`agent.ingress.server` for each request it forwards. Bodies are never buffered:
they are copied in chunks of at most :data:`CHUNK` bytes, each write waiting for the peer to
drain (flow control), framed by ``Content-Length``, ``Transfer-Encoding: chunked`` (relayed
as-is, chunk by chunk) or the connection's end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CHUNK",
    "HOP_BY_HOP",
    "BadMessage",
    "Framing",
    "Head",
    "copy_body",
    "parse_head",
    "request_framing",
    "response_framing",
]

CHUNK: Final = 64 * 1024
MAX_HEAD: Final = 64 * 1024
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    }
)


class BadMessage(ValueError):
    """A head or body framing this proxy cannot relay safely (answered 400 / 502)."""


@dataclass(frozen=True)
class Head:
    """A request or response head: its first line split in three, and its header fields."""

    first: tuple[str, str, str]
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every ``name`` field, lowercase."""
        lowered = name.lower()
        return {
            token.strip().lower()
            for key, value in self.headers
            if key.lower() == lowered
            for token in value.split(",")
            if token.strip()
        }

    def encode(
        self, *, drop: frozenset[str] = frozenset(), add: tuple[tuple[str, str], ...] = ()
    ) -> bytes:
        """The head as bytes, without the fields named in ``drop`` (lowercase) and with
        ``add`` appended."""
        lines = [" ".join(self.first)]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in drop]
        lines += [f"{k}: {v}" for k, v in add]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(data: bytes) -> Head:
    """A head (``data`` ends with the blank line). Raises :class:`BadMessage`."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadMessage(str(exc)) from None
    lines = text[:-4].split("\r\n") if text.endswith("\r\n\r\n") else text.split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) != 3 or not all(first[:2]):
        raise BadMessage(f"malformed first line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or any(c in name for c in " \t"):
            raise BadMessage(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return Head(first=(first[0], first[1], first[2]), headers=tuple(headers))


@dataclass(frozen=True)
class Framing:
    """How a body is delimited: ``length`` bytes, chunked, or until the connection ends."""

    length: int | None = 0
    chunked: bool = False

    @property
    def until_close(self) -> bool:
        return self.length is None and not self.chunked

    @property
    def empty(self) -> bool:
        return self.length == 0 and not self.chunked


def _framing(head: Head, *, default: Framing) -> Framing:
    encodings = head.tokens("transfer-encoding")
    if encodings:
        if "chunked" not in encodings:
            raise BadMessage("a Transfer-Encoding other than chunked")
        return Framing(length=None, chunked=True)
    lengths = {v.strip() for k, v in head.headers if k.lower() == "content-length"}
    if not lengths:
        return default
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise BadMessage("an invalid Content-Length")
    return Framing(length=int(next(iter(lengths))))


def request_framing(head: Head) -> Framing:
    return _framing(head, default=Framing(length=0))


def response_framing(head: Head, *, request_method: str) -> Framing:
    status = head.first[1]
    if request_method == "HEAD" or status.startswith("1") or status in ("204", "304"):
        return Framing(length=0)
    return _framing(head, default=Framing(length=None))


async def _read(reader: asyncio.StreamReader, size: int, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.read(size), timeout)


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int, timeout: float
) -> None:
    left = length
    while left > 0:
        data = await _read(reader, min(CHUNK, left), timeout)
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(data)
        await _send(writer, data)


async def copy_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    framing: Framing,
    *,
    timeout: float,
) -> None:
    """Relay one body from ``reader`` to ``writer`` as framed; raises
    ``asyncio.IncompleteReadError`` when the sender stops early."""
    if framing.chunked:
        while True:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadMessage("a malformed chunk size") from None
            await _send(writer, line)
            if size == 0:
                while True:  # trailer fields, then the blank line
                    trailer = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
                    await _send(writer, trailer)
                    if trailer == b"\r\n":
                        return
            await _copy_exactly(reader, writer, size + 2, timeout)
    elif framing.length is not None:
        await _copy_exactly(reader, writer, framing.length, timeout)
    else:
        while data := await _read(reader, CHUNK, timeout):
            await _send(writer, data)

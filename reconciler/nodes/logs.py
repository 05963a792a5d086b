"""``capstan logs``: a pod container's log, read from its node's agent over the node link.

Called by the CLI with the endpoint of the node the pod is bound to. Opens its own short-lived
link (SSH channel or local pipe, exactly as the dispatcher reaches the node, host key pinned)
— a log stream must not share the dispatcher's sync channel, where a follow could run for
hours — sends one ``logs`` request and yields the text of every ``logs_chunk`` until the one
marked ``eof``.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator

from reconciler.nodes._links import LinkSettings, open_link
from reconciler.nodes.endpoint import NodeEndpoint
from schemas.protocol import (
    ErrorMessage,
    Hello,
    LogsChunk,
    LogsRequest,
    ProtocolError,
    decode_message,
    encode_message,
)

__all__ = ["LogsError", "stream_logs"]


class LogsError(RuntimeError):
    """The agent refused the request (no such pod or container) or went away."""


def stream_logs(
    endpoint: NodeEndpoint,
    *,
    namespace: str,
    pod: str,
    container: str | None = None,
    tail: int | None = None,
    follow: bool = False,
    settings: LinkSettings | None = None,
) -> Generator[str, None, None]:
    """Yield log text as the agent sends it; closing the iterator closes the link."""
    request = LogsRequest(
        id=f"logs-{uuid.uuid4().hex}",
        namespace=namespace,
        pod=pod,
        container=container,
        tail=tail,
        follow=follow,
    )
    link = open_link(endpoint, settings or LinkSettings())
    try:
        link.send(encode_message(Hello(role="cli")))
        link.send(encode_message(request))
        while True:
            line = link.readline()
            if not line:
                raise LogsError(f"the agent on {endpoint.describe()} closed the connection")
            try:
                message = decode_message(line.rstrip(b"\r\n"))
            except ProtocolError:
                continue  # a garbled line is skipped; the stream stays usable
            if isinstance(message, ErrorMessage) and message.in_reply_to == request.id:
                raise LogsError(message.message)
            if isinstance(message, LogsChunk) and message.in_reply_to == request.id:
                if message.data:
                    yield message.data
                if message.eof:
                    return
    finally:
        link.close()

"""Pod logs from the node agents: ``capstan logs``, the web UI and the API's ``pods/log``.

:func:`stream_logs` opens its own short-lived link to a node (SSH channel or local pipe,
exactly as the dispatcher reaches the node, host key pinned) — a log stream must not share
the dispatcher's sync channel, where a follow could run for hours — sends one ``logs`` request
and yields the text of every ``logs_chunk`` until the one marked ``eof``. The agent's first
chunk is empty: it says the container was found, before any log text exists.

:func:`pod_log_source` wraps it for a server that starts from a Pod object (the API server's
``pods/log`` route, the UI): it finds the pod's node, builds the node's endpoint from the
Node object and opens the stream.
"""

from __future__ import annotations

import select
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.api import Api, NotFound
from reconciler.nodes._links import LineSplitter, Link, LinkSettings, open_link
from reconciler.nodes.endpoint import DEFAULT_AGENT_COMMAND, NodeEndpoint
from schemas import Node, Pod
from schemas.protocol import (
    ErrorMessage,
    Hello,
    LogsChunk,
    LogsRequest,
    ProtocolError,
    decode_message,
    encode_message,
)

__all__ = ["ContainerNotFound", "LogStream", "LogsError", "pod_log_source", "stream_logs"]

#: How often a wait for the next chunk looks whether ``close`` was called meanwhile (a
#: closed link's descriptor does not wake a poll already waiting on it).
_CLOSE_CHECK_S = 0.5


class LogsError(RuntimeError):
    """The agent refused the request or went away, or the node cannot be reached."""


class ContainerNotFound(LogsError, LookupError):
    """The agent has no such container (or no previous attempt of it) for the pod."""


class LogStream(Iterator[str]):
    """The text of one ``logs`` request as the agent sends it. ``close()`` may be called
    from any thread, also while another thread waits for the next chunk: it closes the link,
    which ends that wait."""

    def __init__(
        self, link: Link, request: LogsRequest, where: str, *, max_line_bytes: int
    ) -> None:
        self._link = link
        self._request = request
        self._where = where
        self._done = False
        self._splitter = LineSplitter(max_line_bytes)
        self._lines: deque[bytes] = deque()

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> str:
        while not self._done:
            line = self._next_line()
            if not line:
                self.close()
                raise LogsError(f"the agent on {self._where} closed the connection")
            try:
                message = decode_message(line.rstrip(b"\r\n"))
            except ProtocolError:
                continue  # a garbled line is skipped; the stream stays usable
            if isinstance(message, ErrorMessage) and message.in_reply_to == self._request.id:
                self.close()
                if message.code == "not_found":
                    raise ContainerNotFound(message.message)
                raise LogsError(message.message)
            if isinstance(message, LogsChunk) and message.in_reply_to == self._request.id:
                if message.eof:
                    self.close()
                    if not message.data:
                        break
                return message.data
        raise StopIteration

    def _next_line(self) -> bytes:
        """The agent's next line; ``b""`` at the end of its stream or once closed."""
        while not self._lines:
            if self._done:
                return b""
            data = self._link.receive()
            if data is None:
                poller = select.poll()
                for fd in self._link.filenos():
                    poller.register(fd, select.POLLIN)
                poller.poll(_CLOSE_CHECK_S * 1000)
            elif not data:
                return b""
            else:
                self._lines.extend(self._splitter.feed(data))
        return self._lines.popleft()

    def close(self) -> None:
        self._done = True
        self._link.close()


def stream_logs(
    endpoint: NodeEndpoint,
    *,
    namespace: str,
    pod: str,
    container: str | None = None,
    tail: int | None = None,
    follow: bool = False,
    previous: bool = False,
    settings: LinkSettings | None = None,
) -> LogStream:
    """Open the link and ask for the log; iterate for its text, close to stop early."""
    request = LogsRequest(
        id=f"logs-{uuid.uuid4().hex}",
        namespace=namespace,
        pod=pod,
        container=container,
        tail=tail,
        follow=follow,
        previous=previous,
    )
    try:
        link = open_link(endpoint, settings or LinkSettings())
    except OSError as exc:
        raise LogsError(f"cannot reach the agent on {endpoint.describe()}: {exc}") from exc
    try:
        link.send(encode_message(Hello(role="cli")))
        # ``previous`` only when asked: an agent of an older release does not know it.
        link.send(encode_message(request, exclude=None if previous else {"previous"}))
    except OSError as exc:
        link.close()
        raise LogsError(f"the agent on {endpoint.describe()} went away: {exc}") from exc
    return LogStream(
        link,
        request,
        endpoint.describe(),
        max_line_bytes=(settings or LinkSettings()).max_line_bytes,
    )


#: ``(pod, container, tail, follow, previous) -> LogStream``: what :func:`pod_log_source`
#: returns, and what the API server's ``pods/log`` route and the UI call.
PodLogSource = Callable[[Pod, str, "int | None", bool, bool], LogStream]


def pod_log_source(
    api: Api,
    *,
    local_agent_command: str,
    known_hosts: Path | None = None,
    settings: LinkSettings | None = None,
) -> PodLogSource:
    """Logs of bound pods: the node comes from ``pod.spec.nodeName``; the local node is
    reached with ``local_agent_command``, any other over SSH with its pinned host key (or
    ``known_hosts``). Raises LogsError when the pod has no node or its Node is gone."""

    def open_stream(
        pod: Pod, container: str, tail: int | None, follow: bool, previous: bool
    ) -> LogStream:
        where = f"pod {pod.namespace}/{pod.name}"
        if not pod.spec.node_name:
            raise LogsError(f"{where} is not scheduled to a node yet")
        try:
            node = api.get(Node, pod.spec.node_name)
        except NotFound as exc:
            raise LogsError(f"{where}: its node {pod.spec.node_name} is gone") from exc
        command = local_agent_command if node.spec.is_local else DEFAULT_AGENT_COMMAND
        endpoint = NodeEndpoint.from_node(node, known_hosts=known_hosts, agent_command=command)
        return stream_logs(
            endpoint,
            namespace=pod.namespace or "default",
            pod=pod.name,
            container=container,
            tail=tail,
            follow=follow,
            previous=previous,
            settings=settings,
        )

    return open_stream

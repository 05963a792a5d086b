"""The agent daemon's Unix socket: the wire protocol in, the kubelet and status out.

``capstan-agent serve`` runs this; ``capstan-agent connect`` (what the reconciler runs over
SSH) bridges its stdio to the socket. Every connection first receives ``hello`` and the
current ``status``; it may then send ``sync`` (answered with ``ack``), ``logs`` (answered with
``logs_chunk`` messages) or ``hello``. Anything else gets an ``error`` reply and changes
nothing. Status goes to every connection on change and every few seconds as a heartbeat.
When a client closes its side, pending replies are flushed and the connection is closed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from agent import agent_version
from agent._framing import LineReader, TooLong
from agent.kubelet.kubelet import Kubelet
from agent.nodeinfo import node_status
from agent.state import DesiredStateFile
from agent.wire import MergedRuleTexts, SyncDecoder
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.protocol import (
    DEFAULT_HEARTBEAT_S,
    FEATURE_NODE_UNCHANGED,
    FEATURE_STATUS_DELTAS,
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    WIRE_FEATURES,
    Ack,
    ErrorMessage,
    Hello,
    LogsChunk,
    LogsRequest,
    Message,
    PodReport,
    ProtocolError,
    Status,
    Sync,
    encode_message,
    merge_service_rules,
)

_log = logging.getLogger(__name__)
_QUEUE_LIMIT = 1024
CAPABILITIES = ("sync", "status", "logs", "probes", "volumes", "services", *WIRE_FEATURES)


@dataclass(frozen=True)
class ServerSettings:
    socket_path: Path
    node_name: str
    bind_address: str
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    #: Every pod's report and the node's status go out at least this often (the kubelet's
    #: nodeStatusReportFrequency); in between, a status carries only the pods whose report
    #: changed, and the node's status only when more than its heartbeat times changed: the
    #: heartbeat of an unchanged node carries neither. The control plane restores what it
    #: marked not Ready during an outage from the reports it holds, not from this one.
    full_status_s: float = 300.0


class _Client:
    """One connection's outbound side: an ordered queue drained by a writer task."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.log_tasks: set[asyncio.Task[None]] = set()
        self.follow_tasks: set[asyncio.Task[None]] = set()
        self.task = asyncio.get_running_loop().create_task(self._pump())
        # The pod reports this client was last sent, and when it last had all of them.
        self.reported: dict[str, PodReport] = {}
        # The node status it was last sent, without heartbeat times.
        self.reported_node: NodeStatus | None = None
        self.complete_at = float("-inf")
        # The wire features the peer's hello listed; none until it says hello.
        self.features: frozenset[str] = frozenset()

    def send(self, message: Message) -> None:
        self.send_raw(encode_message(message))

    def send_raw(self, data: bytes, *, droppable: bool = False) -> bool:
        """Queue ``data``; False when a droppable message was dropped (client far behind)."""
        # A client that reads nothing must not make the agent hoard memory: the sender of a
        # droppable status resends what it carried (see AgentServer._send_status).
        if droppable and self._queue.qsize() >= _QUEUE_LIMIT:
            return False
        self._queue.put_nowait(data)
        return True

    async def _pump(self) -> None:
        try:
            while (data := await self._queue.get()) is not None:
                self._writer.write(data)
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            _log.debug("client went away: %s", exc)
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()

    async def writable(self) -> None:
        """Wait while this client is far behind (back-pressure for streams like logs)."""
        while self._queue.qsize() >= _QUEUE_LIMIT and not self.task.done():
            await asyncio.sleep(0.05)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Flush what is queued, then close; a client that stopped reading is cut off."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        except TimeoutError:
            self._writer.transport.abort()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class AgentServer:
    """Accepts connections, applies syncs (persisted first), fans out status."""

    def __init__(
        self,
        *,
        kubelet: Kubelet,
        state: DesiredStateFile,
        settings: ServerSettings,
        docker_version: str,
        clock: Callable[[], float] = time.time,
        node_conditions: Callable[[], Sequence[Condition]] = tuple,
    ) -> None:
        self._kubelet = kubelet
        self._state = state
        self._settings = settings
        self._docker_version = docker_version
        self._clock = clock
        self._node_conditions = node_conditions
        self._clients: set[_Client] = set()
        self._generation: int | None = None
        # The last applied sync, whole: what ``servicesUnchanged`` / ``podsUnchanged`` keep,
        # and the connection it came on (None when restored): a rules delta
        # (``servicesBase``) is taken only against a sync applied on its own connection.
        self._applied: Sync | None = None
        self._applied_origin: object | None = None
        self._term = 0
        self._sync_lock = asyncio.Lock()
        # Shared by the connections: a reconnecting control plane resends mostly the same.
        self._decoder = SyncDecoder()
        # The JSON of the rules the last delta merged, for the desired-state file.
        self._merged_texts = MergedRuleTexts()
        self._started = datetime.now(tz=UTC)
        self._status_dirty = asyncio.Event()
        self._version = agent_version()
        self._desired_listeners: list[Callable[[Sync], None]] = []
        kubelet.on_status_change(self._status_dirty.set)

    def on_desired(self, listener: Callable[[Sync], None]) -> None:
        """Call ``listener`` with every desired set taken (restored or applied), in order.

        The hook for parts that act on the desired set besides the kubelet, e.g. the proxy
        programming ``sync.services``. Listeners must not block; they run on the event loop.
        """
        self._desired_listeners.append(listener)

    def status_changed(self) -> None:
        """Something besides the kubelet changed the status (e.g. the proxy applied rules)."""
        self._status_dirty.set()

    def _take(self, sync: Sync, origin: object | None = None) -> None:
        self._generation = sync.generation
        self._applied = sync
        self._applied_origin = origin
        self._term = max(self._term, sync.term)
        self._kubelet.set_desired(sync)
        for listener in self._desired_listeners:
            listener(sync)

    def restore(self) -> None:
        """Resume the persisted desired set, if any (before the first pass)."""
        sync = self._state.load()
        if sync is not None:
            self._take(sync)
            _log.info("resumed generation %d with %d pods", sync.generation, len(sync.pods))

    def _hello(self) -> Hello:
        return Hello(
            role="agent",
            versions=[PROTOCOL_VERSION],
            node_name=self._settings.node_name,
            agent_version=self._version,
            capabilities=list(CAPABILITIES),
        )

    def status(self) -> Status:
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        return Status(
            node_name=self._settings.node_name,
            generation=self._generation,
            node=node_status(
                bind_address=self._settings.bind_address,
                docker_version=self._docker_version,
                agent_version=self._version,
                ready_since=self._started,
                heartbeat=now,
                problem=self._kubelet.problem,
                conditions=self._node_conditions(),
            ),
            pods=self._kubelet.pod_reports(),
        )

    def _broadcast_status(self) -> None:
        if not self._clients:
            return
        status = self.status()
        for client in list(self._clients):
            self._send_status(client, status)

    def _send_status(self, client: _Client, status: Status, *, droppable: bool = True) -> None:
        """Send ``status`` to one client: complete when due, else only the changed pods, and
        the node's status only when it changed but for its heartbeat times."""
        now = time.monotonic()
        current = {report.uid: report for report in status.pods}
        node = status.node.without_heartbeats() if status.node is not None else None
        deltas = FEATURE_STATUS_DELTAS in client.features
        complete = not deltas or now - client.complete_at >= self._settings.full_status_s
        if not complete:
            # Identity first: an unchanged pod's report is the same object as last time.
            changed = [
                r
                for uid, r in current.items()
                if (sent := client.reported.get(uid)) is not r and sent != r
            ]
            removed = [uid for uid in client.reported if uid not in current]
            update: dict[str, object] = {"pods": changed, "complete": False, "removed": removed}
            if FEATURE_NODE_UNCHANGED in client.features and node == client.reported_node:
                update["node"] = None
            status = status.model_copy(update=update)
        # A peer that does not know deltas gets the older form, without their fields.
        line = encode_message(status, exclude=None if deltas else {"complete", "removed"})
        if client.send_raw(line, droppable=droppable):
            client.reported = current
            client.reported_node = node
            if complete:
                client.complete_at = now

    async def _status_fanout(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_dirty.wait(), self._settings.heartbeat_s)
            self._status_dirty.clear()
            self._broadcast_status()
            # Coalesce bursts: a converging node changes status on every pass.
            await asyncio.sleep(0.05)

    async def serve(self, *, ready: Callable[[], None] | None = None) -> None:
        """Listen until cancelled; the kubelet keeps running pods regardless of clients."""
        path = self._settings.socket_path
        _claim_socket_path(path)
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(
                self._handle, path=str(path), limit=MAX_LINE_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        fanout = asyncio.get_running_loop().create_task(self._status_fanout())
        _log.info("listening on %s as node %s", path, self._settings.node_name)
        if ready is not None:
            ready()
        try:
            await server.serve_forever()
        finally:
            fanout.cancel()
            server.close()
            # The order matters: close the connections first, then wait for the server (from
            # Python 3.12 wait_closed also waits for the connection handlers to return).
            for client in list(self._clients):
                for task in client.log_tasks | client.follow_tasks:
                    task.cancel()
                await client.close()
            await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._clients.add(client)
        client.send(self._hello())
        self._send_status(client, self.status(), droppable=False)
        lines = LineReader(reader, max_line=MAX_LINE_BYTES)
        try:
            while (line := await lines.next_line()) is not None:
                if isinstance(line, TooLong):
                    client.send(
                        ErrorMessage(
                            code="too_large",
                            message=f"line of {line.size_seen}+ bytes exceeds {MAX_LINE_BYTES}",
                        )
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    message = self._decoder.decode(line)
                except ProtocolError as exc:
                    client.send(exc.to_message())
                    continue
                await self._dispatch(client, message)
        except (ConnectionError, OSError) as exc:
            _log.debug("connection read failed: %s", exc)
        finally:
            self._clients.discard(client)
            for task in client.follow_tasks:
                task.cancel()
            # Replies to what the client sent before closing its side still go out.
            if client.log_tasks:
                await asyncio.gather(*client.log_tasks, return_exceptions=True)
            await client.close()

    async def _dispatch(self, client: _Client, message: Message) -> None:
        if isinstance(message, Sync):
            client.send(await self.apply(message, origin=client))
            self._broadcast_status()
        elif isinstance(message, Hello):
            client.features = frozenset(message.capabilities)
            if PROTOCOL_VERSION not in message.versions:
                client.send(
                    ErrorMessage(
                        code="unsupported_version",
                        in_reply_to=message.id,
                        message=f"no common protocol version: agent speaks {PROTOCOL_VERSION}, "
                        f"peer offers {message.versions}",
                    )
                )
        elif isinstance(message, LogsRequest):
            task = asyncio.get_running_loop().create_task(self._stream_logs(client, message))
            tasks = client.follow_tasks if message.follow else client.log_tasks
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif isinstance(message, ErrorMessage):
            # Never answer an error with an error: two confused peers would ping-pong.
            _log.warning("peer reported %s: %s", message.code, message.message)
        else:
            client.send(
                ErrorMessage(
                    code="unexpected",
                    in_reply_to=message.id,
                    message=f"the agent does not accept {message.type} messages",
                )
            )

    async def apply(self, sync: Sync, *, origin: object | None = None) -> Ack:
        """Persist then hand over a desired set, unless it is older than the applied one.

        ``origin`` is the connection the sync came on: a rules delta (``servicesBase``) is
        merged into the rules of the last sync applied on that very connection, and refused
        (``applied: false``, nothing changed) against any other base; the sender then sends
        the whole set."""
        async with self._sync_lock:
            if sync.term < self._term:
                return Ack(
                    in_reply_to=sync.id,
                    generation=sync.generation,
                    applied=False,
                    message=f"term {sync.term} is older than the newest leader's "
                    f"{self._term}; ignored",
                )
            if (
                self._generation is not None
                and sync.generation < self._generation
                and sync.term == self._term
            ):
                return Ack(
                    in_reply_to=sync.id,
                    generation=sync.generation,
                    applied=False,
                    message=f"generation {sync.generation} is older than the applied "
                    f"{self._generation}; ignored",
                )
            if sync.services_unchanged or sync.pods_unchanged:
                kept = [
                    name
                    for name, flag in (
                        ("servicesUnchanged", sync.services_unchanged),
                        ("podsUnchanged", sync.pods_unchanged),
                    )
                    if flag
                ]
                if self._applied is None:
                    return Ack(
                        in_reply_to=sync.id,
                        generation=sync.generation,
                        applied=False,
                        message=f"{' and '.join(kept)} but no sync applied yet; ignored",
                    )
                update: dict[str, object] = {"services_unchanged": False, "pods_unchanged": False}
                if sync.services_unchanged:
                    update["services"] = self._applied.services
                if sync.pods_unchanged:
                    update["pods"] = self._applied.pods
                sync = sync.model_copy(update=update)
            if sync.services_base is not None:
                merged = self._merged_rules(sync, origin)
                if isinstance(merged, str):
                    _log.warning("refused generation %d: %s", sync.generation, merged)
                    return Ack(
                        in_reply_to=sync.id,
                        generation=sync.generation,
                        applied=False,
                        message=f"refused: {merged}; nothing changed, send the whole set",
                    )
                sync = merged
            problem = _duplicate_pods(sync)
            if problem is not None:
                return Ack(
                    in_reply_to=sync.id,
                    generation=sync.generation,
                    applied=False,
                    message=f"refused: {problem}; nothing changed",
                )
            try:
                await asyncio.to_thread(self._state.save, sync, known=self._text)
            except OSError as exc:
                # A full disk under the state dir, say: a set the agent could not persist is
                # not taken (after a restart it would be lost). Refused like a stale one,
                # the control plane sends it again after the next status.
                _log.error("cannot persist generation %d: %s", sync.generation, exc)
                return Ack(
                    in_reply_to=sync.id,
                    generation=sync.generation,
                    applied=False,
                    message=f"cannot persist generation {sync.generation} in "
                    f"{self._state.path}: {exc}; nothing changed",
                )
            self._take(sync, origin)
            _log.info(
                "applied generation %d: %d pods, %d services",
                sync.generation,
                len(sync.pods),
                len(sync.services),
            )
            return Ack(
                in_reply_to=sync.id,
                generation=sync.generation,
                applied=True,
                message=f"generation {sync.generation} applied: {len(sync.pods)} pods",
            )

    def _text(self, model: BaseModel) -> str | None:
        """The JSON of a part of the sync being saved, when known without encoding it."""
        text = self._decoder.text(model)
        return text if text is not None else self._merged_texts.text(model)

    def _merged_rules(self, sync: Sync, origin: object | None) -> Sync | str:
        """``sync`` with its rules delta merged into the base's rules, or why it cannot be."""
        base = sync.services_base
        applied = self._applied
        if applied is None:
            return f"servicesBase {base} but no sync applied yet"
        if origin is None or origin is not self._applied_origin:
            return (
                f"servicesBase {base} but generation {applied.generation} was applied "
                "on another connection"
            )
        if applied.generation != base:
            return f"servicesBase {base} but the last applied generation is {applied.generation}"
        try:
            services = merge_service_rules(
                applied.services,
                services=sync.services,
                changed=sync.services_changed,
                removed=sync.services_removed,
            )
        except ValueError as exc:
            return f"servicesBase {base}: {exc}"
        _log.info(
            "generation %d: rules delta against %d merged (%d whole, %d changed, %d removed)",
            sync.generation,
            base,
            len(sync.services),
            len(sync.services_changed),
            len(sync.services_removed),
        )
        given = {id(rule) for rule in (*applied.services, *sync.services)}
        self._merged_texts.note(services, {id(rule) for rule in services} - given)
        return sync.model_copy(
            update={
                "services": services,
                "services_base": None,
                "services_changed": [],
                "services_removed": [],
            }
        )

    async def _stream_logs(self, client: _Client, request: LogsRequest) -> None:
        try:
            container_id = self._kubelet.find_container(
                request.namespace, request.pod, request.container, previous=request.previous
            )
        except LookupError as exc:
            client.send(ErrorMessage(code="not_found", in_reply_to=request.id, message=str(exc)))
            return
        # An empty first chunk says the container was found: a follow of a quiet container
        # can then answer at once rather than when its first line comes.
        client.send(LogsChunk(in_reply_to=request.id))
        # Docker's chunks may split a multi-byte character; decode across chunk borders.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            async for chunk in self._kubelet.logs(
                container_id, tail=request.tail, follow=request.follow
            ):
                await client.writable()
                text = decoder.decode(chunk)
                if text:
                    client.send(LogsChunk(in_reply_to=request.id, data=text))
        except Exception as exc:
            client.send(
                ErrorMessage(
                    code="internal", in_reply_to=request.id, message=f"log stream failed: {exc}"
                )
            )
            return
        client.send(
            LogsChunk(in_reply_to=request.id, data=decoder.decode(b"", final=True), eof=True)
        )


def _duplicate_pods(sync: Sync) -> str | None:
    seen: set[tuple[str, str]] = set()
    uids: set[str] = set()
    for pod in sync.pods:
        key = (pod.namespace or "default", pod.name)
        if key in seen:
            return f"pod {key[0]}/{key[1]} appears twice"
        seen.add(key)
        if pod.metadata.uid:
            if pod.metadata.uid in uids:
                return f"pod uid {pod.metadata.uid} appears twice"
            uids.add(pod.metadata.uid)
    return None


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket left by a killed agent; refuse if another agent listens there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise
    finally:
        probe.close()
    raise RuntimeError(f"another agent is listening on {path}")

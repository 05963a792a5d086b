"""One node's persistent agent connection: connect, push the newest desired set, relay status.

Sits between the reconciler's node fan-out (``NodePool``) and the node agent. Each
``NodeConnection`` owns one session thread that keeps a single link open (one SSH transport
and one long-lived ``capstan-agent connect`` channel, or a local pipe), reconnects with
exponential backoff and jitter, and after every (re)connect pushes the newest desired set
again. The same thread reads: it polls the link's descriptors and a wakeup of its own (a
push, a close), hands every agent message to the caller's callback and sends each sync, so
a node costs this thread and, over SSH, paramiko's transport thread.

Why threads and not asyncio: paramiko is blocking and already runs one thread per
transport; its connect and a send to a node whose window is full block, and wrapping them in
an executor would hide where a node stalls. A thread per node makes the isolation explicit:
a stalled node blocks only its own thread (window adjustments for what it reads are sent
from it too). Callers on an event loop use ``push`` (non-blocking, returns a
``concurrent.futures.Future`` for ``asyncio.wrap_future``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.api.clock import MonotonicClock, SystemClock
from reconciler.controllers.runtime import share_field_sets
from reconciler.nodes import _wire
from reconciler.nodes._links import (
    AuthenticationFailed,
    LineSplitter,
    Link,
    LinkSettings,
    open_link,
)
from reconciler.nodes._slot import Generation, PushSlot
from reconciler.nodes.backoff import Backoff, BackoffPolicy
from reconciler.nodes.endpoint import NodeEndpoint, NodeName
from reconciler.nodes.hostkeys import HostKeyRejected
from schemas.meta import Condition, ConditionStatus
from schemas.pod import Pod
from schemas.protocol import ServiceRule, Status

_log = logging.getLogger(__name__)


#: The Node condition type a ``NodeState`` becomes.
AGENT_CONNECTED = "AgentConnected"


class Phase(StrEnum):
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    HOST_KEY_REJECTED = "HostKeyRejected"
    AUTH_FAILED = "AuthenticationFailed"
    CLOSED = "Closed"


@dataclass(frozen=True, slots=True)
class NodeState:
    """What the node controller turns into Node conditions.

    ``expected_fingerprint``/``offered_fingerprint`` are set for ``HOST_KEY_REJECTED``.
    """

    node: NodeName
    phase: Phase
    message: str = ""
    expected_fingerprint: str | None = None
    offered_fingerprint: str | None = None
    agent_hello: _wire.AgentHello | None = None

    def condition(self) -> Condition:
        """The Node condition ``AgentConnected`` (the controller stamps the times).

        A refused host key reads, in ``kubectl describe`` style: ``False``,
        ``HostKeyRejected``, "host key for n1 (...) refused: expected SHA256:..., offered
        SHA256:...".
        """
        status: ConditionStatus
        if self.phase is Phase.CONNECTED:
            status = "True"
        elif self.phase is Phase.CONNECTING:
            status = "Unknown"
        else:
            status = "False"
        return Condition(
            type=AGENT_CONNECTED, status=status, reason=self.phase.value, message=self.message
        )


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    link: LinkSettings = field(default_factory=LinkSettings)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: How long to wait for the agent's hello after the channel opens.
    hello_timeout: float = 15.0
    #: No byte from the agent for this long (it heartbeats status every few seconds) means
    #: the peer is gone even if TCP has not noticed: drop the link and reconnect.
    dead_after: float = 45.0
    #: A sync unanswered for this long means the agent is wedged: reconnect and resend.
    ack_timeout: float = 60.0
    #: The control plane's leadership term every sync carries: agents refuse older terms,
    #: so a deposed leader's pushes cannot undo its successor's.
    term: int = 0
    #: How many connections of a pool may be between "open the SSH link" and "the agent said
    #: hello" at once (Ansible's ``forks``): each start runs a key exchange here and starts a
    #: ``capstan-agent connect`` there, and a hundred at once on one machine outwait the hello.
    max_handshakes: int = 10


class _Waker:
    """A descriptor a session thread polls beside its link's: readable once ``wake`` has
    been called, until ``clear``. An eventfd where there is one, else a pipe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._read, self._write = os.pipe()
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # already readable: enough
                os.write(self._write, _ONE)

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._read)
            if self._write != self._read:
                os.close(self._write)


#: What ``_Waker.wake`` writes: an eventfd takes an 8-byte counter (a pipe any byte).
_ONE = (1).to_bytes(8, sys.byteorder)


MessageCallback = Callable[[NodeName, _wire.AgentMessage], None]
StateCallback = Callable[[NodeState], None]
LinkOpener = Callable[[NodeEndpoint, LinkSettings], Link]


class NodeConnection:
    """The reconciler's side of one node. Thread-safe; callbacks run on its session thread.

    Callbacks must be quick and must not block (park the event and return, as the node
    dispatcher does): they run on the node's session thread.
    """

    def __init__(
        self,
        endpoint: NodeEndpoint,
        *,
        on_message: MessageCallback,
        on_state: StateCallback,
        settings: ConnectionSettings | None = None,
        clock: MonotonicClock | None = None,
        rng: random.Random | None = None,
        opener: LinkOpener = open_link,
        first_generation: int = 0,
        handshakes: threading.Semaphore | None = None,
    ) -> None:
        self.endpoint = endpoint
        # Shared by a pool's connections: held from opening the link to the agent's hello.
        self._handshakes = handshakes
        self._handshaking = False
        self._on_message = on_message
        self._on_state = on_state
        self._settings = settings or ConnectionSettings()
        self._clock = clock or SystemClock()
        self._backoff = Backoff(self._settings.backoff, rng or random.Random())  # noqa: S311 - jitter
        self._opener = opener
        self._lock = threading.Lock()
        # Wakes the session thread from its poll: a push to send, or a close.
        self._waker = _Waker()
        self._slot: PushSlot[_wire.DesiredSet, _wire.Ack] = PushSlot(
            first_generation=first_generation
        )
        self._stop = threading.Event()
        self._link: Link | None = None
        self._hello: _wire.AgentHello | None = None
        self._last_rx = 0.0
        # The Service rules the agent holds, as far as this session knows: those of the
        # last sync it applied here. A sync with the same rules leaves them out.
        self._agent_services: tuple[ServiceRule, ...] | None = None
        # The generation that gave the agent ``_agent_services``: what a rules delta is against.
        self._agent_services_generation = 0
        self._in_flight_services: tuple[ServiceRule, ...] | None = None
        # Likewise the pods: a sync that only moves Service rules leaves them out.
        self._agent_pods: tuple[Pod, ...] | None = None
        self._in_flight_pods: tuple[Pod, ...] | None = None
        self._state = NodeState(endpoint.name, Phase.CONNECTING)
        self._thread = threading.Thread(
            target=self._run, name=f"capstan-node-{endpoint.name}", daemon=True
        )

    @property
    def name(self) -> NodeName:
        return self.endpoint.name

    @property
    def state(self) -> NodeState:
        return self._state

    @property
    def desired(self) -> _wire.DesiredSet | None:
        """The newest desired set pushed (None before the first push)."""
        with self._lock:
            return self._slot.desired

    @property
    def acked_generation(self) -> Generation:
        with self._lock:
            return self._slot.acked

    def start(self) -> None:
        self._thread.start()

    def push(self, desired: _wire.DesiredSet) -> Future[_wire.Ack]:
        """Make ``desired`` the node's complete desired set; returns at once.

        The future resolves with the agent's ack of this set or of a newer one (a newer push
        supersedes this one), or with ``SyncRejected``. An unchanged set is not re-sent.
        """
        with self._lock:
            _, future = self._slot.offer(desired)
        self._waker.wake()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the session and close the link; pending push futures are cancelled."""
        self._shutdown(timeout)
        with self._lock:
            self._slot.cancel_all()

    def detach(
        self, timeout: float = 10.0
    ) -> tuple[_wire.DesiredSet | None, list[Future[_wire.Ack]]]:
        """Stop like ``close`` but hand over the newest set and the unresolved push futures,
        for a connection that replaces this one (``NodePool.ensure`` with a new endpoint)."""
        self._shutdown(timeout)
        with self._lock:
            return self._slot.desired, self._slot.drain_waiters()

    def _shutdown(self, timeout: float) -> None:
        self._stop.set()
        self._waker.wake()
        with self._lock:
            link = self._link
        if link is not None:
            # Unblocks a session thread stuck sending to a stalled node.
            link.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:  # never started: nothing polls the waker
            self._waker.close()
        self._set_state(Phase.CLOSED, "connection closed by the reconciler")

    # -- session thread -------------------------------------------------------------------

    def _set_state(
        self,
        phase: Phase,
        message: str = "",
        *,
        expected: str | None = None,
        offered: str | None = None,
    ) -> None:
        state = NodeState(
            self.name,
            phase,
            message,
            expected_fingerprint=expected,
            offered_fingerprint=offered,
            agent_hello=self._hello if phase is Phase.CONNECTED else None,
        )
        if state == self._state:
            return
        self._state = state
        refused = phase in (Phase.HOST_KEY_REJECTED, Phase.AUTH_FAILED)
        level = logging.WARNING if refused else logging.INFO
        _log.log(level, "%s: %s %s", self.name, phase, message)
        try:
            self._on_state(state)
        except Exception:
            _log.exception("%s: state callback failed", self.name)

    def _run(self) -> None:
        # Retries keep the failure state (a refused host key stays visible in the Node's
        # condition while we retry) instead of flapping through "Connecting".
        self._set_state(Phase.CONNECTING, f"connecting to {self.endpoint.describe()}")
        while not self._stop.is_set():
            if not self._begin_handshake():
                break
            try:
                link = self._opener(self.endpoint, self._settings.link)
            except HostKeyRejected as exc:
                self._set_state(
                    Phase.HOST_KEY_REJECTED, str(exc), expected=exc.expected, offered=exc.offered
                )
            except AuthenticationFailed as exc:
                self._set_state(Phase.AUTH_FAILED, str(exc))
            except Exception as exc:
                self._set_state(Phase.DISCONNECTED, f"connect failed: {exc}")
            else:
                reason = self._session(link)
                if self._stop.is_set():
                    break
                self._set_state(Phase.DISCONNECTED, reason)
            finally:
                self._end_handshake()
            self._stop.wait(self._backoff.next_delay())
        self._end_handshake()
        self._waker.close()  # this thread was its only reader

    def _begin_handshake(self) -> bool:
        """Take a handshake slot of the pool (waiting for one); False when stopped."""
        if self._handshakes is not None:
            while not self._handshakes.acquire(timeout=0.5):
                if self._stop.is_set():
                    return False
            self._handshaking = True
        return not self._stop.is_set()

    def _end_handshake(self) -> None:
        if self._handshaking and self._handshakes is not None:
            self._handshaking = False
            self._handshakes.release()

    def _session(self, link: Link) -> str:
        """Run one link until it fails; returns why it ended."""
        with self._lock:
            if self._stop.is_set():
                link.close()
                return "closed"
            self._link = link
            self._hello = None
            self._last_rx = self._clock.monotonic()
        try:
            return self._drive(link, LineSplitter(self._settings.link.max_line_bytes))
        except Exception as exc:
            return f"link failed: {exc}"
        finally:
            link.close()
            with self._lock:
                self._link = None

    def _await(self, link: Link, lines: LineSplitter, timeout: float) -> bool:
        """Wait up to ``timeout`` for agent output or a wakeup (a push, a close), handling
        every whole line that arrived; False once the agent's stream has ended."""
        poller = select.poll()
        for fd in (*link.filenos(), self._waker.fileno()):
            poller.register(fd, select.POLLIN)
        if poller.poll(max(0, round(timeout * 1000))):
            self._waker.clear()
        return self._receive(link, lines)

    def _receive(self, link: Link, lines: LineSplitter) -> bool:
        """Handle every whole line the link holds now; False once its stream has ended."""
        while True:
            data = link.receive()
            if data is None:
                return True
            if not data:
                return False
            with self._lock:
                self._last_rx = self._clock.monotonic()
            for line in lines.feed(data):
                self._handle_line(line)

    def _drive(self, link: Link, lines: LineSplitter) -> str:
        link.send(_wire.encode_hello(self.name))
        deadline = self._clock.monotonic() + self._settings.hello_timeout
        while True:
            with self._lock:
                hello = self._hello
            if hello is not None:
                break
            left = deadline - self._clock.monotonic()
            if self._stop.is_set():
                return "closed"
            if left <= 0:
                return f"no hello from the agent within {self._settings.hello_timeout}s"
            if not self._await(link, lines, left):
                return "agent closed the channel before hello"
        features = _wire.agent_features(hello)
        self._end_handshake()  # connected: the next node may start its handshake
        with self._lock:
            told_no_ingresses = False
            self._slot.new_session()
            self._agent_services = self._in_flight_services = None
            self._agent_pods = self._in_flight_pods = None
        self._backoff.reset()
        self._set_state(Phase.CONNECTED, f"agent {_wire.describe_hello(hello)}")
        tick = max(0.05, min(self._settings.dead_after, self._settings.ack_timeout) / 4)
        sent_at = self._clock.monotonic()
        while True:
            # What arrived while the last sync was being sent comes first: a long send to a
            # slow node must not make its own acks and statuses look late.
            if not self._receive(link, lines):
                return "agent channel closed"
            with self._lock:
                if self._stop.is_set():
                    return "closed"
                now = self._clock.monotonic()
                quiet = now - self._last_rx
                if quiet > self._settings.dead_after:
                    return f"nothing from the agent for {quiet:.0f}s"
                if self._slot.in_flight is not None and now - sent_at > self._settings.ack_timeout:
                    return f"sync {self._slot.in_flight} unanswered for {now - sent_at:.0f}s"
                outgoing = self._slot.take()
                if outgoing is not None:
                    sent_at = now
                    services = outgoing.desired.services
                    unchanged = services == self._agent_services
                    base = (
                        (self._agent_services_generation, self._agent_services)
                        if self._agent_services is not None
                        else None
                    )
                    self._in_flight_services = services
                    pods = outgoing.desired.pods
                    pods_unchanged = pods == self._agent_pods
                    self._in_flight_pods = pods
            if outgoing is None:
                if not self._await(link, lines, tick):
                    return "agent channel closed"
                continue
            if (
                outgoing.desired.ingresses
                and _wire.FEATURE_INGRESSES not in features
                and not told_no_ingresses
            ):
                told_no_ingresses = True
                _log.warning(
                    "%s: the agent (%s) predates Ingresses; its node serves none until upgraded",
                    self.name,
                    _wire.describe_hello(hello),
                )
            # Sent outside the lock: a stalled peer may block here, and only this node waits.
            link.send(
                _wire.encode_sync(
                    outgoing.generation,
                    outgoing.desired,
                    term=self._settings.term,
                    services_unchanged=unchanged,
                    pods_unchanged=pods_unchanged,
                    services_base=base,
                    features=features,
                )
            )

    def _handle_line(self, line: bytes) -> None:
        try:
            message = _wire.decode(line)
        except _wire.WireError as exc:
            # A garbled line changes nothing; the stream stays usable for the next one.
            _log.warning("%s: ignoring malformed agent message: %s", self.name, exc)
            return
        if isinstance(message, Status):
            # The dispatcher keeps each node's last report of every pod it runs.
            share_field_sets(message)
        with self._lock:
            if isinstance(message, _wire.AgentHello):
                self._hello = message
            elif isinstance(message, _wire.Ack):
                if message.applied:
                    if message.generation == self._slot.in_flight:
                        self._agent_services = self._in_flight_services
                        self._agent_services_generation = message.generation
                        self._agent_pods = self._in_flight_pods
                    else:
                        self._agent_services = self._agent_pods = None
                    self._slot.ack(message.generation, message)
                else:
                    # The agent kept what it had, which may not be what this session sent.
                    self._agent_services = self._agent_pods = None
                    self._slot.ignored(message.generation)
            elif isinstance(message, _wire.ErrorMessage):
                refused = _wire.refused_generation(message)
                if refused is not None:
                    self._slot.reject(refused, f"{message.code}: {message.message}")
            applied = _wire.reported_generation(message)
            if applied is not None:
                self._slot.observe(applied)
        try:
            self._on_message(self.name, message)
        except Exception:
            _log.exception("%s: message callback failed", self.name)

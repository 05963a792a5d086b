"""Watches on the etcd backend: etcd's streaming ``/v3/watch`` over a raw HTTP/1.1 socket.

Created by ``EtcdStore.watch``. The gateway answers a watch POST with a chunked
response carrying one JSON message per line. We read it on our own socket
rather than through httpx because closing an httpx stream from another thread
does not wake a thread blocked reading it; ``socket.shutdown`` does, so
``close()`` ends the reader thread at once.

A reader thread decodes messages into event batches on a queue. If the
connection drops, it reconnects (next endpoint first) from the revision after
the last one it delivered, so a failover costs no gap and no duplicate.
etcd does not split one revision's events across messages unless asked to
(``fragment``), which is what makes "resume after the last revision" exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from reconciler.store._base import Watch
from reconciler.store._errors import Compacted, StoreError, Unavailable
from reconciler.store._etcd_http import b64, kv_from_json
from reconciler.store._types import Event, EventType, KeyValue, Revision

_log = logging.getLogger(__name__)
_CONNECT_TIMEOUT_S = 2.0
_RECONNECT_PAUSE_S = 0.2
_CREATE_TIMEOUT_S = 10.0


class _Stream:
    """One HTTP/1.1 POST whose chunked response we read line by line."""

    def __init__(self, endpoint: str, body: bytes) -> None:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "127.0.0.1", parts.port or 2379
        self.sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S)
        try:
            self._start(endpoint, host, port, body)
        except BaseException:
            self.sock.close()
            raise

    def _start(self, endpoint: str, host: str, port: int, body: bytes) -> None:
        request = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii") + body
        self.sock.sendall(request)
        self._buf = b""
        status = self._readline()
        if b" 200 " not in status:
            raise StoreError(f"etcd watch at {endpoint} answered {status.decode(errors='replace')}")
        headers = b""
        while True:
            line = self._readline()
            if not line:
                break
            headers += line.lower() + b"\n"
        if b"transfer-encoding: chunked" not in headers:
            raise StoreError(f"etcd watch at {endpoint}: expected a chunked stream")
        # From here on we block until data or shutdown(): close() is how a watch ends.
        self.sock.settimeout(None)
        self._lines = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("etcd closed the watch stream")
        self._buf += data

    def _readline(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def messages(self) -> Any:
        """Yield each JSON message of the stream (decoded), until it ends."""
        while True:
            size = int(self._readline().split(b";")[0], 16)
            if size == 0:
                raise ConnectionError("etcd ended the watch stream")
            self._lines += self._read_exact(size)
            self._readline()  # the CRLF after each chunk
            while b"\n" in self._lines:
                line, self._lines = self._lines.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class EtcdWatch(Watch):
    def __init__(
        self,
        *,
        endpoints: list[str],
        key: bytes,
        range_end: bytes | None,
        after: int,
        on_close: Callable[[EtcdWatch], None],
    ) -> None:
        super().__init__()
        self._on_close = on_close
        self._endpoints = endpoints
        self._key, self._range_end = key, range_end
        self._after = after
        self._events: queue.Queue[list[Event] | BaseException | None] = queue.Queue()
        self._closed = False
        self._stream: _Stream | None = None
        self._stream_lock = threading.Lock()
        self._created = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="etcd-watch")
        self._thread.start()
        if not self._created.wait(_CREATE_TIMEOUT_S):
            self.close()
            raise Unavailable("etcd did not confirm the watch in time")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        self._events.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._on_close(self)

    def poll(self, timeout: float | None) -> list[Event]:
        if self._closed and self._events.empty():
            return []
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return []
        if item is None:
            return []
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        return item

    def _body(self) -> bytes:
        request: dict[str, Any] = {
            "key": b64(self._key),
            "start_revision": str(self._after + 1),
            "prev_kv": True,
        }
        if self._range_end is not None:
            request["range_end"] = b64(self._range_end)
        else:
            request["range_end"] = b64(b"\x00")  # etcd: "\0" means every key >= key
        return json.dumps({"create_request": request}).encode()

    def _run(self) -> None:
        failures = 0
        index = 0
        while not self._closed:
            endpoint = self._endpoints[index % len(self._endpoints)]
            stream: _Stream | None = None
            try:
                stream = _Stream(endpoint, self._body())
                with self._stream_lock:
                    if self._closed:
                        return
                    self._stream = stream
                for message in stream.messages():
                    failures = 0
                    self._handle(message.get("result", message))
            except Compacted as exc:
                self._events.put(exc)
                self._created.set()
                return
            except (OSError, ConnectionError, ValueError, StoreError) as exc:
                if self._closed:
                    return
                failures += 1
                index += 1
                if failures >= 3 * len(self._endpoints):
                    self._events.put(Unavailable(f"etcd watch lost every endpoint: {exc}"))
                    self._created.set()
                    return
                _log.warning("etcd watch on %s dropped (%s); resuming", endpoint, exc)
                time.sleep(_RECONNECT_PAUSE_S)
            finally:
                if stream is not None:
                    with self._stream_lock:
                        stream.close()
                        self._stream = None

    def _handle(self, result: dict[str, Any]) -> None:
        if "error" in result:
            raise StoreError(f"etcd watch: {result.get('message', result['error'])}")
        if result.get("created"):
            self._created.set()
        compact = int(result.get("compact_revision", 0))
        if result.get("canceled"):
            if compact:
                raise Compacted(requested=self._after, compact_revision=compact)
            raise StoreError(f"etcd canceled the watch: {result.get('cancel_reason', '')}")
        events = [_event(e) for e in result.get("events", ())]
        if events:
            self._after = events[-1].revision
            self._events.put(events)


def _event(obj: dict[str, Any]) -> Event:
    kv = kv_from_json(obj["kv"])
    prev = kv_from_json(obj["prev_kv"]) if "prev_kv" in obj else None
    if obj.get("type") == "DELETE":
        deleted = KeyValue(
            key=kv.key,
            value=b"",
            create_revision=Revision(0),
            mod_revision=kv.mod_revision,
            version=0,
        )
        return Event(EventType.DELETE, deleted, prev, kv.mod_revision)
    return Event(EventType.PUT, kv, prev, kv.mod_revision)

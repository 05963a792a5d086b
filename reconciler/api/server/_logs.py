"""The ``pods/log`` subresource: ``GET /api/v1/namespaces/{ns}/pods/{name}/log``.

Called by the REST handler (after authentication and RBAC on ``pods/log``) for ``kubectl
logs`` and the clients' ``read_namespaced_pod_log``. Checks the request against the Pod
object as Kubernetes does (the pod exists, is on a node, has the container), then asks the
:class:`PodLogSource` that ``capstan up`` plugs in (``ServerHooks.pod_logs``: the node's
agent over its own link, :func:`reconciler.nodes.logs.pod_log_source`) and streams the text
as ``text/plain``. With ``follow`` the response stays open until the container ends or the
client goes away; either way the node link is closed.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Protocol

import anyio
import anyio.to_thread
from starlette.responses import Response, StreamingResponse

from reconciler.api.server._query import parse_bool
from reconciler.api.server._status import HttpError
from schemas import Pod

__all__ = ["PodLogSource", "PodLogs"]

#: Query parameters of Kubernetes' PodLogOptions that are accepted only when off.
_UNSUPPORTED = ("timestamps", "sinceSeconds", "sinceTime", "insecureSkipTLSVerifyBackend")


class PodLogSource(Protocol):
    """Opens the log of ``container`` of a pod bound to a node: an iterator of text whose
    ``close()`` (if it has one) may be called from another thread while ``next`` waits, and
    ends that wait. Raises ``LookupError`` when the node has no such container (or, with
    ``previous``, no earlier attempt of it) and ``RuntimeError`` or ``OSError`` when the
    node's agent cannot be reached."""

    def __call__(
        self, pod: Pod, container: str, tail: int | None, follow: bool, previous: bool, /
    ) -> Iterator[str]: ...


def _non_negative(name: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise HttpError(400, f"{name}: must be a non-negative integer, got {value!r}")
    return number


class PodLogs:
    """The ``pods/log`` route's logic, one per server. ``source`` None: this server cannot
    reach nodes (a 503 says so). Each open log holds one thread of its own limiter while it
    waits for the node, so a follow never takes a worker that other requests need."""

    def __init__(
        self,
        source: PodLogSource | None,
        *,
        max_streams: int,
    ) -> None:
        self._source = source
        self._limiter = anyio.CapacityLimiter(max_streams)

    async def respond(self, pod: Pod, query: Mapping[str, str]) -> Response:
        """The log of ``pod`` (read by the caller) as the query asks."""
        for key in _UNSUPPORTED:
            if query.get(key) not in (None, "", "false"):
                raise HttpError(400, f"{key}: not supported by Capstan's pods/log yet")
        follow = parse_bool("follow", query.get("follow"))
        previous = parse_bool("previous", query.get("previous"))
        tail = _non_negative("tailLines", query.get("tailLines"))
        limit = _non_negative("limitBytes", query.get("limitBytes"))
        container = self._container(pod, query.get("container"))
        if self._source is None:
            raise HttpError(503, "this server cannot reach the nodes' agents for logs")
        if not pod.spec.node_name:
            raise HttpError(400, f'pod "{pod.name}" does not have a host assigned')
        source = self._source
        stream = await anyio.to_thread.run_sync(
            lambda: self._open(source, pod, container, tail, follow, previous),
            limiter=self._limiter,
        )
        try:
            # The first chunk (empty from a Capstan agent) shows the container was found;
            # an error before it is a status code, not text in a 200.
            first = await self._next(stream)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_close, stream)
            raise
        return StreamingResponse(
            self._body(stream, first, limit), media_type="text/plain; charset=utf-8"
        )

    @staticmethod
    def _container(pod: Pod, asked: str | None) -> str:
        names = [c.name for c in pod.spec.containers]
        if not asked:
            if len(names) > 1:
                raise HttpError(
                    400,
                    f"a container name must be specified for pod {pod.name}, choose one of: "
                    f"[{' '.join(names)}]",
                )
            return names[0]
        init = [c.name for c in pod.spec.init_containers or []]
        if asked not in names and asked not in init:
            raise HttpError(400, f"container {asked} is not valid for pod {pod.name}")
        return asked

    @staticmethod
    def _open(
        source: PodLogSource,
        pod: Pod,
        container: str,
        tail: int | None,
        follow: bool,
        previous: bool,
    ) -> Iterator[str]:
        try:
            return source(pod, container, tail, follow, previous)
        except LookupError as exc:
            raise HttpError(400, str(exc)) from exc
        except (RuntimeError, OSError) as exc:
            raise HttpError(503, f"cannot read the log of pod {pod.name}: {exc}") from exc

    async def _next(self, stream: Iterator[str]) -> str | None:
        def step() -> str | None:
            try:
                return next(stream)
            except StopIteration:
                return None
            except LookupError as exc:
                raise HttpError(400, str(exc)) from exc
            except (RuntimeError, OSError) as exc:
                raise HttpError(503, f"the log stream failed: {exc}") from exc

        return await anyio.to_thread.run_sync(step, limiter=self._limiter, abandon_on_cancel=True)

    async def _body(
        self, stream: Iterator[str], first: str | None, limit: int | None
    ) -> AsyncIterator[bytes]:
        # Bytes, as Kubernetes counts limitBytes; a cut inside a character is dropped.
        left = limit
        encoder = codecs.getincrementalencoder("utf-8")()
        try:
            text = first
            while text is not None:
                data = encoder.encode(text)
                if left is not None:
                    data, left = data[:left], left - len(data[:left])
                if data:
                    yield data
                if left == 0:
                    return
                try:
                    text = await self._next(stream)
                except HttpError:
                    # Headers are out: the stream just ends, as a node going away does in
                    # Kubernetes.
                    return
        finally:
            # Closing the link waits for the node's end of it: off the event loop, and also
            # when the client went away (the cancelled stream must still close it).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_close, stream)


def _close(stream: Iterator[str]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()

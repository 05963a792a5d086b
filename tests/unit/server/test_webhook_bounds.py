"""``POST /hooks/git`` reads nothing of the body before the request shows a well-formed
signature header, then at most ``Limits.max_webhook_body_bytes``; only then the callback."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import pytest

from reconciler.api.server import Limits, ServerHooks
from reconciler.source.webhook import verify_webhook
from tests.unit.server.conftest import assert_status

SECRET = "webhook-secret"
WELL_FORMED = "sha256=" + "0" * 64
CAP = Limits().max_webhook_body_bytes


class Hook:
    """The webhook callback of ``capstan up``: verify, and count what it was given."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, headers: Mapping[str, str], body: bytes) -> bool:
        self.calls.append(len(body))
        return bool(verify_webhook(headers, body, secret=SECRET))


@pytest.fixture
def hook() -> Hook:
    return Hook()


@pytest.fixture
def webhook(make_client, hook):
    return make_client(token=None, hooks=ServerHooks(on_git_webhook=hook))


def head_only(client, headers: Mapping[str, str], *, length: int) -> tuple[int, bytes]:
    """Send the request line and headers announcing ``length`` body bytes, and none of them;
    the status and body of the answer. A server that waited for the body would never answer
    (the socket's timeout fails the test)."""
    url = urlsplit(str(client.base_url))
    lines = [
        "POST /hooks/git HTTP/1.1",
        f"Host: {url.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection without answering"
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_unsigned_or_malformed_is_refused_before_the_body(webhook, hook):
    status, body = head_only(webhook, {}, length=3 * 1024 * 1024)
    assert status == 401
    assert b"not signed" in body
    for headers in (
        {"X-Hub-Signature-256": "sha256=zz"},
        {"X-Hub-Signature-256": "md5=" + "0" * 64},
        {"X-Gitlab-Token": ""},
    ):
        status, body = head_only(webhook, headers, length=1000)
        assert status == 401, (headers, body)
    assert hook.calls == []


def test_an_oversized_content_length_is_refused_at_once(webhook, hook):
    status, body = head_only(webhook, {"X-Hub-Signature-256": WELL_FORMED}, length=CAP + 1)
    assert status == 413
    assert f"larger than {CAP} bytes".encode() in body
    assert hook.calls == []


def test_a_streamed_body_is_cut_at_the_cap(webhook, hook):
    def chunks() -> Iterator[bytes]:
        for _ in range(CAP // 65536 + 2):
            yield b" " * 65536

    response = webhook.post(
        "/hooks/git",
        content=chunks(),
        headers={"X-Hub-Signature-256": WELL_FORMED, "Content-Type": "application/json"},
    )
    assert_status(response, 413, "RequestEntityTooLarge")
    assert hook.calls == []


def test_a_signed_body_within_the_cap_reaches_the_callback(webhook, hook):
    body = b'{"ref": "refs/heads/main"}'
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    accepted = webhook.post(
        "/hooks/git",
        content=body,
        headers={"X-Hub-Signature-256": f"sha256={signature}", "Content-Type": "application/json"},
    )
    assert accepted.status_code == 202, accepted.text
    refused = webhook.post(
        "/hooks/git",
        content=body,
        headers={"X-Hub-Signature-256": WELL_FORMED, "Content-Type": "application/json"},
    )
    assert_status(refused, 401, "Unauthorized")
    gitlab = webhook.post(
        "/hooks/git",
        content=body,
        headers={"X-Gitlab-Token": SECRET, "Content-Type": "application/json"},
    )
    assert gitlab.status_code == 202, gitlab.text
    assert hook.calls == [len(body)] * 3

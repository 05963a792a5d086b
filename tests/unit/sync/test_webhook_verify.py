"""verify_webhook: GitHub HMAC signatures and GitLab tokens, good, bad and missing."""

from __future__ import annotations

import hashlib
import hmac

from reconciler.source.webhook import verify_webhook

SECRET = "webhook-secret"
BODY = b'{"ref":"refs/heads/main","after":"abc"}'


def _github(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_github_good_signature_is_accepted_case_insensitively() -> None:
    verdict = verify_webhook({"X-Hub-Signature-256": _github(BODY)}, BODY, secret=SECRET)
    assert verdict
    assert verdict.provider == "github"
    assert verify_webhook(
        {"x-hub-signature-256": _github(BODY).upper().replace("SHA256=", "sha256=")},
        BODY,
        secret=SECRET,
    )


def test_github_bad_signature_wrong_secret_or_tampered_body_is_refused() -> None:
    assert not verify_webhook({"X-Hub-Signature-256": _github(BODY, "other")}, BODY, secret=SECRET)
    verdict = verify_webhook({"X-Hub-Signature-256": _github(BODY)}, BODY + b" ", secret=SECRET)
    assert not verdict
    assert "does not match" in verdict.reason
    assert not verify_webhook({"X-Hub-Signature-256": "sha1=abc"}, BODY, secret=SECRET)


def test_gitlab_token() -> None:
    assert verify_webhook({"X-Gitlab-Token": SECRET}, BODY, secret=SECRET).provider == "gitlab"
    assert not verify_webhook({"X-Gitlab-Token": "nope"}, BODY, secret=SECRET)


def test_missing_signature_or_missing_secret_is_refused() -> None:
    verdict = verify_webhook({"Content-Type": "application/json"}, BODY, secret=SECRET)
    assert not verdict
    assert "not signed" in verdict.reason
    unconfigured = verify_webhook({"X-Gitlab-Token": ""}, BODY, secret="")
    assert not unconfigured
    assert "no webhook secret" in unconfigured.reason

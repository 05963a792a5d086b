"""The web UI through the real API server app (``create_app``), in process: login and the
session cookie, CSP, RBAC on pages and actions, CSRF, and what the pages read from the API."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from reconciler.api import Api
from reconciler.api.server import ApiServer, ServeOptions, ServerHooks, create_app
from reconciler.api.server._rbac import RBAC_GROUP
from reconciler.api.server._serve import prepare_state
from reconciler.diff import COMMIT_ANNOTATION, SOURCE_ANNOTATION
from reconciler.store import Store, open_store
from reconciler.sync import SyncRecord, read_sync_state, record_sync, update_sync_state
from reconciler.ui import SourceInfo, UiSources, web_ui
from reconciler.ui._views import forge_link, split_error
from schemas import (
    ClusterRoleBinding,
    Container,
    Deployment,
    DeploymentSpec,
    LabelSelector,
    Namespace,
    Node,
    ObjectMeta,
    Pod,
    PodSpec,
    PodTemplateSpec,
    RoleRef,
    Subject,
)
from tests.fixtures.tokens import mint_service_account_token

ADMIN = "ui-admin-token-0123456789abcdef"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite://{tmp_path}/state.db")
    yield opened
    opened.close()


@pytest.fixture
def api(store: Store) -> Api:
    created = Api(store)
    created.create(Namespace(metadata=ObjectMeta(name="shop")))
    return created


@pytest.fixture
def triggered() -> list[str]:
    return []


@pytest.fixture
def client(api: Api, store: Store, triggered: list[str], tmp_path: Path) -> Iterator[httpx.Client]:
    """The real server over TLS on a free loopback port (the cookie is Secure: a client
    keeps and sends it over https only)."""
    sources = UiSources(
        source=SourceInfo(repo="https://github.com/acme/shop.git", branch="main"),
        trigger=lambda: triggered.append("sync"),
    )
    app = create_app(api, store, admin_token=ADMIN, hooks=ServerHooks(ui=web_ui(sources)))
    options = ServeOptions(
        state_dir=tmp_path / "server", port=0, log_level="error", freeze_gc=False
    )
    state = prepare_state(options)
    assert state.tls is not None
    with ApiServer(app, options=options, state=state) as server:
        server.start()
        with httpx.Client(
            base_url=server.url, verify=ssl.create_default_context(cafile=str(state.tls.ca_cert))
        ) as opened:
            yield opened


def _login(client: httpx.Client, token: str) -> str:
    response = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def _viewer(api: Api) -> str:
    token = mint_service_account_token(api, "shop", "viewer")
    api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="viewer-view"),
            subjects=[Subject(kind="ServiceAccount", name="viewer", namespace="shop")],
            role_ref=RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name="view"),
        )
    )
    return token


def test_no_session_goes_to_login_and_a_bad_token_is_refused(client: httpx.Client) -> None:
    for path in ("/ui/", "/ui/nodes", "/ui/history", "/ui/apps/shop/web"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"
    refused = client.post("/ui/login", data={"token": "nope"}, follow_redirects=False)
    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert "set-cookie" not in refused.headers


def test_login_sets_a_strict_http_only_secure_cookie_and_logout_ends_it(
    client: httpx.Client,
) -> None:
    response = client.post("/ui/login", data={"token": ADMIN}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    for flag in ("httponly", "secure", "samesite=strict", "path=/ui"):
        assert flag in cookie
    assert ADMIN.lower() not in cookie
    assert ADMIN not in response.headers["location"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/").text)
    assert csrf is not None
    client.post("/ui/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_every_page_has_a_csp_without_unsafe_inline_and_no_inline_code(
    client: httpx.Client,
) -> None:
    _login(client, ADMIN)
    for path in ("/ui/login", "/ui/", "/ui/nodes", "/ui/history", "/ui/plan"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "unsafe-inline" not in csp
        assert "script-src 'self'" in csp
        assert "style-src 'self'" in csp
        assert re.search(r"<script(?![^>]*\bsrc=)", response.text) is None, path
        assert "<style" not in response.text
        assert " style=" not in response.text
    assert client.get("/ui/static/ui.js").status_code == 200


def test_overview_shows_the_sync_state_and_last_error_with_file_and_line(
    api: Api, client: httpx.Client
) -> None:
    now = datetime.now(tz=UTC)
    good = "a" * 40
    bad = "b" * 40
    record_sync(
        api,
        SyncRecord(
            id=0,
            commit=good,
            author="Ann",
            message="v1: first",
            commit_time=now,
            started_at=now,
            finished_at=now,
            outcome="Succeeded",
            trigger="commit",
        ),
    )
    record_sync(
        api,
        SyncRecord(
            id=0,
            commit=bad,
            author="Bob",
            message="broken",
            commit_time=now,
            started_at=now,
            finished_at=now,
            outcome="Failed",
            trigger="commit",
            errors=["web/deployment.yaml:6:3: spec.replicas: not a number"],
        ),
    )
    update_sync_state(
        api, live_commit=good, seen_commit=bad, last_outcome="Failed", last_attempt_commit=bad
    )
    _login(client, ADMIN)
    page = client.get("/ui/").text
    assert "https://github.com/acme/shop.git" in page
    assert "aaaaaaaaaaaa</code> v1: first" in page
    assert "by Ann" in page
    assert ">OutOfSync<" in page  # the words of capstan status
    assert "last attempt failed" in page
    assert '<code class="where">web/deployment.yaml:6:3</code>' in page
    history = client.get("/ui/history?id=2").text
    assert "web/deployment.yaml:6:3" in history
    assert "Ann" not in history  # only the record asked for


def test_viewer_sees_no_actions_and_posting_one_is_forbidden(
    api: Api, client: httpx.Client, triggered: list[str]
) -> None:
    csrf = _login(client, _viewer(api))
    page = client.get("/ui/").text
    assert "/ui/actions/" not in page
    assert "may not list nodes" in page
    for action in ("suspend", "resume", "sync", "rollback"):
        refused = client.post(
            f"/ui/actions/{action}", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False
        )
        assert refused.status_code == 403, action
        assert "cannot update resource &#34;configmaps&#34;" in refused.text or (
            "cannot create resource &#34;deployments/rollback&#34;" in refused.text
        )
    assert client.get("/ui/nodes").status_code == 403
    assert not read_sync_state(api).suspended
    assert triggered == []


def test_admin_actions_ask_first_then_act(
    api: Api, client: httpx.Client, triggered: list[str]
) -> None:
    csrf = _login(client, ADMIN)
    asked = client.post("/ui/actions/suspend", data={"csrf": csrf}, follow_redirects=False)
    assert asked.status_code == 200
    assert "Yes, suspend the git sync" in asked.text
    assert not read_sync_state(api).suspended
    done = client.post(
        "/ui/actions/suspend", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert read_sync_state(api).suspended
    client.post("/ui/actions/sync", data={"csrf": csrf, "confirm": "yes"})
    assert triggered == ["sync"]


def test_a_post_without_the_session_csrf_token_is_refused(api: Api, client: httpx.Client) -> None:
    _login(client, ADMIN)
    refused = client.post(
        "/ui/actions/suspend", data={"confirm": "yes", "csrf": "forged"}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert not read_sync_state(api).suspended


def test_errors_split_into_file_line_and_forge_links() -> None:
    assert split_error("web/d.yaml:6:3: bad") == {"where": "web/d.yaml:6:3", "text": "bad"}
    assert split_error("no location here")["where"] is None
    assert (
        forge_link("https://github.com/acme/shop.git", "abc", "web/d.yaml", 6)
        == "https://github.com/acme/shop/blob/abc/web/d.yaml#L6"
    )
    assert (
        forge_link("git@gitlab.com:acme/shop.git", "abc", "d.yaml", None)
        == "https://gitlab.com/acme/shop/-/blob/abc/d.yaml"
    )
    assert forge_link("/srv/repo", "abc", "d.yaml", 1) is None


def test_app_page_links_the_manifest_line_on_the_forge(api: Api, client: httpx.Client) -> None:
    labels = {"app": "web"}
    api.create(
        Deployment(
            metadata=ObjectMeta(
                name="web",
                namespace="shop",
                annotations={
                    SOURCE_ANNOTATION: "web/deployment.yaml:3:1",
                    COMMIT_ANNOTATION: "c" * 40,
                },
            ),
            spec=DeploymentSpec(
                replicas=2,
                selector=LabelSelector(match_labels=labels),
                template=PodTemplateSpec(
                    metadata=ObjectMeta(labels=labels),
                    spec=PodSpec(containers=[Container(name="a", image="busybox")]),
                ),
            ),
        )
    )
    _login(client, ADMIN)
    page = client.get("/ui/apps/shop/web")
    assert page.status_code == 200
    link = "https://github.com/acme/shop/blob/" + "c" * 40 + "/web/deployment.yaml#L3"
    assert f'href="{link}"' in page.text
    assert ">web/deployment.yaml:3:1</a>" in page.text
    assert client.get("/ui/apps/shop/nope").status_code == 404


def test_an_oversized_form_is_refused_with_413(api: Api, client: httpx.Client) -> None:
    big = {"token": "x" * 20_000}
    assert client.post("/ui/login", data=big, follow_redirects=False).status_code == 413
    csrf = _login(client, ADMIN)
    refused = client.post(
        "/ui/actions/suspend", data={"csrf": csrf, "confirm": "yes", "pad": "x" * 20_000}
    )
    assert refused.status_code == 413
    assert not read_sync_state(api).suspended


def test_nodes_page_shows_requests_against_allocatable(api: Api, client: httpx.Client) -> None:
    resources = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    api.create(
        Node.model_validate(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "n1"},
                "spec": {"address": "10.0.0.1"},
                "status": {"capacity": resources, "allocatable": resources},
            }
        )
    )
    api.create(
        Pod.model_validate(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p1", "namespace": "shop"},
                "spec": {
                    "nodeName": "n1",
                    "containers": [
                        {
                            "name": "a",
                            "image": "busybox",
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                        }
                    ],
                },
            }
        )
    )
    _login(client, ADMIN)
    page = client.get("/ui/nodes").text
    assert "500m requested of 2 allocatable (25%; capacity 2)" in page
    assert "512Mi requested of 4.0Gi allocatable (12%" in page
    assert '<meter min="0" max="1" high="0.9" value="0.25"' in page
    assert ">p1 <a" in page  # the pod, with its logs link


def test_the_change_stream_sends_an_event_when_the_store_changes(
    api: Api, client: httpx.Client
) -> None:
    _login(client, ADMIN)
    with client.stream(
        "GET", "/ui/events?watch=1", headers={"Accept": "text/event-stream"}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        assert next(lines) == "event: hello"
        before = int(next(lines).removeprefix("data: "))
        update_sync_state(api, seen_commit="d" * 40)  # any write moves the revision
        for line in lines:
            if line == "event: change":
                assert int(next(lines).removeprefix("data: ")) > before
                break


def test_the_change_stream_needs_a_session(client: httpx.Client) -> None:
    refused = client.get(
        "/ui/events?watch=1", headers={"Accept": "text/event-stream"}, follow_redirects=False
    )
    assert refused.status_code == 401

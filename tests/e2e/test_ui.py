"""The web UI in a real headless browser (Debian's chromium driven by Playwright) against a
live ``capstan up --listen``: log in, watch the overview follow pushes without a reload, read
a failed commit's file:line, roll back from the UI, and a viewer token that may not act.

Screenshots of every page go to a temporary directory (``$CAPSTAN_UI_SHOTS`` to choose it),
printed at the end; they are artifacts to look at, not committed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from reconciler.api.server._rbac import RBAC_GROUP
from reconciler.client import load_config
from schemas import ClusterRoleBinding, ObjectMeta, RoleRef, Subject
from tests.e2e.conftest import CapstanUp, started_up
from tests.e2e.test_gitops_loop import NODE, SERVICE, deployment, version_files
from tests.fixtures.browser_netns import isolated_chromium
from tests.fixtures.tokens import mint_service_account_token
from tests.fixtures.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLOW = 90_000  # ms: pods pulling and probing on a shared 2-core machine


@pytest.fixture(scope="module")
def up(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CapstanUp]:
    files = {"node.yaml": NODE, "service.yaml": SERVICE, **version_files("v1")}
    with started_up(
        docker_client, tmp_path_factory, "ui", files, "--listen", "127.0.0.1:0"
    ) as capstan:
        wait_until(
            lambda: (capstan.state_dir / "config").exists(), timeout=30, what="the client config"
        )
        yield capstan


@pytest.fixture(scope="module")
def browser(up: CapstanUp) -> Iterator[Browser]:
    """Chromium in a network namespace of its own (Docker's veths would abort its requests)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/setup"
    port = urlsplit(_server(up)).port
    assert port is not None
    with isolated_chromium(CHROMIUM, port) as launcher, sync_playwright() as playwright:
        yield _launch(playwright, launcher)


def _launch(playwright: Playwright, executable: Path) -> Browser:
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def shots() -> Path:
    chosen = os.environ.get("CAPSTAN_UI_SHOTS")
    path = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="capstan-ui-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots in {path}")
    return path


def _server(up: CapstanUp) -> str:
    return load_config(up.state_dir / "config").server


def _admin_token(up: CapstanUp) -> str:
    return (up.state_dir / "admin-token").read_text().strip()


def _login(browser: Browser, up: CapstanUp, token: str, *, width: int = 1280) -> Page:
    context = browser.new_context(
        ignore_https_errors=True, viewport={"width": width, "height": 900}
    )
    page = context.new_page()
    base = _server(up)
    response = page.goto(f"{base}/ui/")
    assert response is not None
    assert page.url == f"{base}/ui/login"  # no session: sent to log in
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/ui/")
    return page


def _pods_ready(up: CapstanUp, count: int = 2) -> bool:
    return len(up.ready_pods()) == count and len(up.pods()) == count


def test_admin_watches_pushes_reads_a_failure_and_rolls_back(
    up: CapstanUp, browser: Browser, shots: Path
) -> None:
    page = _login(browser, up, _admin_token(up))
    base = _server(up)
    cookie = next(c for c in page.context.cookies() if c["name"] == "capstan_session")
    assert cookie["httpOnly"]
    assert cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    assert _admin_token(up) not in page.url

    # The example app comes up healthy: the page follows without being reloaded.
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    web = page.get_by_role("row").filter(has_text="default/web")
    expect(web).to_contain_text("Healthy", timeout=SLOW)
    expect(page.get_by_test_id("ready-web")).to_have_text("2/2", timeout=SLOW)
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # A push: the live commit on the page changes, still without a reload, and keyboard
    # focus stays on the control that had it.
    page.get_by_role("button", name="Sync now").focus()
    v2 = up.repo.commit("v2: new page", version_files("v2"))
    expect(page.get_by_test_id("live-commit")).to_contain_text(v2[:12], timeout=SLOW)
    assert page.evaluate("document.activeElement.textContent") == "Sync now"
    expect(page.get_by_test_id("live-commit")).to_contain_text("v2: new page")
    expect(page.get_by_test_id("sync-state")).to_have_text("Synced", timeout=SLOW)
    assert navigations == [], f"the overview reloaded: {navigations}"
    wait_until(lambda: _pods_ready(up), timeout=SLOW / 1000, what="v2 pods ready")

    # A bad commit: the overview shows it failed, its page names the file and line.
    bad = deployment("v3").replace("replicas: 2", "replicas: two")
    up.repo.commit("broken", {"web/deployment.yaml": bad})
    expect(page.get_by_test_id("last-attempt")).to_be_visible(timeout=SLOW)
    expect(page.get_by_test_id("sync-state")).to_have_text("OutOfSync")
    expect(page.locator(".error-card")).to_contain_text("web/deployment.yaml:6:3")
    page.get_by_role("link", name="details").click()
    expect(page.locator("h1")).to_have_text("Sync history")
    expect(page.locator(".where").first).to_have_text("web/deployment.yaml:6:3")
    expect(page.locator("main")).to_contain_text("broken")
    page.screenshot(path=str(shots / "failed-commit.png"), full_page=True)

    # The other pages, as read-only views.
    page.goto(f"{base}/ui/history")
    page.screenshot(path=str(shots / "history.png"), full_page=True)
    v2_sync = page.locator("section").filter(has_text="v2: new page")
    v2_sync.get_by_role("link", name=re.compile("^Diff from")).click()  # the diff it applied
    expect(page.locator("pre.plan")).to_contain_text("ConfigMap default/page-v2", timeout=SLOW)
    page.screenshot(path=str(shots / "sync-diff.png"), full_page=True)
    page.goto(f"{base}/ui/apps/default/web")
    expect(page.locator("summary").first).to_contain_text("revision")
    expect(page.locator("main")).to_contain_text("web/deployment.yaml")
    expect(page.locator("main")).to_contain_text("NodePort")
    page.screenshot(path=str(shots / "app.png"), full_page=True)
    page.get_by_role("link", name="logs of").first.click()  # fetched from the node's agent
    expect(page.locator("h1")).to_contain_text("Logs of default/web-", timeout=SLOW)
    expect(page.locator("#log")).to_be_visible()
    page.screenshot(path=str(shots / "logs.png"), full_page=True)
    page.goto(f"{base}/ui/nodes")
    expect(page.locator("main")).to_contain_text("local")
    page.screenshot(path=str(shots / "nodes.png"), full_page=True)
    page.goto(f"{base}/ui/plan")
    page.get_by_label("Branch, tag or commit to plan").fill(v2)
    page.get_by_role("button", name="Plan").click()
    expect(page.locator("pre.plan")).to_be_visible(timeout=SLOW)
    page.screenshot(path=str(shots / "plan.png"), full_page=True)

    # Roll back from the UI: its plan first, then the revert lands in Git.
    head = up.repo.head()
    page.goto(f"{base}/ui/")
    page.get_by_role("button", name="Roll back…").click()
    expect(page.locator("h1")).to_contain_text("Roll back to", timeout=SLOW)
    expect(page.locator("pre.plan")).to_be_visible()
    assert up.repo.head() == head  # nothing committed before the confirmation
    page.screenshot(path=str(shots / "rollback-plan.png"), full_page=True)
    page.get_by_role("button", name="Commit the revert").click()
    expect(page.get_by_role("status")).to_contain_text("Committed revert", timeout=SLOW)
    revert = up.repo.head()
    assert revert != head
    assert up.repo.git("log", "-1", "--format=%s").startswith("Roll back to ")
    assert up.repo.git("rev-parse", "HEAD~1") == head
    page.goto(f"{base}/ui/")
    expect(page.get_by_test_id("live-commit")).to_contain_text(revert[:12], timeout=SLOW)


def test_phone_width_and_keyboard(up: CapstanUp, browser: Browser, shots: Path) -> None:
    page = _login(browser, up, _admin_token(up), width=390)
    expect(page.locator("h1")).to_have_text("Overview")
    page.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert fits, "the overview scrolls sideways at phone width"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Overview"
    # Health is a word and a symbol, not only a color.
    expect(page.locator(".badge").first).not_to_have_text("")


def test_viewer_sees_no_actions_and_is_refused(
    up: CapstanUp, browser: Browser, shots: Path
) -> None:
    wait_until(lambda: up.pods(), timeout=SLOW / 1000, what="the default namespace in use")
    token = mint_service_account_token(up.api, "default", "ui-viewer")
    up.api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="ui-viewer-view"),
            subjects=[Subject(kind="ServiceAccount", name="ui-viewer", namespace="default")],
            role_ref=RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name="view"),
        )
    )
    page = _login(browser, up, token)
    expect(page.get_by_role("row").filter(has_text="default/web")).to_be_visible(timeout=SLOW)
    expect(page.get_by_test_id("actions")).to_have_count(0)
    expect(page.get_by_role("button", name="Suspend sync")).to_have_count(0)
    page.screenshot(path=str(shots / "overview-viewer.png"), full_page=True)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    base = _server(up)
    for action in ("suspend", "sync", "rollback"):
        refused = page.request.post(
            f"{base}/ui/actions/{action}", form={"csrf": csrf, "confirm": "yes"}, max_redirects=0
        )
        assert refused.status == 403, (action, refused.status, refused.text())
        assert "cannot" in refused.text()
    assert up.status()["sync"]["state"] != "Suspended"

"""The server as ``capstan up`` runs it: TLS from the generated CA, the admin token file, the
client config, the typed client and its errors, and watch streaming over a real socket."""

from __future__ import annotations

import base64
import ssl
import stat
import threading

import httpx
import pytest

from reconciler.api import (
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    AlreadyExists,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    generate_token,
)
from reconciler.api.server import ServeOptions, prepare_state
from reconciler.client import (
    Client,
    ClientConfig,
    ConfigError,
    Unauthorized,
    load_config,
    write_config,
)
from schemas import ConfigMap, ObjectMeta, Secret, ServiceAccount
from tests.integration.server.conftest import write_client_config


def cm(name: str, **labels: str) -> ConfigMap:
    return ConfigMap(
        metadata=ObjectMeta(name=name, namespace="shop", labels=labels), data={"k": name}
    )


def test_tls_with_the_generated_ca(live, tmp_path):
    assert live.url.startswith("https://127.0.0.1:")
    tls = live.state.tls
    assert tls is not None
    for secret_file in (tls.ca_key, tls.server_key, live.state.admin_token_file):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    with httpx.Client(verify=context) as trusting:
        assert trusting.get(f"{live.url}/healthz").text == "ok"
        response = trusting.get(
            f"{live.url}/api/v1/namespaces/shop/pods",
            headers={"Authorization": f"Bearer {live.state.admin_token}"},
        )
        assert response.status_code == 200
    with httpx.Client() as system_trust, pytest.raises(httpx.ConnectError):
        system_trust.get(f"{live.url}/healthz")
    # A second start finds and reuses the same CA and token.
    again = prepare_state(ServeOptions(state_dir=tmp_path / "state"))
    assert again.admin_token == live.state.admin_token
    assert again.tls is not None
    assert again.tls.ca_cert.read_bytes() == tls.ca_cert.read_bytes()


def test_plain_http_only_on_loopback_and_only_when_asked(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        prepare_state(ServeOptions(state_dir=tmp_path, host="0.0.0.0", insecure_http=True))
    state = prepare_state(ServeOptions(state_dir=tmp_path, insecure_http=True))
    assert state.tls is None


def test_client_config_round_trip(tmp_path, live):
    config = load_config(tmp_path / "config")
    assert config.server == live.url
    assert config.bearer_token() == live.state.admin_token
    assert stat.S_IMODE((tmp_path / "config").stat().st_mode) == 0o600
    inline = ClientConfig(
        server="https://example.invalid:6443", token="t0k", ca_file=tmp_path / "ca.crt"
    )
    write_config(tmp_path / "other" / "config", inline, name="prod")
    assert load_config(tmp_path / "other" / "config") == inline
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "config").write_text(
        "current-context: c\nclusters: [{name: k, cluster: {server: 'https://h:1', "
        "certificate-authority: ca.pem}}]\nusers: [{name: u, user: {token-file: tok}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    relative = load_config(tmp_path / "rel" / "config")
    assert relative.ca_file == tmp_path / "rel" / "ca.pem"
    assert relative.token_file == tmp_path / "rel" / "tok"
    (tmp_path / "evil").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "evil")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing")
    # Flags override the file.
    with (
        Client.from_config(tmp_path / "config", token="wrong") as flagged,
        pytest.raises(Unauthorized),
    ):
        flagged.list(ConfigMap, namespace="shop")


def test_typed_client_and_its_errors(client, api):
    created = client.create(cm("a", app="web"))
    assert created.metadata.resource_version
    assert client.get(ConfigMap, "a", namespace="shop") == created
    assert [
        c.name
        for c in client.list(ConfigMap, namespace="shop", label_selector={"app": "web"}).items
    ] == ["a"]
    changed = client.update(created.model_copy(update={"data": {"k": "2"}}))
    assert changed.data == {"k": "2"}
    with pytest.raises(Conflict):
        client.update(created.model_copy(update={"data": {"k": "3"}}))
    with pytest.raises(AlreadyExists):
        client.create(cm("a"))
    with pytest.raises(NotFound):
        client.get(ConfigMap, "zzz", namespace="shop")
    with pytest.raises(Invalid) as invalid:
        client.request(
            "POST",
            "/api/v1/namespaces/shop/pods",
            body={
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "Bad_Name", "namespace": "shop"},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        )
    assert any(c.field == "metadata.name" for c in invalid.value.causes)
    patched = client.patch(ConfigMap, "a", {"data": {"p": "1"}}, namespace="shop")
    assert patched.data == {"k": "2", "p": "1"}
    with pytest.raises(Forbidden):
        client.request("DELETE", "/api/v1/namespaces/default")
    assert client.delete(ConfigMap, "a", namespace="shop").name == "a"
    assert client.syncs() == []
    assert client.plan("main") == {"ref": "main", "changes": []}


def test_service_account_token_over_tls(live, api, tmp_path):
    account = api.create(ServiceAccount(metadata=ObjectMeta(name="ci", namespace="shop")))
    token = generate_token()
    api.create(
        Secret(
            metadata=ObjectMeta(
                name="ci-token",
                namespace="shop",
                annotations={
                    SERVICE_ACCOUNT_NAME_ANNOTATION: "ci",
                    SERVICE_ACCOUNT_UID_ANNOTATION: account.metadata.uid or "",
                },
            ),
            type=SERVICE_ACCOUNT_TOKEN_TYPE,
            data={"token": base64.b64encode(token.encode()).decode()},
        )
    )
    with (
        Client.from_config(tmp_path / "config", token=token) as robot,
        pytest.raises(Forbidden, match='cannot list resource "configmaps"'),
    ):
        robot.list(ConfigMap, namespace="shop")


def test_watch_resumes_from_a_resource_version_with_no_gap(client, api):
    created = [api.create(cm(f"w{i}")) for i in range(6)]
    resume_at = created[2].metadata.resource_version
    seen: list[tuple[str, str, int]] = []
    with client.watch(
        ConfigMap, namespace="shop", resource_version=resume_at, timeout_s=30
    ) as stream:
        for event in stream:
            seen.append((event.type, event.object.name, event.revision))
            if len(seen) == 3:
                break
    assert [s[1] for s in seen] == ["w3", "w4", "w5"]
    assert all(s[0] == "ADDED" for s in seen)
    last = seen[-1][2]
    # Changes while nobody watches are delivered on resume, in order, once.
    fresh = api.get(ConfigMap, "w0", namespace="shop")
    api.update(fresh.model_copy(update={"data": {"k": "x"}}))
    api.delete(ConfigMap, "w1", namespace="shop")
    api.create(cm("w6"))
    resumed = []
    with client.watch(ConfigMap, namespace="shop", resource_version=last, timeout_s=30) as stream:
        for event in stream:
            resumed.append((event.type, event.object.name, event.revision))
            if len(resumed) == 3:
                break
    assert [(t, n) for t, n, _ in resumed] == [
        ("MODIFIED", "w0"),
        ("DELETED", "w1"),
        ("ADDED", "w6"),
    ]
    revisions = [r for _, _, r in resumed]
    assert revisions == sorted(revisions)
    assert revisions[0] > last


def test_watch_streams_live_events_and_filters_by_label(client, api):
    api.create(cm("before", app="web"))
    got = []
    with client.watch(
        ConfigMap, namespace="shop", label_selector="app=web", timeout_s=30
    ) as stream:

        def write() -> None:
            api.create(cm("other", app="db"))
            api.create(cm("after", app="web"))

        writer = threading.Thread(target=write)
        for event in stream:
            got.append((event.type, event.object.name))
            if len(got) == 1:
                writer.start()
            if len(got) == 2:
                break
        writer.join()
    # Without resourceVersion the current objects come first, as ADDED.
    assert got == [("ADDED", "before"), ("ADDED", "after")]


def test_watch_from_a_compacted_revision_says_expired(client, api, store):
    for i in range(3):
        api.create(cm(f"n{i}"))
    store.compact(api.current_revision())
    # Revision 1 predates the server's watch cache, so the store must answer, and it no
    # longer has that history.
    with (
        client.watch(ConfigMap, namespace="shop", resource_version=1, timeout_s=30) as stream,
        pytest.raises(Expired),
    ):
        next(stream)


def test_watch_older_than_the_cache_is_served_by_the_store(api, store, tmp_path):
    from reconciler.api.server import serve

    early = [api.create(cm(f"early{i}")) for i in range(3)]
    server = serve(
        api,
        store,
        options=ServeOptions(
            state_dir=tmp_path / "state",
            port=0,
            log_level="error",
        ),
    )
    write_client_config(server, tmp_path / "config")
    try:
        with (
            Client.from_config(tmp_path / "config") as client,
            client.watch(
                ConfigMap,
                namespace="shop",
                resource_version=early[0].metadata.resource_version,
                timeout_s=30,
            ) as stream,
        ):
            api.create(cm("late"))
            names = [next(stream).object.name for _ in range(3)]
        assert names == ["early1", "early2", "late"]
    finally:
        server.stop()


def test_watch_times_out_by_itself(client):
    with client.watch(ConfigMap, namespace="shop", resource_version=1, timeout_s=1) as stream:
        assert list(stream) == []


def test_the_users_own_certificate(api, store, tmp_path):
    from reconciler.api.server import ensure_tls, serve

    own = ensure_tls(tmp_path / "own", hosts=["capstan.example"])
    server = serve(
        api,
        store,
        options=ServeOptions(
            state_dir=tmp_path / "state",
            port=0,
            tls_cert=own.server_cert,
            tls_key=own.server_key,
            tls_ca=own.ca_cert,
            log_level="error",
        ),
    )
    write_client_config(server, tmp_path / "config")
    try:
        assert not (tmp_path / "state" / "pki").exists()
        with Client.from_config(tmp_path / "config") as client:
            assert client.list(ConfigMap, namespace="shop").items == ()
    finally:
        server.stop()
    with pytest.raises(ValueError, match="both"):
        prepare_state(ServeOptions(state_dir=tmp_path / "x", tls_cert=own.server_cert))

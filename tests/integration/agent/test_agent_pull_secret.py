"""imagePullSecrets on a real Docker Engine: the agent logs in to a private registry with the
credentials of a kubernetes.io/dockerconfigjson Secret.

The registry is a minimal Docker Registry v2 (Basic auth) served by the test on 127.0.0.1
(an insecure registry Docker allows by default), holding the busybox image the tests use."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docker
import pytest
from agent_harness import BUSYBOX, make_pod, pull_secret, ready

CREDENTIALS = base64.b64encode(b"puller:s3cret").decode()
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def image_blobs(client: docker.DockerClient) -> dict[str, tuple[str, bytes]]:
    """The busybox image as registry blobs: path suffix → (content type, bytes)."""
    saved = b"".join(client.images.get(BUSYBOX).save())
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        (entry,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = archive.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [archive.extractfile(name).read() for name in entry["Layers"]]  # type: ignore[union-attr]

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": digest(layer),
                }
                for layer in layers
            ],
        }
    ).encode()
    blobs = {
        f"blobs/{digest(data)}": ("application/octet-stream", data) for data in (config, *layers)
    }
    blobs["manifests/1"] = (MANIFEST_TYPE, manifest)
    blobs[f"manifests/{digest(manifest)}"] = (MANIFEST_TYPE, manifest)
    return blobs


@pytest.fixture
def registry(docker_client: docker.DockerClient) -> Iterator[str]:
    blobs = image_blobs(docker_client)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def answer(self, *, body: bool) -> None:
            if self.headers.get("Authorization") != f"Basic {CREDENTIALS}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="capstan-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/v2/":
                content_type, data = "application/json", b"{}"
            else:
                suffix = self.path.split("/private/busybox/", 1)[-1]
                if suffix not in blobs:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content_type, data = blobs[suffix]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(data).hexdigest())
            self.end_headers()
            if body:
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    image = f"127.0.0.1:{server.server_address[1]}/private/busybox:1"
    yield image
    server.shutdown()
    server.server_close()
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(image, force=True)


def test_a_private_image_is_pulled_with_the_pods_pull_secret(agent, registry: str):
    host = registry.split("/", 1)[0]
    secret = pull_secret(host, CREDENTIALS)
    container = {"name": "main", "image": registry, "command": ["sleep", "3600"]}
    without = make_pod("anonymous", [dict(container)])
    with_secret = make_pod("private", [dict(container)], imagePullSecrets=[{"name": "regcred"}])
    client = agent.client()
    client.sync([without], 1, secrets=[secret])

    def pull_refused(statuses):
        state = ((statuses.get("anonymous") or {}).get("containerStatuses") or [{}])[0]
        reason = (state.get("state") or {}).get("waiting", {}).get("reason")
        return reason in ("ErrImagePull", "ImagePullBackOff")

    client.wait_pods(pull_refused, what="the anonymous pull refused by the registry")
    client.sync([without, with_secret], 2, secrets=[secret])
    client.wait_pods(lambda s: ready(s.get("private")), what="the private image pulled and run")
    client.sync([], 3)

"""Secret values sealed at rest, on both real backends (SQLite file, real etcd).

Through the API (wrapped store) a Secret reads back as written — get, list, watch — while the
raw SQLite file with its WAL, the raw etcd keys and etcd's data directory hold no planted
value; a data-key rotation keeps old values readable and seals new writes with the new key.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reconciler.api import Api, DataKeysMismatch, check_data_keys, seal_secrets
from reconciler.store import Op, Store
from schemas import ConfigMap, ObjectMeta, Secret
from schemas.datakeys import SEALED_PREFIX, DataKeyError, DataKeys
from tests.integration.store.etcd_server import EtcdServer

PLANTED = "planted-Zq8vX3-value"
KEY = "/registry/secrets/default/db"


def _secret(value: str) -> Secret:
    return Secret(
        metadata=ObjectMeta(name="db", namespace="default"), string_data={"password": value}
    )


def _raw_bytes(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> bytes:
    if backend == "embedded":
        files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        files = [p for p in server._dir.rglob("*") if p.is_file() and p.suffix != ".log"]
    return b"".join(p.read_bytes() for p in files)


def test_secret_values_are_sealed_in_the_store_and_open_through_the_api(
    store: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    key_file = tmp_path / "keys" / "data-keys"
    keys = DataKeys.load_or_create(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    api = Api(seal_secrets(store, keys))
    watch = api.watch(Secret, namespace="default")
    created = api.create(_secret(PLANTED))
    api.create(
        ConfigMap(
            metadata=ObjectMeta(name="plain", namespace="default"), data={"note": "not sealed"}
        )
    )
    assert api.get(Secret, "db", namespace="default").decoded()["password"] == PLANTED.encode()
    assert [s.decoded()["password"] for s in api.list(Secret, namespace="default").items] == [
        PLANTED.encode()
    ]
    event = next(iter(watch))
    assert event.object.decoded()["password"] == PLANTED.encode()
    watch.close()

    raw = store.get(KEY)
    assert raw is not None
    assert raw.value.startswith(SEALED_PREFIX + b"key1:")
    assert PLANTED.encode() not in raw.value
    plain = store.get("/registry/configmaps/default/plain")
    assert plain is not None
    assert b"not sealed" in plain.value

    # Rotation: the new key seals new writes, the old one still opens old values.
    rotated = DataKeys.rotate(key_file)
    api2 = Api(seal_secrets(store, rotated))
    assert api2.get(Secret, "db", namespace="default").decoded()["password"] == PLANTED.encode()
    changed = created.model_copy(update={"string_data": {"password": PLANTED + "-2"}})
    api2.update(changed)
    raw = store.get(KEY)
    assert raw is not None
    assert raw.value.startswith(SEALED_PREFIX + b"key2:")
    assert (
        api2.get(Secret, "db", namespace="default").decoded()["password"]
        == (PLANTED + "-2").encode()
    )
    # A sealed value moved to another key does not open (the key is authenticated data).
    store.txn([], [Op.put("/registry/secrets/default/copy", raw.value)])
    with pytest.raises(DataKeyError):
        api2.get(Secret, "copy", namespace="default")
    store.delete("/registry/secrets/default/copy")
    api2.delete(Secret, "db", namespace="default")

    assert PLANTED.encode() not in _raw_bytes(backend, tmp_path, request)


def test_a_loose_data_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "data-keys"
    DataKeys.load_or_create(key_file)
    key_file.chmod(0o644)
    with pytest.raises(DataKeyError, match="0644 are too open"):
        DataKeys.load(key_file)


def test_a_replica_with_keys_of_its_own_is_told_to_copy_the_others(
    store: Store, tmp_path: Path
) -> None:
    # Two replicas on one store: the first sealed a Secret; the second's state directory
    # made a fresh key instead of receiving a copy. It must stop at start-up, saying so.
    first = DataKeys.load_or_create(tmp_path / "a" / "data-keys")
    Api(seal_secrets(store, first)).create(_secret(PLANTED))
    own = tmp_path / "b" / "data-keys"
    with pytest.raises(DataKeysMismatch, match=r"Copy its data-keys file") as caught:
        check_data_keys(seal_secrets(store, DataKeys.load_or_create(own)), keys_file=str(own))
    assert PLANTED not in str(caught.value)
    check_data_keys(seal_secrets(store, first), keys_file="a")  # the right keys pass

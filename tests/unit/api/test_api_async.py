"""AsyncApi: the same operations from an event loop, and an async watch."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.api import Api, AsyncApi, Conflict
from schemas import ConfigMap, ObjectMeta


def test_async_api_round_trip_and_async_watch(api: Api) -> None:
    async def scenario() -> list[tuple[str, str]]:
        aapi = AsyncApi(api)
        created = await aapi.create(ConfigMap(metadata=ObjectMeta(name="a")))
        updated = await aapi.update(created.model_copy(update={"data": {"k": "v"}}))
        with pytest.raises(Conflict):
            await aapi.update(created)
        assert (await aapi.get(ConfigMap, "a")).data == {"k": "v"}
        assert [c.name for c in (await aapi.list(ConfigMap)).items] == ["a"]
        await aapi.delete(ConfigMap, "a")
        seen: list[tuple[str, str]] = []
        stream = aapi.watch(ConfigMap, from_revision=created.metadata.resource_version)
        try:
            async for event in stream:
                seen.append((event.type, event.object.name))
                if event.type == "DELETED":
                    break
        finally:
            stream.close()
        assert updated.metadata.generation == 2
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [("MODIFIED", "a"), ("DELETED", "a")]

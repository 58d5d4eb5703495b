"""The flow versions kept (bot.storage.ops_flows, schema 15) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from bot.storage import Store

AT = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


async def test_versions_are_numbered_and_keep_their_texts(store: Store) -> None:
    assert await store.latest_flow_version() is None
    assert await store.flow_versions() == []
    v1 = await store.add_flow_version("h1", {"main.yaml": "flows: {}\n", "sub/x.yml": "intents: {}\n"},
                                      loaded_by="startup", at=AT)
    assert v1.number == 1
    v2 = await store.add_flow_version("h2", {"main.yaml": "flows: {a: 1}\n"}, loaded_by="Ann Admin", at=AT,
                                      note="reload")
    assert v2.number == 2
    latest = await store.latest_flow_version()
    assert latest is not None and latest.number == 2 and latest.files == {"main.yaml": "flows: {a: 1}\n"}
    assert latest.loaded_by == "Ann Admin" and latest.note == "reload" and latest.loaded_at == AT
    old = await store.flow_version(1)
    assert old is not None and old.hash == "h1" and old.files["sub/x.yml"] == "intents: {}\n"
    assert await store.flow_version(7) is None
    listed = await store.flow_versions()
    assert [v.number for v in listed] == [2, 1] and all(v.files == {} for v in listed)
    assert [v.number for v in await store.flow_versions(limit=1)] == [2]
    # the same hash as the current one: that one (same files, e.g. a second instance starting)
    same = await store.add_flow_version("h2", {"main.yaml": "flows: {a: 1}\n"}, loaded_by="other", at=AT)
    assert same.number == 2 and same.loaded_by == "Ann Admin"
    # a hash seen before but not the current one (a rollback): a new number
    assert (await store.add_flow_version("h1", {"main.yaml": "flows: {}\n"}, loaded_by="x", at=AT)).number == 3
    assert listed[0].to_dict()["loaded_at"] == AT.isoformat()


async def test_concurrent_versions_get_distinct_numbers(store: Store) -> None:
    made = await asyncio.gather(*[store.add_flow_version(f"h{i}", {"f.yaml": str(i)}, loaded_by="x", at=AT)
                                  for i in range(5)])
    assert sorted(v.number for v in made) == [1, 2, 3, 4, 5]

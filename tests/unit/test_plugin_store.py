"""Plugin storage SQL on SQLite and PostgreSQL: key/value round trips, archives, quotas, deletion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from unirtc.directory import migrate, plugin_store, store
from unirtc.directory.engine import make_engine
from unirtc.directory.plugin_store import StorageError

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "pw")
    yield engine
    engine.dispose()


def run(engine, operation, *args):
    with store.transaction(engine) as session:
        return operation(session, *args)


def test_keyValueRoundTrip(engine) -> None:
    """
    If JSON values are set, get returns them intact (unicode, nesting, numbers), set again
    replaces, None deletes, and stores and owners do not see each other's keys.
    """
    value = {"name": "Rolànd ☃", "groups": ["Friends"], "n": 2**40, "ok": True, "none": None}
    run(engine, plugin_store.kv_set, "roster", "joe@falcot.com", "roland@falcot.com", value)
    run(engine, plugin_store.kv_set, "roster", "joe@falcot.com", "ann@falcot.com", [1, 2])
    run(engine, plugin_store.kv_set, "vcard", "joe@falcot.com", "roland@falcot.com", "other store")
    assert run(engine, plugin_store.kv_get, "roster", "joe@falcot.com", "roland@falcot.com") == value
    run(engine, plugin_store.kv_set, "roster", "joe@falcot.com", "roland@falcot.com", "replaced")
    assert run(engine, plugin_store.kv_get, "roster", "joe@falcot.com", "roland@falcot.com") == "replaced"
    assert run(engine, plugin_store.kv_keys, "roster", "joe@falcot.com") == ["ann@falcot.com", "roland@falcot.com"]
    assert run(engine, plugin_store.kv_items, "roster", "joe@falcot.com") == {
        "ann@falcot.com": [1, 2], "roland@falcot.com": "replaced"}
    assert run(engine, plugin_store.kv_keys, "roster", "roland@falcot.com") == []
    run(engine, plugin_store.kv_set, "roster", "joe@falcot.com", "ann@falcot.com", None)
    assert run(engine, plugin_store.kv_get, "roster", "joe@falcot.com", "ann@falcot.com") is None
    assert run(engine, plugin_store.kv_clear, "roster", "joe@falcot.com") == 1
    assert run(engine, plugin_store.kv_get, "vcard", "joe@falcot.com", "roland@falcot.com") == "other store"


def test_badNamesAndValues(engine) -> None:
    """
    If a store name, owner or key is empty or too long, or a value is not JSON, StorageError is
    raised and nothing is stored.
    """
    for args in [("", "o", "k", 1), ("s", "", "k", 1), ("s", "o", "", 1), ("s", "o" * 2048, "k", 1),
                 ("s", "o", "k" * 1024, 1), ("s", "o", "k", {1, 2}), ("s", "o", "k", float("nan"))]:
        with pytest.raises(StorageError):
            run(engine, plugin_store.kv_set, *args)
    with pytest.raises(StorageError):
        run(engine, plugin_store.archive_append, "s", "o", object())
    assert run(engine, plugin_store.kv_items, "s", "o") == {}


def test_archiveAppendQueryAndPaging(engine) -> None:
    """
    If entries are appended, query returns them oldest first with ids, aware UTC times and the
    'with' JID; filters by with/start/end/after/before work and reverse takes the newest page.
    """
    ids = [run(engine, plugin_store.archive_append, "mam", "joe@falcot.com", {"n": n},
               "roland@falcot.com" if n % 2 else "ann@falcot.com", T0 + timedelta(minutes=n))
           for n in range(6)]
    assert ids == sorted(ids) and len(set(ids)) == 6
    items = run(engine, plugin_store.archive_query, "mam", "joe@falcot.com")
    assert [i.value["n"] for i in items] == [0, 1, 2, 3, 4, 5]
    assert items[1].when == T0 + timedelta(minutes=1) and items[1].when.tzinfo is not None
    assert items[1].with_ == "roland@falcot.com" and items[1].owner == "joe@falcot.com"

    def values(**kwargs):
        return [i.value["n"] for i in run(engine, plugin_store.archive_query, "mam", "joe@falcot.com",
                                          kwargs.get("with_"), kwargs.get("start"), kwargs.get("end"),
                                          kwargs.get("after_id"), kwargs.get("before_id"),
                                          kwargs.get("limit", 100), kwargs.get("reverse", False))]

    assert values(with_="roland@falcot.com") == [1, 3, 5]
    assert values(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4)) == [2, 3, 4]
    assert values(after_id=ids[3]) == [4, 5]
    assert values(before_id=ids[2]) == [0, 1]
    assert values(limit=2) == [0, 1]
    assert values(limit=2, reverse=True) == [4, 5]
    assert values(limit=2, reverse=True, before_id=ids[4]) == [2, 3]
    assert run(engine, plugin_store.archive_count, "mam", "joe@falcot.com") == 6
    assert run(engine, plugin_store.archive_count, "mam", "joe@falcot.com", "ann@falcot.com") == 3
    assert run(engine, plugin_store.archive_query, "offline", "joe@falcot.com") == []


def test_archiveQuotaDeleteAndTrim(engine) -> None:
    """
    If an owner has max_items entries, append stores nothing and returns None; delete removes
    only the given ids of that owner; trim keeps the newest entries.
    """
    ids = [run(engine, plugin_store.archive_append, "offline", "joe@falcot.com", n, None, None, 3)
           for n in range(4)]
    assert ids[3] is None and None not in ids[:3]
    other = run(engine, plugin_store.archive_append, "offline", "ann@falcot.com", "x")
    assert run(engine, plugin_store.archive_delete, "offline", "joe@falcot.com", [ids[0], other]) == 1
    assert run(engine, plugin_store.archive_delete, "offline", "joe@falcot.com", []) == 0
    assert [i.value for i in run(engine, plugin_store.archive_query, "offline", "joe@falcot.com")] == [1, 2]
    for n in range(3, 8):
        run(engine, plugin_store.archive_append, "offline", "joe@falcot.com", n)
    assert run(engine, plugin_store.archive_trim, "offline", "joe@falcot.com", 3) == 4
    assert [i.value for i in run(engine, plugin_store.archive_query, "offline", "joe@falcot.com")] == [5, 6, 7]
    assert run(engine, plugin_store.archive_trim, "offline", "joe@falcot.com", 10) == 0
    assert run(engine, plugin_store.archive_delete, "offline", "joe@falcot.com") == 3
    assert run(engine, plugin_store.archive_count, "offline", "ann@falcot.com") == 1


def test_deleteAccountDeletesItsPluginData(engine) -> None:
    """
    If an account is deleted, every value and archive entry it owns goes, in every store;
    data owned by others (a room, another user) stays.
    """
    run(engine, plugin_store.kv_set, "roster", "joe@falcot.com", "roster", {"items": {}})
    run(engine, plugin_store.kv_set, "vcard", "joe@falcot.com", "vcard", "<vCard/>")
    run(engine, plugin_store.archive_append, "offline", "joe@falcot.com", "msg")
    run(engine, plugin_store.kv_set, "muc", "room@conference.falcot.com", "config", {"owner": "joe@falcot.com"})
    run(engine, plugin_store.archive_append, "offline", "ann@falcot.com", "msg")
    run(engine, store.delete_account, "joe", "falcot.com")
    assert run(engine, plugin_store.kv_keys, "roster", "joe@falcot.com") == []
    assert run(engine, plugin_store.kv_keys, "vcard", "joe@falcot.com") == []
    assert run(engine, plugin_store.archive_count, "offline", "joe@falcot.com") == 0
    assert run(engine, plugin_store.kv_get, "muc", "room@conference.falcot.com", "config") is not None
    assert run(engine, plugin_store.archive_count, "offline", "ann@falcot.com") == 1

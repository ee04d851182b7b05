"""The SIP binding SQL on SQLite and PostgreSQL: replace, list, load, expiry, cascade."""

from __future__ import annotations

import pytest

from unirtc.directory import migrate, store
from unirtc.directory.bindings_store import (
    BindingRecord,
    delete_expired,
    list_bindings,
    load_bindings,
    replace_bindings,
    replace_many,
)
from unirtc.directory.engine import make_engine

NOW = 1_800_000_000.0


def record(contact: str, expires_at: float, localpart: str = "joe", **kwargs) -> BindingRecord:
    fields = dict(q=1.0, call_id="c@h", cseq=1)
    fields.update(kwargs)
    return BindingRecord(localpart, "falcot.com", contact, expires_at, **fields)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "pw")
        store.create_account(session, "ann", "falcot.com", "pw")
    yield engine
    engine.dispose()


def test_replaceAndListRoundTrip(engine) -> None:
    """
    If an account's bindings are replaced, listing returns exactly the new ones with every
    field intact (the largest CSeq, fractional times, optional fields).
    """
    full = record("sip:joe@192.0.2.10:5060;transport=tcp", NOW + 3600.25, q=0.5,
                  call_id="x" * 1023, cseq=2**32 - 1, instance="<urn:uuid:1>", reg_id=2,
                  flow="tcp:1", source_host="2001:db8::1", source_port=5060, user_agent="UA")
    with store.transaction(engine) as session:
        assert replace_bindings(session, ("joe", "falcot.com"), [record("sip:old@h", NOW + 60)])
    with store.transaction(engine) as session:
        replace_bindings(session, ("joe", "falcot.com"), [full, record("sip:b@h", NOW + 60)])
    with store.transaction(engine) as session:
        listed = list_bindings(session, NOW)
    assert listed == [record("sip:b@h", NOW + 60), full]


def test_missingAccountSkipped(engine) -> None:
    """
    If bindings are written for an account that no longer exists, nothing is stored and the
    other accounts in the batch are still written.
    """
    with store.transaction(engine) as session:
        assert not replace_bindings(session, ("gone", "falcot.com"), [record("sip:g@h", NOW + 60)])
        replace_many(session, {("gone", "falcot.com"): [record("sip:g@h", NOW + 60, "gone")],
                               ("ann", "falcot.com"): [record("sip:a@h", NOW + 60, "ann")]})
    with store.transaction(engine) as session:
        assert [r.aor for r in list_bindings(session, NOW)] == [("ann", "falcot.com")]


def test_expiryAndFilters(engine) -> None:
    """
    If some bindings have expired, listing skips them, load deletes them, and listing can be
    narrowed to one account.
    """
    with store.transaction(engine) as session:
        replace_bindings(session, ("joe", "falcot.com"),
                         [record("sip:live@h", NOW + 10), record("sip:dead@h", NOW - 1)])
        replace_bindings(session, ("ann", "falcot.com"), [record("sip:a@h", NOW + 10, "ann")])
    with store.transaction(engine) as session:
        assert [r.contact for r in list_bindings(session, NOW, localpart="joe")] == ["sip:live@h"]
        assert len(load_bindings(session, NOW)) == 2
        assert delete_expired(session, NOW) == 0
        assert delete_expired(session, NOW + 11) == 2
    with store.transaction(engine) as session:
        assert list_bindings(session, NOW - 100) == []


def test_deletingAccountDeletesBindings(engine) -> None:
    """
    If an account is deleted, its stored bindings go with it.
    """
    with store.transaction(engine) as session:
        replace_bindings(session, ("joe", "falcot.com"), [record("sip:j@h", NOW + 10)])
    with store.transaction(engine) as session:
        store.delete_account(session, "joe", "falcot.com")
    with store.transaction(engine) as session:
        assert list_bindings(session, NOW) == []

"""The directory store on SQLite and PostgreSQL: accounts, derived secrets, generations."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select, text

from unirtc.directory import migrate, store
from unirtc.directory.engine import make_engine
from unirtc.directory.models import Account, DigestCredential
from unirtc.directory.secrets import verify_scram_password


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def test_createdAccountHasEverySecretAndNoPassword(engine) -> None:
    """
    If an account is created, it has SCRAM-SHA-1/256 and four HA1 values, the password
    verifies against them, and no column anywhere holds the password.
    """
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "correct horse battery")
    with store.transaction(engine) as session:
        credentials = store.get_credentials(session, "joe", "falcot.com")
    assert set(credentials.scram) == {"sha1", "sha256"}
    assert all(s.iterations >= 4096 for s in credentials.scram.values())
    assert verify_scram_password(credentials.scram["sha256"], "correct horse battery")
    assert set(credentials.digest) == {
        ("joe", "MD5"), ("joe", "SHA-256"), ("joe@falcot.com", "MD5"), ("joe@falcot.com", "SHA-256"),
    }
    assert credentials.digest[("joe", "MD5")].ha1 == hashlib.md5(
        b"joe:falcot.com:correct horse battery").hexdigest()
    with engine.connect() as connection:
        for table in ("accounts", "scram_credentials", "digest_credentials", "directory_state"):
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                assert not any(
                    b"correct horse" in (v if isinstance(v, bytes) else str(v).encode()) for v in row
                )


def test_duplicateAccountRefusedAndNothingChanged(engine) -> None:
    """
    If an account is created twice, the second raises AccountExists and the first keeps its secrets.
    """
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "first")
    with pytest.raises(store.AccountExists):
        with store.transaction(engine) as session:
            store.create_account(session, "joe", "falcot.com", "second")
    with store.transaction(engine) as session:
        credentials = store.get_credentials(session, "joe", "falcot.com")
    assert verify_scram_password(credentials.scram["sha1"], "first")


def test_passwordChangeRederivesEverySecret(engine) -> None:
    """
    If the password changes, every SCRAM and HA1 value is replaced: the old password no longer
    verifies anywhere and the new one does.
    """
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "old")
        before = store.get_credentials(session, "joe", "falcot.com")
    with store.transaction(engine) as session:
        store.set_password(session, "joe", "falcot.com", "new")
    with store.transaction(engine) as session:
        after = store.get_credentials(session, "joe", "falcot.com")
    assert not verify_scram_password(after.scram["sha256"], "old")
    assert verify_scram_password(after.scram["sha1"], "new")
    for key, secret in after.digest.items():
        assert secret.ha1 != before.digest[key].ha1
    with store.transaction(engine) as session:
        assert session.scalar(select(DigestCredential).where(DigestCredential.ha1 == before.digest[("joe", "MD5")].ha1)) is None


def test_deleteCascadesToSecrets(engine) -> None:
    """
    If an account is deleted, its secrets go with it; deleting it again raises NoSuchAccount.
    """
    with store.transaction(engine) as session:
        store.create_account(session, "joe", "falcot.com", "pw")
    with store.transaction(engine) as session:
        store.delete_account(session, "joe", "falcot.com")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM scram_credentials")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM digest_credentials")).scalar() == 0
    with pytest.raises(store.NoSuchAccount):
        with store.transaction(engine) as session:
            store.delete_account(session, "joe", "falcot.com")


def test_everyWriteBumpsTheGeneration(engine) -> None:
    """
    If accounts are created, changed, disabled and deleted, the shared generation counter
    increases with each write (other processes drop their caches on that).
    """
    def generation() -> int:
        with store.transaction(engine) as session:
            return store.get_generation(session)

    seen = [generation()]
    for write in (
        lambda s: store.create_account(s, "joe", "falcot.com", "pw"),
        lambda s: store.set_password(s, "joe", "falcot.com", "pw2"),
        lambda s: store.set_disabled(s, "joe", "falcot.com", True),
        lambda s: store.delete_account(s, "joe", "falcot.com"),
    ):
        with store.transaction(engine) as session:
            write(session)
        seen.append(generation())
    assert seen == sorted(set(seen)) and len(seen) == 5


def test_listAndDisable(engine) -> None:
    """
    If accounts exist on two domains, listing filters by domain, sorts, and shows the disabled flag.
    """
    with store.transaction(engine) as session:
        for local, domain in (("roland", "falcot.com"), ("joe", "falcot.com"), ("ann", "other.org")):
            store.create_account(session, local, domain, "pw")
        store.set_disabled(session, "roland", "falcot.com", True)
    with store.transaction(engine) as session:
        assert [a.jid for a in store.list_accounts(session)] == [
            "joe@falcot.com", "roland@falcot.com", "ann@other.org"]
        listed = store.list_accounts(session, "falcot.com")
    assert [(a.jid, a.disabled) for a in listed] == [("joe@falcot.com", False), ("roland@falcot.com", True)]
    assert all(a.created_at is not None for a in listed)


def test_unknownAccount(engine) -> None:
    """
    If credentials of an unknown account are asked for, the answer is None; changing it raises.
    """
    with store.transaction(engine) as session:
        assert store.get_credentials(session, "nobody", "falcot.com") is None
    with pytest.raises(store.NoSuchAccount):
        with store.transaction(engine) as session:
            store.set_password(session, "nobody", "falcot.com", "pw")
    with engine.connect() as connection:
        assert connection.execute(select(Account)).first() is None

"""Synchronous directory operations on an SQLAlchemy session.

``unirtc-ctl`` calls these directly; the server calls them through ``Directory`` on its thread
pool.  Sharing one implementation means the server and the CLI derive secrets identically.
Every function runs inside the caller's transaction; a raised error rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, joinedload

from unirtc.directory import plugin_store
from unirtc.directory.models import Account, DigestCredential, DirectoryState, ScramCredential
from unirtc.directory.secrets import (
    SCRAM_HASHES,
    DigestSecret,
    ScramSecret,
    derive_digest,
    derive_scram,
    prepare_password,
)


class DirectoryError(Exception):
    """A directory operation that cannot be done as asked."""


class AccountExists(DirectoryError):
    pass


class NoSuchAccount(DirectoryError):
    pass


@dataclass(frozen=True)
class AccountInfo:
    localpart: str
    domain: str
    created_at: datetime
    disabled: bool

    @property
    def jid(self) -> str:
        return f"{self.localpart}@{self.domain}"


@dataclass(frozen=True)
class Credentials:
    """Everything needed to verify a login for one account, detached from any session."""

    localpart: str
    domain: str
    disabled: bool
    scram: dict[str, ScramSecret]
    digest: dict[tuple[str, str], DigestSecret]  # (digest username, algorithm)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def _find(session: Session, localpart: str, domain: str) -> Account | None:
    return session.scalars(
        select(Account).where(Account.localpart == localpart, Account.domain == domain)
    ).one_or_none()


def _require(session: Session, localpart: str, domain: str) -> Account:
    account = _find(session, localpart, domain)
    if account is None:
        raise NoSuchAccount(f"no account {localpart}@{domain}")
    return account


def _bump_generation(session: Session) -> None:
    """Tell every server sharing this database that cached credentials are stale."""
    updated = session.execute(
        update(DirectoryState).where(DirectoryState.id == 1)
        .values(generation=DirectoryState.generation + 1)
    )
    if updated.rowcount == 0:
        session.add(DirectoryState(id=1, generation=1))


def _store_secrets(account: Account, password: str) -> None:
    prepared = prepare_password(password)
    account.scram = [
        ScramCredential(
            hash_name=s.hash_name, salt=s.salt, iterations=s.iterations,
            stored_key=s.stored_key, server_key=s.server_key,
        )
        for s in (derive_scram(hash_name, prepared) for hash_name in SCRAM_HASHES)
    ]
    account.digest = [
        DigestCredential(username=d.username, realm=d.realm, algorithm=d.algorithm, ha1=d.ha1)
        for d in derive_digest(account.localpart, account.domain, prepared)
    ]


def create_account(session: Session, localpart: str, domain: str, password: str) -> None:
    if _find(session, localpart, domain) is not None:
        raise AccountExists(f"account {localpart}@{domain} already exists")
    account = Account(localpart=localpart, domain=domain, disabled=False)
    _store_secrets(account, password)
    session.add(account)
    _bump_generation(session)


def set_password(session: Session, localpart: str, domain: str, password: str) -> None:
    """Re-derive every stored secret at once, so no protocol keeps accepting the old password."""
    account = _require(session, localpart, domain)
    account.scram.clear()
    account.digest.clear()
    session.flush()
    _store_secrets(account, password)
    _bump_generation(session)


def set_disabled(session: Session, localpart: str, domain: str, disabled: bool) -> None:
    _require(session, localpart, domain).disabled = disabled
    _bump_generation(session)


def delete_account(session: Session, localpart: str, domain: str) -> None:
    """Delete the account, its secrets and bindings (cascade) and what plugins stored for it."""
    session.delete(_require(session, localpart, domain))
    plugin_store.delete_owner(session, f"{localpart}@{domain}")
    _bump_generation(session)


def list_accounts(session: Session, domain: str | None = None) -> list[AccountInfo]:
    query = select(Account).order_by(Account.domain, Account.localpart)
    if domain is not None:
        query = query.where(Account.domain == domain)
    return [
        AccountInfo(a.localpart, a.domain, a.created_at, a.disabled) for a in session.scalars(query)
    ]


def get_credentials(session: Session, localpart: str, domain: str) -> Credentials | None:
    """The account and all its secrets in one query: this runs for every login and REGISTER."""
    account = session.scalars(
        select(Account)
        .where(Account.localpart == localpart, Account.domain == domain)
        .options(joinedload(Account.scram), joinedload(Account.digest))
    ).unique().one_or_none()
    if account is None:
        return None
    return Credentials(
        localpart=account.localpart,
        domain=account.domain,
        disabled=account.disabled,
        scram={
            s.hash_name: ScramSecret(s.hash_name, s.salt, s.iterations, s.stored_key, s.server_key)
            for s in account.scram
        },
        digest={
            (d.username, d.algorithm): DigestSecret(d.username, d.realm, d.algorithm, d.ha1)
            for d in account.digest
        },
    )


def get_generation(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(DirectoryState.generation), 0))) or 0

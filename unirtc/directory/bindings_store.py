# -*- test-case-name: tests.unit.test_bindings_store -*-
"""Synchronous SQL for SIP bindings: the registrar's write-through copy and ``unirtc-ctl``'s view.

The running server keeps bindings in memory (``unirtc.sip.bindings``) and calls these on the
Directory's thread pool; ``unirtc-ctl sip-bindings`` can call them directly on a session.
Times are Unix seconds on this side and timezone-aware UTC datetimes in the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from unirtc.directory.models import Account, SipBinding


@dataclass(frozen=True)
class BindingRecord:
    """One stored binding, detached from any session."""

    localpart: str
    domain: str
    contact: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    instance: str | None = None
    reg_id: int | None = None
    flow: str | None = None
    source_host: str | None = None
    source_port: int | None = None
    user_agent: str | None = None

    @property
    def aor(self) -> tuple[str, str]:
        return self.localpart, self.domain


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def to_seconds(moment: datetime) -> float:
    """Unix time of a stored datetime; SQLite hands back naive values, which are UTC here."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _record(row: SipBinding, localpart: str, domain: str) -> BindingRecord:
    return BindingRecord(
        localpart=localpart, domain=domain, contact=row.contact,
        expires_at=to_seconds(row.expires_at), q=row.q, call_id=row.call_id, cseq=row.cseq,
        instance=row.instance, reg_id=row.reg_id, flow=row.flow, source_host=row.source_host,
        source_port=row.source_port, user_agent=row.user_agent,
    )


def list_bindings(
    session: Session, now: float, localpart: str | None = None, domain: str | None = None
) -> list[BindingRecord]:
    """Unexpired bindings, optionally of one account or domain, by account then expiry."""
    query = (
        select(SipBinding, Account.localpart, Account.domain)
        .join(Account, SipBinding.account_id == Account.id)
        .where(SipBinding.expires_at > to_datetime(now))
        .order_by(Account.domain, Account.localpart, SipBinding.expires_at, SipBinding.id)
    )
    if localpart is not None:
        query = query.where(Account.localpart == localpart)
    if domain is not None:
        query = query.where(Account.domain == domain)
    return [_record(row, local, dom) for row, local, dom in session.execute(query)]


def delete_expired(session: Session, now: float) -> int:
    """Remove bindings that expired before ``now``; returns how many."""
    result = session.execute(delete(SipBinding).where(SipBinding.expires_at <= to_datetime(now)))
    return result.rowcount or 0


def load_bindings(session: Session, now: float) -> list[BindingRecord]:
    """Every live binding (at server start), after dropping the expired ones."""
    delete_expired(session, now)
    return list_bindings(session, now)


def replace_bindings(
    session: Session, aor: tuple[str, str], records: Iterable[BindingRecord]
) -> bool:
    """Make the account's stored bindings exactly ``records``; False if the account is gone."""
    localpart, domain = aor
    account_id = session.scalar(
        select(Account.id).where(Account.localpart == localpart, Account.domain == domain)
    )
    if account_id is None:
        return False
    session.execute(delete(SipBinding).where(SipBinding.account_id == account_id))
    session.add_all(
        SipBinding(
            account_id=account_id, contact=r.contact, expires_at=to_datetime(r.expires_at),
            q=r.q, call_id=r.call_id, cseq=r.cseq, instance=r.instance, reg_id=r.reg_id,
            flow=r.flow, source_host=r.source_host, source_port=r.source_port,
            user_agent=r.user_agent,
        )
        for r in records
    )
    return True


def replace_many(session: Session, changes: dict[tuple[str, str], list[BindingRecord]]) -> None:
    """Apply several accounts' replacements in one transaction (one flush of the registrar)."""
    for aor, records in changes.items():
        replace_bindings(session, aor, records)

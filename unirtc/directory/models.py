"""The directory's tables: accounts and the per-protocol secrets derived from their passwords.

No column ever holds a password.  ``directory_state.generation`` is bumped by every credential
write, from the server or from ``unirtc-ctl`` in another process, so servers know to drop caches.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    """One person: ``localpart@domain`` for XMPP, ``sip:localpart@domain`` for SIP."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("localpart", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    localpart: Mapped[str] = mapped_column(String(1023))
    domain: Mapped[str] = mapped_column(String(1023), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    disabled: Mapped[bool] = mapped_column(default=False)

    scram: Mapped[list[ScramCredential]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )
    digest: Mapped[list[DigestCredential]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )


class ScramCredential(Base):
    """SCRAM server-side secret for one hash (RFC 5802 §3): verifies, cannot impersonate."""

    __tablename__ = "scram_credentials"
    __table_args__ = (UniqueConstraint("account_id", "hash_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    hash_name: Mapped[str] = mapped_column(String(16))
    salt: Mapped[bytes] = mapped_column(LargeBinary(64))
    iterations: Mapped[int] = mapped_column(Integer)
    stored_key: Mapped[bytes] = mapped_column(LargeBinary(64))
    server_key: Mapped[bytes] = mapped_column(LargeBinary(64))

    account: Mapped[Account] = relationship(back_populates="scram")


class DigestCredential(Base):
    """SIP digest HA1 for one digest username (``joe`` or ``joe@falcot.com``) and algorithm."""

    __tablename__ = "digest_credentials"
    __table_args__ = (UniqueConstraint("account_id", "username", "algorithm"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(2047))
    realm: Mapped[str] = mapped_column(String(1023))
    algorithm: Mapped[str] = mapped_column(String(16))
    ha1: Mapped[str] = mapped_column(String(128))

    account: Mapped[Account] = relationship(back_populates="digest")


class DirectoryState(Base):
    """A single row whose generation counter every credential write increments."""

    __tablename__ = "directory_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class SipBinding(Base):
    """One SIP registration (RFC 3261 §10): a Contact bound to an account until ``expires_at``.

    The server keeps these in memory and writes them through here so that registrations survive
    a restart, as Kamailio's usrloc does with a database; deleting the account deletes them.
    """

    __tablename__ = "sip_bindings"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    contact: Mapped[str] = mapped_column(String(2047))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    q: Mapped[float] = mapped_column(Float)
    call_id: Mapped[str] = mapped_column(String(1023))
    cseq: Mapped[int] = mapped_column(BigInteger)
    instance: Mapped[str | None] = mapped_column(String(1023))
    reg_id: Mapped[int | None] = mapped_column(Integer)
    flow: Mapped[str | None] = mapped_column(String(255))
    source_host: Mapped[str | None] = mapped_column(String(64))
    source_port: Mapped[int | None] = mapped_column(Integer)
    user_agent: Mapped[str | None] = mapped_column(String(255))


class PluginData(Base):
    """One JSON value a plugin keeps under ``(store, owner, key)`` (``unirtc.storage.KeyValueStore``).

    ``owner`` is a bare JID (an account, a MUC room) or a component-level name; deleting an
    account deletes the rows it owns.
    """

    __tablename__ = "plugin_data"
    __table_args__ = (UniqueConstraint("store", "owner", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    store: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(2047), index=True)
    key: Mapped[str] = mapped_column(String(1023))
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class PluginArchiveItem(Base):
    """One entry of a plugin's append-only, time-ordered log (``unirtc.storage.ArchiveStore``):
    offline messages, message archives, MUC history. ``id`` orders entries and pages queries."""

    __tablename__ = "plugin_archive"
    __table_args__ = (Index("ix_plugin_archive_store_owner_id", "store", "owner", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    store: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(2047), index=True)
    with_jid: Mapped[str | None] = mapped_column(String(3071))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    value: Mapped[str] = mapped_column(Text)

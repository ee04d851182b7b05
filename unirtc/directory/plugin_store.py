# -*- test-case-name: tests.unit.test_plugin_store -*-
"""Plugin storage in SQL, synchronously: JSON values by key and append-only archives.

``unirtc.storage`` runs these on the directory's thread pool for plugins; ``unirtc-ctl`` and
``store.delete_account`` call them directly. Each function works inside the caller's
transaction. Values are JSON, so a plugin's data stays readable and portable between SQLite
and PostgreSQL; timestamps are UTC (SQLite drops the zone, so reads put it back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from unirtc.directory.models import PluginArchiveItem, PluginData, utc_now

MAX_NAME = 64
MAX_OWNER = 2047
MAX_KEY = 1023
MAX_WITH = 3071


class StorageError(ValueError):
    """A store name, owner or key that cannot be stored, or a value that is not JSON."""


@dataclass(frozen=True)
class ArchiveItem:
    """One archived entry, detached from the session."""

    id: int
    owner: str
    with_: str | None
    when: datetime
    value: Any


def _check(what: str, text: str | None, limit: int) -> None:
    if not isinstance(text, str) or not text:
        raise StorageError(f"{what} must be a non-empty string, not {text!r}")
    if len(text) > limit:
        raise StorageError(f"{what} is longer than {limit} characters")


def _encode(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StorageError(f"value is not JSON: {e}") from None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


# -- key/value ----------------------------------------------------------------------------------


def kv_get(session: Session, store: str, owner: str, key: str) -> Any | None:
    """The value stored under ``key``, or None."""
    row = session.scalar(
        select(PluginData.value).where(
            PluginData.store == store, PluginData.owner == owner, PluginData.key == key
        )
    )
    return None if row is None else json.loads(row)


def kv_set(session: Session, store: str, owner: str, key: str, value: Any | None) -> None:
    """Store ``value`` under ``key``; None deletes it."""
    _check("store name", store, MAX_NAME)
    _check("owner", owner, MAX_OWNER)
    _check("key", key, MAX_KEY)
    if value is None:
        session.execute(
            delete(PluginData).where(
                PluginData.store == store, PluginData.owner == owner, PluginData.key == key
            )
        )
        return
    text = _encode(value)
    row = session.scalars(
        select(PluginData).where(
            PluginData.store == store, PluginData.owner == owner, PluginData.key == key
        )
    ).one_or_none()
    if row is None:
        session.add(PluginData(store=store, owner=owner, key=key, value=text, updated_at=utc_now()))
    else:
        row.value, row.updated_at = text, utc_now()
    session.flush()


def kv_keys(session: Session, store: str, owner: str) -> list[str]:
    return list(
        session.scalars(
            select(PluginData.key)
            .where(PluginData.store == store, PluginData.owner == owner)
            .order_by(PluginData.key)
        )
    )


def kv_items(session: Session, store: str, owner: str) -> dict[str, Any]:
    """Every key of ``owner`` in ``store`` with its value."""
    rows = session.execute(
        select(PluginData.key, PluginData.value).where(
            PluginData.store == store, PluginData.owner == owner
        )
    )
    return {key: json.loads(value) for key, value in rows}


def kv_clear(session: Session, store: str, owner: str) -> int:
    """Delete every key of ``owner`` in ``store``; return how many there were."""
    result = session.execute(
        delete(PluginData).where(PluginData.store == store, PluginData.owner == owner)
    )
    return result.rowcount or 0


# -- archives -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEntry:
    """An entry to append, checked and JSON-encoded (``archive_entry``) before it is queued."""

    owner: str
    text: str
    with_: str | None
    when: datetime
    max_items: int | None = None


def archive_entry(
    store: str,
    owner: str,
    value: Any,
    with_: str | None = None,
    when: datetime | None = None,
    max_items: int | None = None,
) -> NewEntry:
    """Check and encode an entry; raises StorageError for bad names, owners or values."""
    _check("store name", store, MAX_NAME)
    _check("owner", owner, MAX_OWNER)
    if with_ is not None:
        _check("with", with_, MAX_WITH)
    return NewEntry(owner, _encode(value), with_, _utc(when or utc_now()), max_items)


def archive_append_many(session: Session, store: str, entries: list[NewEntry]) -> list[int | None]:
    """Append ``entries`` in order with one statement; each gets its id, or None if its owner
    already had ``max_items`` entries. Counting and appending in one transaction is what makes
    a quota hold under concurrent appends; one statement is what makes busy archives cheap."""
    stored: dict[str, int] = {}  # entries already in the database, counted when first needed
    added: dict[str, int] = {}  # entries of this batch accepted so far
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    for position, entry in enumerate(entries):
        if entry.max_items is not None:
            if entry.owner not in stored:
                stored[entry.owner] = archive_count(session, store, entry.owner)
            if stored[entry.owner] + added.get(entry.owner, 0) >= entry.max_items:
                continue
        added[entry.owner] = added.get(entry.owner, 0) + 1
        rows.append({"store": store, "owner": entry.owner, "with_jid": entry.with_,
                     "created_at": entry.when, "value": entry.text})
        positions.append(position)
    ids: list[int | None] = [None] * len(entries)
    if rows:
        statement = insert(PluginArchiveItem).returning(PluginArchiveItem.id, sort_by_parameter_order=True)
        for position, new_id in zip(positions, session.scalars(statement, rows).all()):
            ids[position] = new_id
    return ids


def archive_append(
    session: Session,
    store: str,
    owner: str,
    value: Any,
    with_: str | None = None,
    when: datetime | None = None,
    max_items: int | None = None,
) -> int | None:
    """Append one entry and return its id (None: the owner's ``max_items`` is reached)."""
    entry = archive_entry(store, owner, value, with_, when, max_items)
    return archive_append_many(session, store, [entry])[0]


def archive_query(
    session: Session,
    store: str,
    owner: str,
    with_: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
    reverse: bool = False,
) -> list[ArchiveItem]:
    """Entries of ``owner`` oldest first, filtered (``start``/``end`` inclusive, ids exclusive).

    ``reverse`` takes the *last* ``limit`` matching entries (RSM's "page before"), still
    returned oldest first.
    """
    query = select(PluginArchiveItem).where(
        PluginArchiveItem.store == store, PluginArchiveItem.owner == owner
    )
    if with_ is not None:
        query = query.where(PluginArchiveItem.with_jid == with_)
    if start is not None:
        query = query.where(PluginArchiveItem.created_at >= _utc(start))
    if end is not None:
        query = query.where(PluginArchiveItem.created_at <= _utc(end))
    if after_id is not None:
        query = query.where(PluginArchiveItem.id > after_id)
    if before_id is not None:
        query = query.where(PluginArchiveItem.id < before_id)
    order = PluginArchiveItem.id.desc() if reverse else PluginArchiveItem.id
    rows = list(session.scalars(query.order_by(order).limit(max(0, limit))))
    if reverse:
        rows.reverse()
    return [
        ArchiveItem(r.id, r.owner, r.with_jid, _utc(r.created_at), json.loads(r.value)) for r in rows
    ]


def archive_delete(session: Session, store: str, owner: str, ids: list[int] | None = None) -> int:
    """Delete the entries ``ids`` of ``owner`` (all of them if None); return how many went."""
    query = delete(PluginArchiveItem).where(
        PluginArchiveItem.store == store, PluginArchiveItem.owner == owner
    )
    if ids is not None:
        if not ids:
            return 0
        query = query.where(PluginArchiveItem.id.in_(list(ids)))
    return session.execute(query).rowcount or 0


def archive_count(session: Session, store: str, owner: str, with_: str | None = None) -> int:
    query = select(func.count(PluginArchiveItem.id)).where(
        PluginArchiveItem.store == store, PluginArchiveItem.owner == owner
    )
    if with_ is not None:
        query = query.where(PluginArchiveItem.with_jid == with_)
    return session.scalar(query) or 0


def archive_trim(session: Session, store: str, owner: str, keep: int) -> int:
    """Delete all but the newest ``keep`` entries of ``owner``; return how many went."""
    cutoff = session.scalar(
        select(PluginArchiveItem.id)
        .where(PluginArchiveItem.store == store, PluginArchiveItem.owner == owner)
        .order_by(PluginArchiveItem.id.desc())
        .offset(max(0, keep))
        .limit(1)
    )
    if cutoff is None:
        return 0
    return session.execute(
        delete(PluginArchiveItem).where(
            PluginArchiveItem.store == store,
            PluginArchiveItem.owner == owner,
            PluginArchiveItem.id <= cutoff,
        )
    ).rowcount or 0


# -- accounts -----------------------------------------------------------------------------------


def delete_owner(session: Session, owner: str) -> None:
    """Delete everything any plugin stored for ``owner`` (an account being deleted)."""
    session.execute(delete(PluginData).where(PluginData.owner == owner))
    session.execute(delete(PluginArchiveItem).where(PluginArchiveItem.owner == owner))

# -*- test-case-name: tests.unit.test_storage -*-
"""Plugin storage, asynchronously: what ``module.storage(name)`` and ``module.archive(name)`` give.

Every call returns a Deferred and runs its SQL on the directory's thread pool
(``Directory.run``), never on the reactor thread. Calls for the same owner in the same store
run one after another, in the order they were made, so a plugin reads its own writes and a
read-modify-write per owner cannot interleave with another; different owners run in parallel.
Archive appends are group-committed: those made while a batch is being written go together in
the next one (a message archive appends on every message).

``KeyValueStore(directory, name)`` (``module.storage(name)``): JSON values per owner and key.

- ``get(owner, key) -> Deferred[Any | None]``
- ``set(owner, key, value) -> Deferred[None]``: ``value`` None deletes the key
- ``keys(owner) -> Deferred[list[str]]``, ``items(owner) -> Deferred[dict[str, Any]]``
- ``clear(owner) -> Deferred[int]``: delete every key of the owner

``ArchiveStore(directory, name)`` (``module.archive(name)``): an append-only log per owner.

- ``append(owner, value, with_=None, when=None, max_items=None) -> Deferred[int | None]``:
  the new entry's id; None (nothing stored) if the owner already has ``max_items`` entries
- ``query(owner, with_=None, start=None, end=None, after_id=None, before_id=None, limit=100,
  reverse=False) -> Deferred[list[ArchiveItem]]``: oldest first; ``reverse`` takes the newest
  ``limit`` matches (still returned oldest first); ``ArchiveItem`` has ``id``, ``owner``,
  ``with_``, ``when`` (aware UTC datetime) and ``value``
- ``delete(owner, ids=None) -> Deferred[int]`` (all entries if ``ids`` is None),
  ``count(owner, with_=None) -> Deferred[int]``, ``trim(owner, keep) -> Deferred[int]``

An owner is a bare JID string (an account: ``unirtc-ctl deluser`` deletes its data in every
store) or any other name a plugin chooses (a MUC room's JID, a component-level key). Values
are anything ``json.dumps`` accepts; bad names, owners, keys or values fail the Deferred with
``StorageError``. ``DocumentCache`` keeps one document per owner in memory on top of a
``KeyValueStore``, for data read on every stanza (rosters, block lists).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from unirtc.directory import plugin_store
from unirtc.directory.plugin_store import ArchiveItem, StorageError

__all__ = ["ArchiveItem", "ArchiveStore", "DocumentCache", "KeyValueStore", "StorageError"]

T = TypeVar("T")


class Runner(Protocol):
    """What runs SQL for the stores: ``Directory.run(operation, *args)`` calls
    ``operation(session, *args)`` in a transaction on its thread pool."""

    def run(self, operation: Callable[..., Any], *args: Any) -> Deferred[Any]: ...


def _check_name(name: str) -> str:
    if not name or len(name) > plugin_store.MAX_NAME or not all(c.isalnum() or c in "_-." for c in name):
        raise StorageError(f"store name {name!r}: use 1 to 64 letters, digits, '_', '-' or '.'")
    return name


class _OwnerQueue:
    """Runs operations one at a time per owner, in call order; owners are independent.

    An append may start while the owner's previous operation, also an append, is still
    pending: appends go through ``_AppendBatcher``, which writes them in order.
    """

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._tails: dict[str, tuple[Deferred[None], bool]] = {}

    def submit(self, owner: str, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        return self.submit_start(owner, lambda: self._runner.run(operation, *args))

    def submit_start(self, owner: str, start: Callable[[], Deferred[T]], append: bool = False) -> Deferred[T]:
        done: Deferred[T] = Deferred()
        tail: Deferred[None] = Deferred()
        previous = self._tails.get(owner)
        self._tails[owner] = (tail, append)

        def finish(result: T | Failure) -> None:
            if self._tails.get(owner, (None,))[0] is tail:
                del self._tails[owner]
            tail.callback(None)
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(result)

        def run(_: object = None) -> None:
            try:
                d = start()
            except Exception:
                finish(Failure())
                return
            d.addBoth(finish)

        if previous is None or (append and previous[1]):
            run()
        else:
            previous[0].addCallback(run)
        return done


class _AppendBatcher:
    """Group commit for archive appends: while one batch is being written, the next collects
    every append made meanwhile, so a busy archive costs one transaction per batch rather
    than one per entry. Batches are written one after another, entries in call order."""

    def __init__(self, runner: Runner, name: str) -> None:
        self._runner = runner
        self._name = name
        self._open: list[tuple[plugin_store.NewEntry, Deferred[int | None]]] = []
        self._writing = False

    def add(self, entry: plugin_store.NewEntry) -> Deferred[int | None]:
        d: Deferred[int | None] = Deferred()
        self._open.append((entry, d))
        if not self._writing:
            self._write()
        return d

    def _write(self) -> None:
        batch, self._open = self._open, []
        self._writing = True

        def done(result: list[int | None] | Failure) -> None:
            self._writing = False
            for position, (_, d) in enumerate(batch):
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result[position])
            if self._open:
                self._write()

        try:
            written = self._runner.run(plugin_store.archive_append_many, self._name, [e for e, _ in batch])
        except Exception:
            done(Failure())
            return
        written.addBoth(done)


class KeyValueStore:
    """JSON values per ``(owner, key)`` in the store ``name`` (see the module docstring)."""

    def __init__(self, directory: Runner, name: str) -> None:
        self.name = _check_name(name)
        self._queue = _OwnerQueue(directory)

    def get(self, owner: str, key: str) -> Deferred[Any | None]:
        return self._queue.submit(owner, plugin_store.kv_get, self.name, owner, key)

    def set(self, owner: str, key: str, value: Any | None) -> Deferred[None]:
        return self._queue.submit(owner, plugin_store.kv_set, self.name, owner, key, value)

    def keys(self, owner: str) -> Deferred[list[str]]:
        return self._queue.submit(owner, plugin_store.kv_keys, self.name, owner)

    def items(self, owner: str) -> Deferred[dict[str, Any]]:
        return self._queue.submit(owner, plugin_store.kv_items, self.name, owner)

    def clear(self, owner: str) -> Deferred[int]:
        return self._queue.submit(owner, plugin_store.kv_clear, self.name, owner)


class ArchiveStore:
    """An append-only log per owner in the store ``name`` (see the module docstring)."""

    def __init__(self, directory: Runner, name: str) -> None:
        self.name = _check_name(name)
        self._queue = _OwnerQueue(directory)
        self._batcher = _AppendBatcher(directory, self.name)

    def append(self, owner: str, value: Any, with_: str | None = None, when: datetime | None = None,
               max_items: int | None = None) -> Deferred[int | None]:
        try:
            entry = plugin_store.archive_entry(self.name, owner, value, with_, when, max_items)
        except StorageError:
            return fail()
        return self._queue.submit_start(owner, lambda: self._batcher.add(entry), append=True)

    def query(self, owner: str, with_: str | None = None, start: datetime | None = None,
              end: datetime | None = None, after_id: int | None = None, before_id: int | None = None,
              limit: int = 100, reverse: bool = False) -> Deferred[list[ArchiveItem]]:
        return self._queue.submit(owner, plugin_store.archive_query, self.name, owner, with_, start,
                                  end, after_id, before_id, limit, reverse)

    def delete(self, owner: str, ids: list[int] | None = None) -> Deferred[int]:
        return self._queue.submit(owner, plugin_store.archive_delete, self.name, owner,
                                  None if ids is None else list(ids))

    def count(self, owner: str, with_: str | None = None) -> Deferred[int]:
        return self._queue.submit(owner, plugin_store.archive_count, self.name, owner, with_)

    def trim(self, owner: str, keep: int) -> Deferred[int]:
        return self._queue.submit(owner, plugin_store.archive_trim, self.name, owner, keep)


class DocumentCache(Generic[T]):
    """One document per owner (a roster, a block list), kept in memory after the first read.

    ``load`` reads it once (concurrent loads share the read) and returns the same object until
    it is evicted; mutate it and call ``save``, which keeps it and queues the write. This is
    only coherent while this process is the only writer of ``(store, key)``, which is the case
    for plugin-owned data. At most ``max_owners`` documents stay cached (least recently used go).
    """

    def __init__(self, store: KeyValueStore, key: str, decode: Callable[[Any | None], T],
                 encode: Callable[[T], Any], max_owners: int = 10000) -> None:
        self.store = store
        self.key = key
        self.decode = decode
        self.encode = encode
        self.max_owners = max_owners
        self._documents: OrderedDict[str, T] = OrderedDict()
        self._loading: dict[str, list[Deferred[T]]] = {}

    def peek(self, owner: str) -> T | None:
        """The cached document, or None if it has not been loaded (or was evicted)."""
        document = self._documents.get(owner)
        if document is not None:
            self._documents.move_to_end(owner)
        return document

    def load(self, owner: str) -> Deferred[T]:
        cached = self.peek(owner)
        if cached is not None:
            return succeed(cached)
        waiter: Deferred[T] = Deferred()
        if owner in self._loading:
            self._loading[owner].append(waiter)
            return waiter
        self._loading[owner] = [waiter]

        def loaded(raw: Any | None) -> None:
            waiters = self._loading.pop(owner, [])
            document = self._documents.get(owner)  # a save while we read wins
            if document is None:
                document = self.decode(raw)
                self._remember(owner, document)
            for d in waiters:
                d.callback(document)

        def failed(failure: Failure) -> None:
            for d in self._loading.pop(owner, []):
                d.errback(failure)

        self.store.get(owner, self.key).addCallbacks(loaded, failed)
        return waiter

    def save(self, owner: str, document: T) -> Deferred[None]:
        self._remember(owner, document)
        return self.store.set(owner, self.key, self.encode(document))

    def forget(self, owner: str) -> None:
        self._documents.pop(owner, None)

    def _remember(self, owner: str, document: T) -> None:
        self._documents[owner] = document
        self._documents.move_to_end(owner)
        while len(self._documents) > self.max_owners:
            self._documents.popitem(last=False)

"""The async plugin storage API: per-owner ordering, failures, shared stores and the document cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from unirtc.directory import migrate, store
from unirtc.directory.engine import make_engine
from unirtc.plugin import Module, PluginContext
from unirtc.storage import ArchiveStore, DocumentCache, KeyValueStore, StorageError


class ManualRunner:
    """Runs SQL on SQLite, but only when the test says so: ``step()`` runs the oldest pending call."""

    def __init__(self, engine: Engine, manual: bool = True) -> None:
        self.engine = engine
        self.manual = manual
        self.pending: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def run(self, operation: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if not self.manual:
            return maybeDeferred(self._execute, operation, args)
        d: Deferred[Any] = Deferred()
        self.pending.append((d, operation, args))
        return d

    def _execute(self, operation: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with store.transaction(self.engine) as session:
            return operation(session, *args)

    def step(self, index: int = 0) -> None:
        d, operation, args = self.pending.pop(index)
        maybeDeferred(self._execute, operation, args).chainDeferred(d)


class StorageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = make_engine(f"sqlite:///{self.mktemp()}.sqlite")
        migrate.upgrade(self.engine)
        self.addCleanup(self.engine.dispose)
        self.runner = ManualRunner(self.engine)

    def test_sameOwnerRunsInOrderOthersInParallel(self) -> None:
        """
        If two writes and a read for one owner are issued at once, only the first reaches the
        database until it finishes, so the read sees the last write; another owner's call is
        not held behind them.
        """
        kv = KeyValueStore(self.runner, "roster")
        first = kv.set("joe@falcot.com", "k", 1)
        second = kv.set("joe@falcot.com", "k", 2)
        read = kv.get("joe@falcot.com", "k")
        other = kv.set("ann@falcot.com", "k", 3)
        self.assertEqual(len(self.runner.pending), 2)  # joe's first write and ann's write
        self.runner.step(1)
        self.successResultOf(other)
        self.runner.step()
        self.successResultOf(first)
        self.assertNoResult(read)
        self.runner.step()
        self.runner.step()
        self.successResultOf(second)
        self.assertEqual(self.successResultOf(read), 2)
        self.assertEqual(self.runner.pending, [])

    def test_failureDoesNotBlockTheQueue(self) -> None:
        """
        If a write fails (a value that is not JSON), its Deferred fails with StorageError and
        the next call for the same owner still runs.
        """
        kv = KeyValueStore(ManualRunner(self.engine, manual=False), "vcard")
        self.failureResultOf(kv.set("joe@falcot.com", "v", {1, 2}), StorageError)
        self.successResultOf(kv.set("joe@falcot.com", "v", "ok"))
        self.assertEqual(self.successResultOf(kv.items("joe@falcot.com")), {"v": "ok"})
        self.assertEqual(self.successResultOf(kv.keys("joe@falcot.com")), ["v"])
        self.assertEqual(self.successResultOf(kv.clear("joe@falcot.com")), 1)

    def test_archiveApi(self) -> None:
        """
        If entries are appended through the async API, query, count, trim and delete see them,
        and a full quota makes append return None.
        """
        archive = ArchiveStore(ManualRunner(self.engine, manual=False), "offline")
        ids = [self.successResultOf(archive.append("joe@falcot.com", n, "ann@falcot.com", max_items=3))
               for n in range(4)]
        self.assertIsNone(ids[3])
        items = self.successResultOf(archive.query("joe@falcot.com", limit=2, reverse=True))
        self.assertEqual([i.value for i in items], [1, 2])
        self.assertEqual(self.successResultOf(archive.count("joe@falcot.com", "ann@falcot.com")), 3)
        self.assertEqual(self.successResultOf(archive.trim("joe@falcot.com", 2)), 1)
        self.assertEqual(self.successResultOf(archive.delete("joe@falcot.com", [ids[1]])), 1)
        self.assertEqual(self.successResultOf(archive.count("joe@falcot.com")), 1)

    def test_appendsAreGroupCommitted(self) -> None:
        """
        If appends are made while a batch is being written, they all go in the next single
        write, same owner included, in call order with increasing ids; a query made between two
        appends of one owner sees the first and not the second.
        """
        archive = ArchiveStore(self.runner, "mam")
        first = archive.append("joe@falcot.com", 0)
        self.assertEqual(len(self.runner.pending), 1)
        more = [archive.append(owner, n) for n, owner in enumerate(["ann@x", "joe@falcot.com", "bob@x"], 1)]
        seen = archive.query("joe@falcot.com")
        last = archive.append("joe@falcot.com", 4)
        self.assertEqual(len(self.runner.pending), 1)  # the rest wait for the first batch
        self.runner.step()
        self.assertEqual(len(self.runner.pending), 1)  # one write for three appends
        self.runner.step()
        ids = [self.successResultOf(d) for d in [first, *more]]
        self.assertEqual(ids, sorted(ids))
        self.assertNoResult(last)
        self.runner.step()  # the query, then the last append
        self.assertEqual([i.value for i in self.successResultOf(seen)], [0, 2])
        self.runner.step()
        self.assertGreater(self.successResultOf(last), ids[-1])

    def test_quotaWithinOneBatch(self) -> None:
        """
        If several appends for one owner with a quota go in one batch, only those that fit are
        stored; a failed batch fails every append in it and the next batch still runs.
        """
        archive = ArchiveStore(self.runner, "offline")
        blocker = archive.append("other@x", "first")
        results = [archive.append("joe@falcot.com", n, max_items=2) for n in range(4)]
        self.runner.step()
        self.runner.step()
        self.successResultOf(blocker)
        self.assertEqual([self.successResultOf(d) is None for d in results], [False, False, True, True])
        failing = archive.append("joe@falcot.com", "x")
        d, _, _ = self.runner.pending.pop()
        d.errback(RuntimeError("disk full"))
        self.failureResultOf(failing, RuntimeError)
        self.failureResultOf(archive.append("", "bad owner"), StorageError)
        after = archive.append("joe@falcot.com", "y")
        self.runner.step()
        self.assertIsNotNone(self.successResultOf(after))

    def test_badStoreName(self) -> None:
        """
        If a store name is empty, too long or has odd characters, StorageError is raised at once.
        """
        for name in ("", "x" * 65, "a b", "a/b"):
            with self.assertRaises(StorageError):
                KeyValueStore(self.runner, name)

    def test_moduleSharesStoresByName(self) -> None:
        """
        If two plugins ask for the same store name, they get the same object (one queue per
        owner); a key/value store and an archive with the same name are different objects.
        """
        context = PluginContext(settings=None, directory=self.runner, reactor=None)
        a, b = Module("a", context), Module("b", context)
        self.assertIs(a.storage("roster"), b.storage("roster"))
        self.assertIsInstance(a.archive("roster"), ArchiveStore)
        self.assertIsNot(a.archive("roster"), a.storage("roster"))


class DocumentCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        engine = make_engine(f"sqlite:///{self.mktemp()}.sqlite")
        migrate.upgrade(engine)
        self.addCleanup(engine.dispose)
        self.runner = ManualRunner(engine)
        self.kv = KeyValueStore(self.runner, "blocking")
        self.cache = DocumentCache(self.kv, "list", decode=lambda raw: set(raw or ()),
                                   encode=sorted, max_owners=2)

    def test_concurrentLoadsShareOneRead(self) -> None:
        """
        If a document is loaded twice before the read finishes, one query runs and both get the
        same object, which later loads return without a query.
        """
        first, second = self.cache.load("joe@falcot.com"), self.cache.load("joe@falcot.com")
        self.assertEqual(len(self.runner.pending), 1)
        self.runner.step()
        document = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), document)
        self.assertIs(self.successResultOf(self.cache.load("joe@falcot.com")), document)
        self.assertEqual(self.runner.pending, [])

    def test_saveIsVisibleAtOnceAndPersisted(self) -> None:
        """
        If a document is saved, peek returns it before the write finishes, and a fresh cache
        reads the saved value back.
        """
        self.cache.save("joe@falcot.com", {"roland@falcot.com"})
        self.assertEqual(self.cache.peek("joe@falcot.com"), {"roland@falcot.com"})
        self.runner.step()
        fresh = DocumentCache(KeyValueStore(self.runner, "blocking"), "list", decode=lambda raw: set(raw or ()),
                              encode=sorted)
        loaded = fresh.load("joe@falcot.com")
        self.runner.step()
        self.assertEqual(self.successResultOf(loaded), {"roland@falcot.com"})

    def test_leastRecentlyUsedEvicted(self) -> None:
        """
        If more owners than max_owners are cached, the least recently used is dropped.
        """
        for owner in ("a@x", "b@x"):
            self.cache.save(owner, set())
        self.cache.peek("a@x")
        self.cache.save("c@x", set())
        self.assertIsNone(self.cache.peek("b@x"))
        self.assertIsNotNone(self.cache.peek("a@x"))

    def test_failedLoadFailsEveryWaiter(self) -> None:
        """
        If the read fails, every waiting load fails and nothing is cached.
        """
        first, second = self.cache.load("joe@falcot.com"), self.cache.load("joe@falcot.com")
        d, _, _ = self.runner.pending.pop()
        d.errback(RuntimeError("database gone"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, RuntimeError)
        self.assertIsNone(self.cache.peek("joe@falcot.com"))

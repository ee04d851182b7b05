"""The Directory service: thread-pool queries, the credential cache, and cross-process invalidation.

These run on trial's real reactor because the point is the real thread pool; the database is a
temporary SQLite file (the store itself is tested on PostgreSQL too).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from unirtc.directory import migrate, store
from unirtc.directory.engine import make_engine
from unirtc.directory.service import Directory, SchemaBehind


class DirectoryServiceTests(TestCase):
    def setUp(self) -> None:
        self.url = f"sqlite:///{Path(self.mktemp()).absolute()}.sqlite"
        self.directory = Directory(self.url, reactor, "unirtc-ctl -c x.ini db upgrade", poll_interval=0.05)
        self.directory.startService()
        self.addCleanup(self.directory.stopService)

    def other_process_write(self, operation, *args) -> None:
        """Write as unirtc-ctl does: its own engine, its own transaction."""
        engine = make_engine(self.url)
        with store.transaction(engine) as session:
            operation(session, *args)
        engine.dispose()

    @inlineCallbacks
    def wait_for(self, predicate, timeout: float = 5.0):
        for _ in range(int(timeout / 0.05)):
            if (yield predicate()):
                return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail("condition not reached in time")

    @inlineCallbacks
    def test_createVerifyAndCache(self):
        """
        If an account is created through the service, its password verifies, a wrong one does not,
        and a second credentials read is served from the cache (same object).
        """
        yield self.directory.create_account("joe", "falcot.com", "pw")
        self.assertTrue((yield self.directory.verify_password("joe", "falcot.com", "pw")))
        self.assertFalse((yield self.directory.verify_password("joe", "falcot.com", "PW")))
        self.assertFalse((yield self.directory.verify_password("ann", "falcot.com", "pw")))
        first = yield self.directory.credentials("joe", "falcot.com")
        second = self.directory.credentials("joe", "falcot.com")
        self.assertIsInstance(second, Deferred)
        self.assertIs(self.successResultOf(second), first)

    @inlineCallbacks
    def test_writesFromAnotherProcessReachTheServer(self):
        """
        If unirtc-ctl (another process) changes a password or disables an account, the running
        server stops accepting the old state within the poll interval.
        """
        yield self.directory.create_account("joe", "falcot.com", "old")
        self.assertTrue((yield self.directory.verify_password("joe", "falcot.com", "old")))
        self.other_process_write(store.set_password, "joe", "falcot.com", "new")
        yield self.wait_for(lambda: self.directory.verify_password("joe", "falcot.com", "new"))
        self.assertFalse((yield self.directory.verify_password("joe", "falcot.com", "old")))
        self.other_process_write(store.set_disabled, "joe", "falcot.com", True)
        yield self.wait_for(lambda: self.directory.credentials("joe", "falcot.com").addCallback(
            lambda c: c.disabled))
        self.assertFalse((yield self.directory.verify_password("joe", "falcot.com", "new")))

    @inlineCallbacks
    def test_unknownAccountCachedUntilCreatedElsewhere(self):
        """
        If an unknown account is looked up, the miss is cached; creating it from another process
        makes it appear.
        """
        self.assertIsNone((yield self.directory.credentials("ann", "falcot.com")))
        self.other_process_write(store.create_account, "ann", "falcot.com", "pw")
        yield self.wait_for(lambda: self.directory.credentials("ann", "falcot.com").addCallback(
            lambda c: c is not None))

    @inlineCallbacks
    def test_errorsArriveAsFailures(self):
        """
        If a write fails (duplicate account), the Deferred fails with the store's error and the
        service keeps working.
        """
        yield self.directory.create_account("joe", "falcot.com", "pw")
        yield self.assertFailure(self.directory.create_account("joe", "falcot.com", "pw"), store.AccountExists)
        yield self.assertFailure(self.directory.delete_account("nobody", "falcot.com"), store.NoSuchAccount)
        self.assertEqual([a.jid for a in (yield self.directory.accounts())], ["joe@falcot.com"])
        self.assertTrue((yield self.directory.ping()))


class SchemaCheckTests(TestCase):
    def test_behindSchemaRefusedWithCommand(self) -> None:
        """
        If the database has an alembic version table but is not at head, startService refuses
        with the command that fixes it.
        """
        url = f"sqlite:///{Path(self.mktemp()).absolute()}.sqlite"
        engine = make_engine(url)
        migrate.upgrade(engine)
        migrate.downgrade(engine)
        engine.dispose()
        directory = Directory(url, reactor, "unirtc-ctl -c /etc/unirtc/unirtc.ini db upgrade")
        error = self.assertRaises(SchemaBehind, directory.startService)
        self.assertIn("run: unirtc-ctl -c /etc/unirtc/unirtc.ini db upgrade", str(error))
        self.assertFalse(directory.running)

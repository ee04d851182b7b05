"""The directory as a Twisted service: every query runs on its own thread pool.

The reactor thread never waits for the database.  Credential reads (every login, every
REGISTER) are cached in-process; the cache is dropped on our own writes and whenever the
shared generation counter moves, which is how writes by ``unirtc-ctl`` in another process
reach a running server within ``poll_interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from unirtc.directory import store
from unirtc.directory.engine import make_engine
from unirtc.directory.migrate import schema_status, upgrade
from unirtc.directory.secrets import derive_scram, prepare_password, verify_scram_password
from unirtc.logging import get_logger

T = TypeVar("T")
log = get_logger("unirtc.directory")
_DECOY = derive_scram("sha256", "decoy password for unknown accounts")


class SchemaBehind(Exception):
    """The database needs ``unirtc-ctl db upgrade`` before this server version can use it."""


class Directory(Service):
    name = "directory"

    def __init__(
        self,
        url: str,
        reactor: Any,
        upgrade_command: str,
        poll_interval: float = 2.0,
        max_cached: int = 10000,
    ) -> None:
        self.url = url
        self.reactor = reactor
        self.upgrade_command = upgrade_command
        self.poll_interval = poll_interval
        self.max_cached = max_cached
        self.engine: Engine | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=4, name="unirtc-directory")
        self._cache: dict[tuple[str, str], store.Credentials | None] = {}
        self._epoch = 0
        self._generation = 0
        self._poller = LoopingCall(self._poll)
        self._poller.clock = reactor

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def startService(self) -> None:
        """Open the database (after twistd dropped privileges) and make sure its schema is ours.

        This runs before the reactor does, so blocking here delays no client.
        """
        self.engine = make_engine(self.url)
        status = schema_status(self.engine)
        if status.empty:
            log.info("Creating the directory database schema in {url}", url=self.display_url)
            upgrade(self.engine)
        elif not status.up_to_date:
            self.engine.dispose()
            raise SchemaBehind(
                f"the database schema at {self.display_url} is at revision "
                f"{', '.join(status.current) or 'none'} but this version needs "
                f"{', '.join(status.heads)}; run: {self.upgrade_command}"
            )
        with store.transaction(self.engine) as session:
            self._generation = store.get_generation(session)
        self._pool.start()
        self._poller.start(self.poll_interval, now=False)
        log.info("Directory open: {url}", url=self.display_url)
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        if self._poller.running:
            self._poller.stop()
        self._pool.stop()
        if self.engine is not None:
            self.engine.dispose()
        log.info("Directory closed")

    def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self.reactor, self._pool, function, *args)

    def run(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        """``operation(session, *args)`` in one transaction on the pool, for other modules' SQL.

        It does not touch the credential cache: use it for tables other than the accounts'.
        """

        def work() -> T:
            with store.transaction(self.engine) as session:
                return operation(session, *args)

        return self._run(work)

    def _write(self, operation: Callable[..., None], *args: Any) -> Deferred[None]:
        def work() -> None:
            with store.transaction(self.engine) as session:
                operation(session, *args)

        self.invalidate()
        d = self._run(work)
        d.addBoth(self._invalidate_after)
        return d

    def _invalidate_after(self, result: T) -> T:
        self.invalidate()
        return result

    def invalidate(self) -> None:
        """Forget cached credentials; reads in flight will not repopulate with stale data."""
        self._cache.clear()
        self._epoch += 1

    def _poll(self) -> Deferred[None]:
        def read() -> int:
            with store.transaction(self.engine) as session:
                return store.get_generation(session)

        def compare(generation: int) -> None:
            if generation != self._generation:
                self._generation = generation
                self.invalidate()

        d = self._run(read).addCallback(compare)
        d.addErrback(lambda f: log.failure("Polling the directory generation failed", f))
        return d

    def credentials(self, localpart: str, domain: str) -> Deferred[store.Credentials | None]:
        """Stored secrets for an account, or None if it does not exist."""
        key = (localpart, domain)
        if key in self._cache:
            return succeed(self._cache[key])
        epoch = self._epoch

        def read() -> store.Credentials | None:
            with store.transaction(self.engine) as session:
                return store.get_credentials(session, localpart, domain)

        def remember(credentials: store.Credentials | None) -> store.Credentials | None:
            if epoch == self._epoch:
                if len(self._cache) >= self.max_cached:
                    self._cache.clear()
                self._cache[key] = credentials
            return credentials

        return self._run(read).addCallback(remember)

    @inlineCallbacks
    def verify_password(self, localpart: str, domain: str, password: str):
        """True if the account exists, is enabled and ``password`` matches its SCRAM-SHA-256 secret."""
        credentials = yield self.credentials(localpart, domain)
        usable = credentials is not None and not credentials.disabled and "sha256" in credentials.scram
        # Unknown and disabled accounts cost the same PBKDF2 work, so timing does not tell
        # an attacker which accounts exist.
        secret = credentials.scram["sha256"] if usable else _DECOY

        def check() -> bool:
            try:
                return verify_scram_password(secret, prepare_password(password))
            except ValueError:
                return False

        matched = yield self._run(check)
        return usable and matched

    def create_account(self, localpart: str, domain: str, password: str) -> Deferred[None]:
        return self._write(store.create_account, localpart, domain, password)

    def set_password(self, localpart: str, domain: str, password: str) -> Deferred[None]:
        return self._write(store.set_password, localpart, domain, password)

    def set_disabled(self, localpart: str, domain: str, disabled: bool) -> Deferred[None]:
        return self._write(store.set_disabled, localpart, domain, disabled)

    def delete_account(self, localpart: str, domain: str) -> Deferred[None]:
        return self._write(store.delete_account, localpart, domain)

    def accounts(self, domain: str | None = None) -> Deferred[list[store.AccountInfo]]:
        def read() -> list[store.AccountInfo]:
            with store.transaction(self.engine) as session:
                return store.list_accounts(session, domain)

        return self._run(read)

    def ping(self) -> Deferred[bool]:
        """True when the database answers a trivial query (for health checks)."""
        def query() -> bool:
            with self.engine.connect() as connection:
                return connection.execute(text("SELECT 1")).scalar() == 1

        return self._run(query)

# -*- test-case-name: tests.unit.test_sip_bindings -*-
"""The location service (RFC 3261 §10.2): who is registered where, in memory, written through.

Routing reads bindings synchronously from memory (:meth:`BindingStore.lookup`), so the proxy
never waits for the database.  Every change is also written to the directory database in the
background (batched: all accounts changed while one write runs go in the next transaction), so
registrations survive a restart as Kamailio's usrloc does with a database behind it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from unirtc.directory.bindings_store import BindingRecord, load_bindings, replace_many
from unirtc.logging import get_logger

Address = tuple[str, int]
AOR = tuple[str, str]

log = get_logger("unirtc.sip.bindings")


def _clip(text: str | None, size: int) -> str | None:
    return None if text is None else text[:size]


@dataclass(frozen=True)
class Binding:
    """One registered contact of an account (the AOR is the account, not the SIP alias)."""

    aor: AOR
    contact: str  # the Contact URI as registered
    expires_at: float  # clock time (Unix seconds in the server)
    q: float
    call_id: str
    cseq: int
    instance: str | None  # +sip.instance (RFC 5626), unquoted, e.g. <urn:uuid:...>
    reg_id: int | None
    flow: str | None  # the transport's flow token when the REGISTER came over TCP/TLS
    source: Address | None  # where the REGISTER came from
    user_agent: str | None = None

    def expires_in(self, now: float) -> int:
        """Whole seconds left, as the 200 OK's ``expires`` parameter states it."""
        return max(0, int(self.expires_at - now + 0.5))

    def to_record(self) -> BindingRecord:
        """The row to store; informational fields are clipped to their columns, since one value
        too long would fail the whole batch it is written in (the registrar bounds the rest)."""
        host, port = self.source if self.source is not None else (None, None)
        return BindingRecord(
            localpart=self.aor[0], domain=self.aor[1], contact=self.contact,
            expires_at=self.expires_at, q=self.q, call_id=self.call_id, cseq=self.cseq,
            instance=self.instance, reg_id=self.reg_id, flow=_clip(self.flow, 255),
            source_host=_clip(host, 64), source_port=port, user_agent=_clip(self.user_agent, 255),
        )

    @classmethod
    def from_record(cls, record: BindingRecord) -> Binding:
        source = None
        if record.source_host is not None and record.source_port is not None:
            source = (record.source_host, record.source_port)
        return cls(
            aor=record.aor, contact=record.contact, expires_at=record.expires_at, q=record.q,
            call_id=record.call_id, cseq=record.cseq, instance=record.instance,
            reg_id=record.reg_id, flow=record.flow, source=source, user_agent=record.user_agent,
        )


class BindingTable:
    """The in-memory table: account -> its bindings (pure; the store adds the database)."""

    def __init__(self) -> None:
        self._by_aor: dict[AOR, tuple[Binding, ...]] = {}

    def __len__(self) -> int:
        return sum(len(bindings) for bindings in self._by_aor.values())

    def current(self, aor: AOR) -> list[Binding]:
        """Every binding held for ``aor``, expired ones not yet purged included."""
        return list(self._by_aor.get(aor, ()))

    def lookup(self, aor: AOR, now: float) -> list[Binding]:
        """Unexpired bindings, highest q first (registration order among equals)."""
        live = [b for b in self._by_aor.get(aor, ()) if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def replace(self, aor: AOR, bindings: Iterable[Binding]) -> None:
        kept = tuple(bindings)
        if kept:
            self._by_aor[aor] = kept
        else:
            self._by_aor.pop(aor, None)

    def purge(self, now: float) -> list[AOR]:
        """Drop expired bindings; returns the accounts that lost some."""
        changed = []
        for aor, bindings in list(self._by_aor.items()):
            live = [b for b in bindings if b.expires_at > now]
            if len(live) != len(bindings):
                self.replace(aor, live)
                changed.append(aor)
        return changed

    def all(self, now: float) -> list[Binding]:
        return [b for aor in sorted(self._by_aor) for b in self.lookup(aor, now)]


class BindingStore(Service):
    """The bindings every SIP component shares, as a service that loads and saves them.

    :param directory: the ``Directory`` service (its ``run``); None keeps bindings in memory only
    :param clock: an ``IReactorTime``; its ``seconds()`` must be wall-clock time when persisting
    :param purge_interval: seconds between sweeps of expired bindings (and retries of failed writes)

    Start it after the Directory: ``startService`` loads the stored bindings (``ready`` fires
    when they are in), ``stopService`` returns a Deferred that fires once pending writes are in.
    """

    name = "sip-bindings"

    def __init__(self, directory: Any = None, clock: Any = None, purge_interval: float = 30.0) -> None:
        self.directory = directory
        self.clock = clock
        self.table = BindingTable()
        self.ready: Deferred[None] = Deferred()
        if directory is None:
            self.ready.callback(None)
        self._dirty: dict[AOR, None] = {}
        self._waiting: list[Deferred[None]] = []
        self._writing: Deferred[None] | None = None
        self._purger = LoopingCall(self._sweep)
        if clock is not None:
            self._purger.clock = clock
        self.purge_interval = purge_interval

    # reads: synchronous, from memory

    def lookup(self, aor: AOR, now: float) -> list[Binding]:
        """The live bindings of ``aor``, highest q first; what the proxy forks to."""
        return self.table.lookup(aor, now)

    def current(self, aor: AOR) -> list[Binding]:
        return self.table.current(aor)

    def all(self, now: float) -> list[Binding]:
        return self.table.all(now)

    # writes: memory now, database in the background

    def update(self, aor: AOR, bindings: Iterable[Binding]) -> Deferred[None]:
        """Make ``bindings`` the account's bindings; fires when that state is stored."""
        self.table.replace(aor, bindings)
        return self._save([aor])

    def purge(self, now: float | None = None) -> Deferred[None]:
        """Drop expired bindings (memory and database) and retry writes that failed."""
        if now is None:
            now = self._now()
        changed = self.table.purge(now)
        if not changed and not self._dirty:
            return succeed(None)
        return self._save(changed)

    def _sweep(self) -> None:
        """The periodic purge; a failed write is logged by ``_written`` and must not stop the loop."""
        self.purge().addErrback(lambda _: None)

    def _now(self) -> float:
        if self.clock is None:
            raise RuntimeError("BindingStore needs a clock to purge or save")
        return float(self.clock.seconds())

    def _save(self, aors: list[AOR]) -> Deferred[None]:
        if self.directory is None:
            return succeed(None)
        for aor in aors:
            self._dirty[aor] = None
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        if self._writing is None:
            self._write()
        return waiter

    def _write(self) -> None:
        now = self._now()
        changes = {aor: [b.to_record() for b in self.table.lookup(aor, now)] for aor in self._dirty}
        self._dirty.clear()
        waiters, self._waiting = self._waiting, []
        self._writing = self.directory.run(replace_many, changes)
        self._writing.addBoth(self._written, changes, waiters)

    def _written(self, result: Any, changes: dict[AOR, Any], waiters: list[Deferred[None]]) -> None:
        self._writing = None
        if isinstance(result, Failure):
            log.failure("Storing SIP bindings failed; retrying at the next purge", result)
            for aor in changes:
                self._dirty.setdefault(aor, None)
            for waiter in waiters:
                waiter.errback(result)
        else:
            for waiter in waiters:
                waiter.callback(None)
        if self._waiting:  # requests that arrived during this write: one more transaction
            self._write()

    # the service

    def startService(self) -> None:
        super().startService()
        if self.directory is not None and not self.ready.called:
            d = self.directory.run(load_bindings, self._now())
            d.addCallback(self._loaded).addErrback(self._load_failed)
        if self.clock is not None and self.purge_interval > 0:
            self._purger.start(self.purge_interval, now=False)

    def _loaded(self, records: list[BindingRecord]) -> None:
        grouped: dict[AOR, list[Binding]] = {}
        for record in records:
            grouped.setdefault(record.aor, []).append(Binding.from_record(record))
        for aor, bindings in grouped.items():
            if not self.table.current(aor):  # a REGISTER handled meanwhile is newer
                self.table.replace(aor, bindings)
        log.info("Loaded {count} SIP bindings", count=len(records))
        self.ready.callback(None)

    def _load_failed(self, failure: Failure) -> None:
        log.failure("Loading SIP bindings failed; starting with none", failure)
        self.ready.callback(None)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._purger.running:
            self._purger.stop()
        if self.directory is None or (self._writing is None and not self._dirty):
            return succeed(None)
        return self._save([]).addErrback(lambda _: None)

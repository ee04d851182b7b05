"""The binding store as a service: write-through batching, and bindings surviving a restart.

The restart test runs the real Directory on trial's reactor (its thread pool is the point); the
batching tests use a directory whose writes the test completes by hand.
"""

from __future__ import annotations

import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from unirtc.directory.bindings_store import load_bindings
from unirtc.directory.service import Directory
from unirtc.sip.bindings import Binding, BindingStore

JOE = ("joe", "falcot.com")
ANN = ("ann", "falcot.com")


def binding(contact: str, expires_at: float, aor=JOE, **kwargs) -> Binding:
    fields = dict(q=1.0, call_id="c", cseq=1, instance=None, reg_id=None, flow=None,
                  source=("192.0.2.1", 5060))
    fields.update(kwargs)
    return Binding(aor, contact, expires_at, **fields)


class _ManualDirectory:
    """Each run() returns a Deferred the test fires; loads return nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, tuple, Deferred]] = []

    def run(self, operation, *args):
        if operation is load_bindings:
            return succeed([])
        d: Deferred = Deferred()
        self.calls.append((operation, args, d))
        return d


class WriteThroughTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.directory = _ManualDirectory()
        self.store = BindingStore(self.directory, self.clock)
        self.store.startService()

    def test_changesDuringAWriteGoInTheNextOne(self) -> None:
        """
        If accounts change while a write is running, memory changes at once, and they are all
        written together in the next transaction with their latest state.
        """
        first = self.store.update(JOE, [binding("sip:a@h", 2000)])
        self.assertEqual([b.contact for b in self.store.lookup(JOE, 1000)], ["sip:a@h"])
        second = self.store.update(ANN, [binding("sip:b@h", 2000, ANN)])
        third = self.store.update(JOE, [binding("sip:c@h", 2000)])
        self.assertEqual(len(self.directory.calls), 1)
        self.assertNoResult(first)
        self.directory.calls[0][2].callback(None)
        self.successResultOf(first)
        self.assertNoResult(second)
        [(_, (changes,), d)] = self.directory.calls[1:]
        self.assertEqual({aor: [r.contact for r in records] for aor, records in changes.items()},
                         {ANN: ["sip:b@h"], JOE: ["sip:c@h"]})
        d.callback(None)
        self.successResultOf(second)
        self.successResultOf(third)

    def test_purgeWritesExpiredAway(self) -> None:
        """
        If a binding expires, the periodic purge drops it and writes the account's new
        (empty) state.
        """
        self.store.update(JOE, [binding("sip:a@h", 1010)])
        self.directory.calls[0][2].callback(None)
        self.clock.advance(30)
        self.assertEqual(len(self.store.table), 0)
        [(_, (changes,), _)] = self.directory.calls[1:]
        self.assertEqual(changes, {JOE: []})

    def test_stopWaitsForPendingWrites(self) -> None:
        """
        If the service stops while a write is pending, stopService's Deferred fires only after
        it (and the purge loop stops).
        """
        self.store.update(JOE, [binding("sip:a@h", 2000)])
        stopped = self.store.stopService()
        self.assertNoResult(stopped)
        while pending := [d for _, _, d in self.directory.calls if not d.called]:
            self.assertNoResult(stopped)
            pending[0].callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RestartTests(TestCase):
    """The real Directory on a temporary SQLite file, real thread pool."""

    def setUp(self) -> None:
        self.url = f"sqlite:///{Path(self.mktemp()).absolute()}.sqlite"
        self.directory = Directory(self.url, reactor, "unirtc-ctl db upgrade", poll_interval=60)
        self.directory.startService()
        self.addCleanup(self.directory.stopService)

    @inlineCallbacks
    def test_bindingsSurviveARestart(self):
        """
        If bindings are stored and the store is stopped and a new one started on the same
        database, the live bindings are back with every field, and expired ones are not.
        """
        yield self.directory.create_account("joe", "falcot.com", "pw")
        now = time.time()
        store = BindingStore(self.directory, reactor)
        store.startService()
        yield store.ready
        live = binding("sip:joe@192.0.2.10:5062", now + 3600, q=0.7, call_id="abc", cseq=7,
                       instance="<urn:uuid:1>", reg_id=1, flow="tcp:x", user_agent="baresip")
        yield store.update(JOE, [live, binding("sip:gone@h", now + 0.5)])
        yield store.stopService()
        yield deferLater(reactor, 0.6, lambda: None)
        again = BindingStore(self.directory, reactor)
        again.startService()
        self.addCleanup(again.stopService)
        yield again.ready
        [restored] = again.lookup(JOE, time.time())
        self.assertEqual(restored.contact, live.contact)
        self.assertEqual((restored.q, restored.call_id, restored.cseq, restored.instance,
                          restored.reg_id, restored.flow, restored.source, restored.user_agent),
                         (0.7, "abc", 7, "<urn:uuid:1>", 1, "tcp:x", ("192.0.2.1", 5060), "baresip"))
        self.assertAlmostEqual(restored.expires_at, live.expires_at, places=3)
        self.assertEqual(len(again.table), 1)

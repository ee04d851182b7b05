# -*- test-case-name: tests.protocol.test_muc_plugin -*-
"""The MUC service as the router sees it: an in-process component for the service domain.

``MucComponent`` takes every stanza the router hands to the domain, runs it through the
sans-I/O ``MucService`` with the clock's time, routes what comes out, and hands room documents
that changed to ``RoomStore``. Stanzas are processed one at a time, in arrival order: a
stanza the router bounces straight back while a batch is being routed waits its turn, so a
room never sees its own output half-sent. Until persistent rooms are loaded, stanzas wait.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.muc.service import MucService
from unirtc.xmpp.events import bounce
from unirtc.xmpp.jid import JID
from unirtc.xmpp.stanzas import StanzaError

log = get_logger("unirtc.muc")


class KeyValue(Protocol):
    """The part of ``unirtc.storage.KeyValueStore`` the rooms use."""

    def items(self, owner: str) -> Deferred[dict[str, Any]]: ...

    def set(self, owner: str, key: str, value: Any | None) -> Deferred[None]: ...


class RoomStore:
    """Persistent rooms as one JSON document per room: owner = service domain, key = room name.

    One owner keeps every room of the service loadable with a single ``items`` call, and the
    store runs one owner's writes in order, so the last document written is the last one given.
    """

    def __init__(self, kv: KeyValue, domain: str) -> None:
        self.kv = kv
        self.domain = domain

    def load(self) -> Deferred[dict[str, Any]]:
        return self.kv.items(self.domain)

    def write(self, changes: dict[str, dict[str, Any] | None]) -> None:
        for name, document in changes.items():
            d = maybeDeferred(self.kv.set, self.domain, name, document)
            d.addErrback(lambda f, name=name: log.failure("Could not store room {room}", f, room=name))


class MucComponent:
    """A ``LocalSession`` of kind component (see ``unirtc.xmpp.router``) serving one MUC domain."""

    kind = "component"
    available = False
    priority = 0
    presence = None

    def __init__(self, service: MucService, router: Any, clock: Any, store: RoomStore | None = None) -> None:
        self.service = service
        self.jid = service.jid
        self.router = router
        self.clock = clock
        self.store = store
        self.data: dict[str, Any] = {}
        self.ready = store is None
        self._queue: deque[tuple[str, Any]] = deque()
        self._busy = False

    # -- what the router calls ------------------------------------------------------------------

    def deliver(self, element: domish.Element) -> None:
        self._queue.append(("stanza", element))
        self._run()

    def close(self, condition: str, text: str | None = None) -> None:
        """Nothing to close: the component lives as long as the plugin."""

    # -- what the plugin calls ------------------------------------------------------------------

    def session_ended(self, jid: JID) -> None:
        self._queue.append(("ended", jid))
        self._run()

    def start(self) -> Deferred[None]:
        """Load the persistent rooms, then let waiting stanzas through."""
        if self.store is None:
            return succeed(None)

        def restore(documents: dict[str, Any]) -> None:
            for name, document in sorted(documents.items()):
                try:
                    self.service.restore(name, document)
                except ValueError as e:
                    log.error("Skipped a stored room: {problem}", problem=str(e))
            log.info("{count} persistent rooms loaded on {domain}", count=len(self.service.rooms),
                     domain=self.service.domain)

        def failed(failure: Failure) -> None:
            log.failure("Could not load the persistent rooms of {domain}; serving without them",
                        failure, domain=self.service.domain)

        def open_doors(_: object) -> None:
            self.ready = True
            self._run()

        return self.store.load().addCallbacks(restore, failed).addBoth(open_doors)

    def shutdown(self) -> None:
        """Occupants hear that the service is going away (status 332)."""
        self._queue.clear()
        for element in self.service.shutdown():
            self._send(element)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        if self._busy or not self.ready:
            return
        self._busy = True
        try:
            while self._queue:
                kind, value = self._queue.popleft()
                self._process(kind, value)
        finally:
            self._busy = False

    def _process(self, kind: str, value: Any) -> None:
        try:
            if kind == "stanza":
                out = self.service.handle(value, self.clock.seconds())
            else:
                out = self.service.session_ended(value)
        except Exception:
            log.failure("The MUC service failed on a {kind}", kind=kind)
            if kind == "stanza":
                bounce(self.router, value, StanzaError("internal-server-error"))
            return
        if self.store is not None:
            changes = self.service.take_changes()
            if changes:
                self.store.write(changes)
        for element in out:
            self._send(element)

    def _send(self, element: domish.Element) -> None:
        try:
            self.router.route(element)
        except Exception:
            log.failure("Routing a MUC stanza failed")

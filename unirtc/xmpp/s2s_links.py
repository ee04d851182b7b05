# -*- test-case-name: tests.protocol.test_s2s_links -*-
"""Outgoing federation links on demand: one per (our domain, remote domain), reused, closed when idle.

The router hands every stanza for a domain it does not serve to ``route/remote``;
``LinkManager.route_remote`` puts it on the link for its (from, to) domain pair, making the
link if there is none. A new link resolves the remote domain (``resolver.py``), tries each
target in order, and queues stanzas until a stream is authenticated (``s2s_out.py``), then
sends them in order. If no target works, or setup takes longer than ``setup_timeout``, the
queued stanzas are bounced to their senders with ``remote-server-not-found`` or
``remote-server-timeout``. Every attempt, success, refusal and closure is logged.

Incoming sessions also come here to check a dialback key with the claimed domain's server
(``verify``): the ``<db:verify/>`` goes out on our link to that domain as soon as its stream
is established, before the link itself is authenticated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.xmpp.dialback import Dialback
from unirtc.xmpp.events import StanzaEvent, bounce, notify
from unirtc.xmpp.resolver import ResolutionError, S2SResolver, Target
from unirtc.xmpp.s2s import NS_SERVER, Federation, LinkEvent
from unirtc.xmpp.s2s_in import IncomingSession
from unirtc.xmpp.s2s_out import OutgoingSession
from unirtc.xmpp.stanzas import StanzaError
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.s2s")

SETUP_TIMEOUT = 60.0
IDLE_TIMEOUT = 600.0
MAX_QUEUE = 10_000
# connect(target, remote_domain, factory) -> Deferred firing with the connected protocol
Connector = Callable[[Target, str, Factory], "Deferred[Any]"]


@dataclass(frozen=True)
class LinkStatus:
    """One line of ``unirtc-ctl s2s``-style output."""

    direction: str
    local: str
    remote: str
    state: str
    security: str
    queued: int
    peer: str


@dataclass
class _Verify:
    request: Dialback
    answer: Deferred[str]
    sent: bool = False


class OutgoingLink:
    """Stanzas from ``local`` to ``remote``: queued while resolving and connecting, then streamed."""

    def __init__(self, manager: LinkManager, local: str, remote: str) -> None:
        self.manager = manager
        self.local = local
        self.remote = remote
        self.name = f"{local}->{remote}"
        self.state = "resolving"
        self.queue: deque[domish.Element] = deque()
        self.verifies: list[_Verify] = []
        self.session: OutgoingSession | None = None
        self.targets: list[Target] = []
        self.attempts = 0
        self.sent = 0
        self.condition = "remote-server-not-found"
        self.reason = "no attempt made"
        self.connecting: Deferred[Any] | None = None
        clock = manager.federation.clock
        self.last_used = clock.seconds()
        self._deadline: IDelayedCall | None = clock.callLater(manager.setup_timeout, self._timed_out)
        self._idle: IDelayedCall | None = None

    @property
    def done(self) -> bool:
        return self.state in ("failed", "closed")

    def send(self, stanza: domish.Element) -> None:
        self.last_used = self.manager.federation.clock.seconds()
        if self.state == "ready" and self.session is not None:
            self.sent += 1
            self.session.send(stanza)
        elif len(self.queue) >= self.manager.max_queue:
            bounce(self.manager.federation.router, stanza,
                   StanzaError("resource-constraint", text=f"too many stanzas waiting for {self.remote}"))
        else:
            self.queue.append(stanza)

    def verify(self, request: Dialback) -> Deferred[str]:
        pending = _Verify(request, Deferred())
        self.verifies.append(pending)
        if self.session is not None and self.session.established:
            self.session.send_dialback(request)
            pending.sent = True
        return pending.answer

    # -- what the session reports (s2s_out.LinkCallbacks) ----------------------------------------

    def session_established(self, session: OutgoingSession) -> None:
        if session is not self.session:
            return
        for pending in self.verifies:
            if not pending.sent:
                session.send_dialback(pending.request)
                pending.sent = True

    def session_ready(self, session: OutgoingSession) -> None:
        if session is not self.session or self.done:
            return
        self.state = "ready"
        self._cancel_deadline()
        log.info("s2s {name} outgoing link ready via {target} ({security}); sending {n} queued stanzas",
                 name=self.name, target=str(session.target), security=str(session.security), n=len(self.queue))
        while self.queue and not session.ended:
            self.sent += 1
            session.send(self.queue.popleft())
        self._schedule_idle(self.manager.idle_timeout)
        notify(self.manager.federation.bus, "s2s-ready",
               LinkEvent(self.local, self.remote, "outgoing", session.security))

    def session_failed(self, session: OutgoingSession, reason: str, final: bool) -> None:
        if session is not self.session or self.done:
            return
        self.session = None
        self.reason = reason
        self._answer_verifies_sent("remote-connection-failed")
        log.warn("s2s {name}: attempt {n} via {target} failed: {reason}",
                 name=self.name, n=self.attempts, target=str(session.target), reason=reason)
        if final:
            self.fail("remote-server-not-found", reason)
        else:
            self.manager._next_target(self)

    def session_closed(self, session: OutgoingSession, reason: str) -> None:
        if session is not self.session:
            return
        log.info("s2s {name} outgoing link closed after {n} stanzas: {reason}", name=self.name, n=self.sent,
                 reason=reason)
        self.close()

    def verify_answered(self, answer: Dialback) -> None:
        for pending in self.verifies:
            request = pending.request
            if (request.stream_id, request.sender, request.target) == (answer.stream_id, answer.target, answer.sender):
                self.verifies.remove(pending)
                pending.answer.callback(answer.error if answer.type == "error" else (answer.type or "invalid"))
                return
        log.info("s2s {name}: ignored an answer to a dialback verification we did not ask for", name=self.name)

    # -- ending --------------------------------------------------------------------------------

    def fail(self, condition: str, reason: str) -> None:
        """Give up: bounce what is queued with ``condition``, answer pending verifications."""
        if self.done:
            return
        self.state = "failed"
        self._cancel_deadline()
        if self.connecting is not None:
            self.connecting.cancel()
        log.warn("s2s {name}: giving up after {n} attempt(s): {reason}; bouncing {q} stanzas with {condition}",
                 name=self.name, n=self.attempts, reason=reason, q=len(self.queue), condition=condition)
        queued, self.queue = self.queue, deque()
        for stanza in queued:
            bounce(self.manager.federation.router, stanza, StanzaError(condition, text=f"{self.remote}: {reason}"))
        self._answer_verifies_sent(condition, every=True)
        session, self.session = self.session, None
        if session is not None:
            session.close()
        self.manager._forget(self)

    def close(self) -> None:
        """Close a link that did its work (idle, peer closed it, shutdown)."""
        if self.done:
            return
        self.state = "closed"
        self._cancel_deadline()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._answer_verifies_sent("remote-connection-failed", every=True)
        session, self.session = self.session, None
        if session is not None:
            session.close()
        self.manager._forget(self)

    def _answer_verifies_sent(self, condition: str, every: bool = False) -> None:
        """Verifications sent on a stream that is gone will never be answered: say so."""
        for pending in list(self.verifies):
            if pending.sent or every:
                self.verifies.remove(pending)
                pending.answer.callback(condition)

    def _timed_out(self) -> None:
        self._deadline = None
        self.fail("remote-server-timeout", f"no authenticated stream within {self.manager.setup_timeout:g} s "
                  f"(last: {self.reason})")

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _schedule_idle(self, delay: float) -> None:
        self._idle = self.manager.federation.clock.callLater(delay, self._check_idle)

    def _check_idle(self) -> None:
        idle = self.manager.federation.clock.seconds() - self.last_used
        if idle + 1e-9 >= self.manager.idle_timeout and not self.verifies:
            log.info("s2s {name} outgoing link idle for {idle:.0f} s; closing it", name=self.name, idle=idle)
            self.close()
        else:
            self._schedule_idle(max(self.manager.idle_timeout - idle, 1.0))


class _LinkFactory(Factory):
    """Builds the stream of one attempt; its session reports to the link."""

    noisy = False  # one line per attempt is logged by the link manager already

    def __init__(self, manager: LinkManager, link: OutgoingLink, target: Target) -> None:
        self.manager = manager
        self.link = link
        self.target = target

    def buildProtocol(self, addr: Any) -> XmppStream:
        stream = XmppStream(self._session, self.manager.federation.clock, namespace=NS_SERVER,
                            max_stanza=self.manager.max_stanza, registry=self.manager.streams)
        stream.factory = self
        return stream

    def _session(self, stream: XmppStream) -> OutgoingSession:
        session = OutgoingSession(self.manager.federation, self.link, self.target, stream)
        self.link.session = session
        return session


class LinkManager:
    """All federation links of this server; ``route_remote`` is the ``route/remote`` hook."""

    def __init__(self, federation: Federation, resolver: S2SResolver, connect: Connector, *,
                 setup_timeout: float = SETUP_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 max_queue: int = MAX_QUEUE, max_stanza: int = 262144,
                 streams: set[XmppStream] | None = None) -> None:
        self.federation = federation
        self.resolver = resolver
        self.connect = connect
        self.setup_timeout = setup_timeout
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self.max_stanza = max_stanza
        self.streams = streams
        self.outgoing: dict[tuple[str, str], OutgoingLink] = {}
        self.ready_incoming: set[IncomingSession] = set()
        federation.links = self

    def route_remote(self, event: StanzaEvent) -> bool:
        """Take every stanza for a remote domain; the sender must be one of our domains."""
        stanza, sender, to = event.stanza, event.sender, event.to
        if to is None or sender is None or not self.federation.serves(sender.domain):
            log.warn("s2s: dropped a {kind} to {to} from {sender}, which is not one of our domains",
                     kind=stanza.name, to=str(to), sender=str(sender))
            return True
        link, new = self._link(sender.domain, to.domain)
        link.send(stanza)
        if new:
            self._start(link)
        return True

    def verify(self, local: str, remote: str, stream_id: str, key: str) -> Deferred[str]:
        """Ask ``remote``'s server whether ``key`` is its key for a stream we gave the id
        ``stream_id``; fires with "valid", "invalid" or a stanza error condition."""
        link, new = self._link(local, remote)
        answer = link.verify(Dialback("verify", local, remote, key, stream_id))
        if new:
            self._start(link)
        return answer

    def _link(self, local: str, remote: str) -> tuple[OutgoingLink, bool]:
        """The link for the pair, and whether it is new (its caller then queues, then starts it)."""
        link = self.outgoing.get((local, remote))
        if link is not None:
            return link, False
        link = self.outgoing[(local, remote)] = OutgoingLink(self, local, remote)
        return link, True

    def _start(self, link: OutgoingLink) -> None:
        log.info("s2s {name}: new outgoing link; resolving {remote}", name=link.name, remote=link.remote)
        self.resolver.resolve(link.remote).addCallbacks(self._resolved, self._unresolved,
                                                        callbackArgs=(link,), errbackArgs=(link,))

    def _resolved(self, targets: list[Target], link: OutgoingLink) -> None:
        link.targets = list(targets)
        self._next_target(link)

    def _unresolved(self, failure: Failure, link: OutgoingLink) -> None:
        if not failure.check(ResolutionError):
            log.failure("s2s {name}: resolving failed", failure, name=link.name)
        link.fail("remote-server-not-found", f"cannot resolve {link.remote}: {failure.getErrorMessage()}")

    def _next_target(self, link: OutgoingLink) -> None:
        if link.done:
            return
        if not link.targets:
            link.fail(link.condition, link.reason)
            return
        target = link.targets.pop(0)
        link.attempts += 1
        link.state = "connecting"
        log.info("s2s {name}: attempt {n}: connecting to {target}", name=link.name, n=link.attempts,
                 target=str(target))
        connecting = link.connecting = self.connect(target, link.remote, _LinkFactory(self, link, target))
        connecting.addCallbacks(self._connected, self._not_connected, callbackArgs=(link,),
                                errbackArgs=(link, target))

    def _connected(self, protocol: Any, link: OutgoingLink) -> None:
        link.connecting = None

    def _not_connected(self, failure: Failure, link: OutgoingLink, target: Target) -> None:
        link.connecting = None
        if link.done:
            return
        timeout = failure.check(ConnectTimeout) is not None
        link.condition = "remote-server-timeout" if timeout else "remote-server-not-found"
        link.reason = f"cannot connect to {target}: {failure.getErrorMessage()}"
        log.warn("s2s {name}: attempt {n} failed: {reason}", name=link.name, n=link.attempts, reason=link.reason)
        self._next_target(link)

    def _forget(self, link: OutgoingLink) -> None:
        if self.outgoing.get((link.local, link.remote)) is link:
            del self.outgoing[(link.local, link.remote)]

    # -- incoming sessions (for status) ------------------------------------------------------------

    def incoming_ready(self, session: IncomingSession) -> None:
        self.ready_incoming.add(session)

    def incoming_closed(self, session: IncomingSession) -> None:
        self.ready_incoming.discard(session)

    def status(self) -> list[LinkStatus]:
        """Every link with its security and queue, outgoing first."""
        lines = []
        for link in self.outgoing.values():
            session = link.session
            lines.append(LinkStatus("outgoing", link.local, link.remote, link.state,
                                    str(session.security) if session is not None else "-", len(link.queue),
                                    str(session.target) if session is not None else "-"))
        for incoming in self.ready_incoming:
            for remote in sorted(incoming.authenticated):
                lines.append(LinkStatus("incoming", incoming.local or "", remote, "ready", str(incoming.security),
                                        0, incoming.stream.peer_host))
        return lines

    def close_all(self) -> None:
        for link in list(self.outgoing.values()):
            if link.state == "ready":
                link.close()
            else:
                link.fail("remote-server-timeout", "the server is stopping")

# -*- test-case-name: tests.protocol.test_router -*-
"""Stanza routing (RFC 6120 §10, RFC 6121 §8.5): local sessions by full JID, components, bounces.

Every stanza, whoever sent it, goes through ``Router.route``. Sessions have already stamped
their own address on ``from`` (a client cannot choose it). The router fires the plugin events
(``pre-message/bare`` for what a local client sends, ``message/bare`` where it arrives...)
and, when no plugin takes a stanza, applies RFC 6121 §8.5: to a full JID it goes to that
resource; to a bare JID, messages go to the available resources of highest non-negative
priority, presence to all available resources, IQs are answered by the server. Stanzas for
domains this server does not serve get ``remote-server-not-found`` until s2s hooks ``route/remote``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.plugin import HookBus
from unirtc.xmpp.events import StanzaEvent, bounce, dispatch
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.stanzas import StanzaError, first_child, stanza_type

log = get_logger("unirtc.xmpp.router")

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


class LocalSession(Protocol):
    """A bound client resource or a connected component, as the router sees it.

    ``kind`` is "c2s" or "component". ``available``/``priority``/``presence`` reflect the last
    broadcast presence (RFC 6121 §4.7.2.3); ``data`` is free for plugins (carbons, roster...).
    """

    kind: str
    jid: JID
    available: bool
    priority: int
    presence: domish.Element | None
    data: dict[str, Any]

    def deliver(self, element: domish.Element) -> None: ...

    def close(self, condition: str, text: str | None = None) -> None: ...


class Router:
    """The local routing table and RFC 6121 delivery rules, shared by every listener.

    ``account_exists(localpart, domain)`` answers whether an enabled account exists (it is
    asked only when a user has no session, and the directory caches it).
    """

    def __init__(
        self,
        hosts: set[str],
        bus: HookBus,
        account_exists: Callable[[str, str], Deferred[bool] | bool],
    ) -> None:
        self.hosts = set(hosts)
        self.bus = bus
        self.account_exists = account_exists
        self._sessions: dict[JID, dict[str, LocalSession]] = {}
        self.components: dict[str, LocalSession] = {}
        # JID preparation (PRECIS, IDNA) costs ~20 us; the same few addresses recur constantly.
        self._parse = lru_cache(maxsize=4096)(JID.parse)

    # -- the routing table ------------------------------------------------------------------

    def bind(self, session: LocalSession) -> LocalSession | None:
        """Make ``session`` reachable at ``session.jid``; return the session it displaced.

        RFC 6120 §7.7.2.2: the server may terminate the older session; the caller sends it a
        ``conflict`` stream error.
        """
        resources = self._sessions.setdefault(session.jid.bare, {})
        resource = session.jid.resource or ""
        old = resources.get(resource)
        resources[resource] = session
        return old if old is not session else None

    def unbind(self, session: LocalSession) -> None:
        """Forget ``session`` unless a newer session has taken its full JID."""
        resources = self._sessions.get(session.jid.bare)
        if resources is None:
            return
        resource = session.jid.resource or ""
        if resources.get(resource) is session:
            del resources[resource]
            if not resources:
                del self._sessions[session.jid.bare]

    def session(self, full: JID) -> LocalSession | None:
        return self._sessions.get(full.bare, {}).get(full.resource or "")

    def sessions_of(self, bare: JID) -> list[LocalSession]:
        """Every bound resource of an account (available or not)."""
        return list(self._sessions.get(bare.bare, {}).values())

    def all_sessions(self) -> Iterator[LocalSession]:
        for resources in list(self._sessions.values()):
            yield from list(resources.values())

    def add_component(self, domain: str, session: LocalSession) -> LocalSession | None:
        old = self.components.get(domain)
        self.components[domain] = session
        return old if old is not session else None

    def remove_component(self, domain: str, session: LocalSession) -> None:
        if self.components.get(domain) is session:
            del self.components[domain]

    # -- routing ------------------------------------------------------------------------------

    def route(self, stanza: domish.Element, origin: LocalSession | None = None) -> None:
        """Send ``stanza`` on its way; errors come back to its sender as stanza errors."""
        try:
            to = self._address(stanza, "to")
        except StanzaError as error:
            bounce(self, stanza, error)
            return
        if to is None:
            if origin is None or origin.kind != "c2s":
                log.debug("Dropped a {kind} with no recipient", kind=stanza.name)
                return
            to = origin.jid.bare  # RFC 6120 §10.3: no 'to' means the sender's own account
        if origin is not None and origin.kind == "c2s" and stanza.getAttribute("from") == origin.jid.full:
            sender: JID | None = origin.jid
        else:
            sender = self._address(stanza, "from", trusted=True)
        event = StanzaEvent(stanza, origin, self, to, sender)
        if origin is not None and origin.kind == "c2s":
            if dispatch(self.bus, f"pre-{stanza.name}/{_target(to)}", event):
                return
        self.forward(event)

    def forward(self, event: StanzaEvent) -> None:
        """Deliver an event past its ``pre-`` hooks (plugins that consumed one may call this)."""
        to = event.to
        assert to is not None
        if to.domain in self.hosts:
            self._local(event)
        elif to.domain in self.components:
            self.components[to.domain].deliver(event.stanza)
        elif not dispatch(self.bus, "route/remote", event):
            bounce(self, event.stanza, StanzaError("remote-server-not-found"))

    def _address(self, stanza: domish.Element, attribute: str, trusted: bool = False) -> JID | None:
        value = stanza.getAttribute(attribute)
        if value is None:
            return None
        try:
            return self._parse(value)
        except InvalidJID as e:
            if trusted:
                return None
            raise StanzaError("jid-malformed", text=str(e)) from None

    def _local(self, event: StanzaEvent) -> None:
        """Fire the arrival events, then RFC 6121 §8.5's defaults for local addresses."""
        stanza, to = event.stanza, event.to
        assert to is not None
        target = _target(to)
        if stanza.name == "iq" and target != "full":
            kind = stanza_type(stanza)
            payload = first_child(stanza)
            if kind in ("get", "set") and payload is not None:
                if dispatch(self.bus, f"iq-{kind}/{target}/{payload.uri}:{payload.name}", event):
                    return
        if dispatch(self.bus, f"{stanza.name}/{target}", event):
            return
        if target == "host":
            self._to_host(event)
        elif target == "bare":
            self._to_bare(event)
        else:
            self._to_full(event)

    def _to_host(self, event: StanzaEvent) -> None:
        """RFC 6121 §8.5.1 applies to the server itself: unknown IQs are service-unavailable."""
        if event.stanza.name == "iq" and stanza_type(event.stanza) in ("get", "set"):
            bounce(self, event.stanza, StanzaError("service-unavailable"))

    def _to_full(self, event: StanzaEvent) -> None:
        """RFC 6121 §8.5.3."""
        stanza, to = event.stanza, event.to
        assert to is not None
        session = self.session(to)
        kind = stanza_type(stanza)
        if session is not None:
            if not (stanza.name == "presence" and kind == "probe"):
                session.deliver(stanza)
            return
        if stanza.name == "message":
            if kind == "groupchat":
                bounce(self, stanza, StanzaError("service-unavailable"))
            elif kind != "error":
                self._to_bare(event)  # §8.5.3.2.1: treat as addressed to the bare JID
        elif stanza.name == "presence":
            if kind in SUBSCRIPTION_TYPES:
                self._to_bare(event)  # §8.5.3.2.2
        elif kind in ("get", "set"):
            bounce(self, stanza, StanzaError("service-unavailable"))

    def _to_bare(self, event: StanzaEvent) -> None:
        """RFC 6121 §8.5.2, for an account that has bound resources or may exist."""
        stanza, to = event.stanza, event.to
        assert to is not None
        kind = stanza_type(stanza)
        if stanza.name == "iq":
            if kind in ("get", "set"):
                bounce(self, stanza, StanzaError("service-unavailable"))
            return
        available = [s for s in self.sessions_of(to) if s.available]
        if stanza.name == "presence":
            if kind == "probe":
                return  # §4.3.2: the server answers probes (the presence plugin); clients never see them
            for session in available:  # §8.5.2.1.2 (subscriptions: until a roster plugin)
                session.deliver(stanza)
            return
        if kind == "groupchat":
            bounce(self, stanza, StanzaError("service-unavailable"))
            return
        if kind == "error":
            return
        candidates = [s for s in available if s.priority >= 0]
        if kind == "headline":
            for session in candidates:
                session.deliver(stanza)
            return
        if candidates:
            best = max(s.priority for s in candidates)
            for session in candidates:  # §8.5.2.1.1: the highest-priority resource(s)
                if session.priority == best:
                    session.deliver(stanza)
            return
        self._offline(event)

    def _offline(self, event: StanzaEvent) -> None:
        """No resource can take a normal or chat message: offer it to ``message/offline``."""
        to = event.to
        assert to is not None and to.local is not None
        if self._sessions.get(to.bare):
            exists: Deferred[bool] = maybeDeferred(lambda: True)
        else:
            exists = maybeDeferred(self.account_exists, to.local, to.domain)

        def decide(found: bool) -> None:
            if found and dispatch(self.bus, "message/offline", event):
                return
            bounce(self, event.stanza, StanzaError("service-unavailable"))

        exists.addCallback(decide)
        exists.addErrback(lambda f: log.failure("Looking up {jid} failed", f, jid=str(to.bare)))


def _target(to: JID) -> str:
    """The event suffix for an address: host, bare or full (Prosody's names)."""
    if to.local is None:
        return "host" if to.resource is None else "full"
    return "bare" if to.resource is None else "full"

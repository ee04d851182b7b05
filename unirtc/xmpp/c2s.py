# -*- test-case-name: tests.protocol.test_c2s -*-
"""Client sessions (RFC 6120 §4-§7, §10): stream headers, features, STARTTLS, SASL, resource
binding, then stanzas stamped with the client's full JID and handed to the router.

A ``ClientSession`` is driven by an ``XmppStream`` (stream.py) and is, once bound, a
``LocalSession`` of the router. TLS is required before authentication unless the listener
says otherwise; a connection that has not bound a resource within ``login_timeout`` seconds
is closed with ``connection-timeout``; a second session binding the same full JID replaces
this one with a ``conflict`` stream error. Presence without ``to`` updates the session's
availability and priority and fires ``presence/broadcast`` (see ``unirtc.xmpp``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.plugin import HookBus
from unirtc.xmpp.c2s_sasl import NS_SASL, AuthSettings, SaslNegotiation
from unirtc.xmpp.errors import StreamError
from unirtc.xmpp.events import PresenceEvent, SessionEvent, StanzaEvent, dispatch, notify
from unirtc.xmpp.jid import JID, InvalidJID, normalize_domain, normalize_resource
from unirtc.xmpp.parser import StreamOpened
from unirtc.xmpp.router import Router
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, error_reply, first_child, iq_result
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.c2s")

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAMS = "http://etherx.jabber.org/streams"
LOGIN_TIMEOUT = 60.0


@dataclass
class C2SSettings:
    """What every client session of one listener shares.

    ``tls`` is the ``IOpenSSLServerConnectionCreator`` offered by STARTTLS (None: no STARTTLS,
    e.g. on the direct-TLS listener, where the stream is already secure).
    ``stream_features()`` lists extra features plugins advertise after authentication.
    """

    auth: AuthSettings
    router: Router
    bus: HookBus
    clock: Any
    tls: Any = None
    require_tls: bool = True
    login_timeout: float = LOGIN_TIMEOUT
    stream_features: Callable[[], list[domish.Element]] = field(default=lambda: [])

    @property
    def domain(self) -> str:
        return self.auth.domain


class ClientSession:
    """One client connection, from stream header to unbinding."""

    kind = "c2s"

    def __init__(self, settings: C2SSettings, stream: XmppStream) -> None:
        self.settings = settings
        self.stream = stream
        self.router = settings.router
        self.sasl = SaslNegotiation(settings.auth, stream, self._authenticated)
        self.username: str | None = None
        self.jid: JID = JID.make(None, settings.domain)  # the full JID once bound
        self.bound = False
        self.ended = False
        self.available = False
        self.priority = 0
        self.presence: domish.Element | None = None
        self.data: dict[str, Any] = {}
        self._timeout = settings.clock.callLater(settings.login_timeout, self._login_timed_out)

    # -- LocalSession ------------------------------------------------------------------------

    def deliver(self, element: domish.Element) -> None:
        self.stream.send(element)

    def close(self, condition: str, text: str | None = None) -> None:
        """End the session now (a newer one took its JID, or the server stops), then the stream.

        Ending at once, not when TCP finally goes, keeps the unavailable presence of a replaced
        session from arriving after the available presence of its successor.
        """
        self._end()
        self.stream.fail(condition, text)

    # -- stream events -------------------------------------------------------------------------

    def stream_opened(self, event: StreamOpened) -> None:
        """RFC 6120 §4.7: answer the header, then check it, then offer the features."""
        header = {"from": self.settings.domain, "version": "1.0", "xml:lang": "en"}
        self.stream.open(header)
        to = event.attrs.get("to")
        try:
            host = normalize_domain(to) if to else None
        except InvalidJID:
            host = None
        if host != self.settings.domain:
            raise StreamError("host-unknown", f"this server serves {self.settings.domain}")
        if event.attrs.get("version") is None:
            raise StreamError("unsupported-version", "this server speaks XMPP 1.0")
        self.stream.send(self._features())

    def _features(self) -> domish.Element:
        features = domish.Element((NS_STREAMS, "features"))
        if self.username is None:
            if not self.stream.secure and self.settings.tls is not None:
                starttls = features.addElement((NS_TLS, "starttls"))
                if self.settings.require_tls:
                    starttls.addElement("required")
            if self.stream.secure or not self.settings.require_tls:
                for feature in self.sasl.features():
                    features.addChild(feature)
        elif not self.bound:
            features.addElement((NS_BIND, "bind"))
            features.addElement((NS_SESSION, "session")).addElement("optional")
            for feature in self.settings.stream_features():
                features.addChild(feature)
        return features

    def stanza_received(self, element: domish.Element) -> Deferred[Any] | None:
        if self.username is None:
            return self._before_auth(element)
        if not self.bound:
            self._before_bind(element)
            return None
        self._bound_stanza(element)
        return None

    def stream_closed(self) -> None:
        """The client closed its stream (RFC 6120 §4.4): the session ends, and our stream too."""
        self._end()
        self.stream.close()

    def connection_lost(self) -> None:
        if self._timeout.active():
            self._timeout.cancel()
        self._end()

    def _end(self) -> None:
        """Leave the router once: unavailable to whoever saw us, then session-ended."""
        if not self.bound or self.ended:
            return
        self.ended = True
        if self.available:
            unavailable = domish.Element((NS_CLIENT, "presence"))
            unavailable["type"] = "unavailable"
            unavailable["from"] = self.jid.full
            self._broadcast(unavailable)  # RFC 6121 §4.5.2: on the client's behalf
        self.available, self.presence = False, None
        self.router.unbind(self)
        notify(self.settings.bus, "session-ended", SessionEvent(self, self.router))
        log.info("{jid} session ended", jid=self.jid.full)

    def _login_timed_out(self) -> None:
        if not self.bound:
            self.stream.fail("connection-timeout", "no login in time")

    # -- before authentication ----------------------------------------------------------------

    def _before_auth(self, element: domish.Element) -> Deferred[None] | None:
        if element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
            return None
        if element.uri == NS_SASL:
            if self.settings.require_tls and not self.stream.secure:
                failure = domish.Element((NS_SASL, "failure"))
                failure.addElement("encryption-required")
                self.stream.send(failure)
                return None
            return self.sasl.handle(element)
        raise StreamError("not-authorized", "authenticate first")

    def _starttls(self) -> None:
        """RFC 6120 §5.4.2."""
        if self.stream.secure or self.settings.tls is None:
            self.stream.send(domish.Element((NS_TLS, "failure")))
            self.stream.close()
            return
        self.stream.send(domish.Element((NS_TLS, "proceed")))
        self.stream.start_tls(self.settings.tls)

    def _authenticated(self, localpart: str) -> None:
        self.username = localpart
        self.stream.restart()

    # -- resource binding ---------------------------------------------------------------------

    def _before_bind(self, element: domish.Element) -> None:
        payload = first_child(element) if element.name == "iq" else None
        if element.uri == NS_CLIENT and payload is not None and payload.uri == NS_BIND:
            self._bind(element, payload)
        elif element.uri == NS_CLIENT and payload is not None and payload.uri == NS_SESSION:
            self.stream.send(iq_result(element))
        else:
            raise StreamError("not-authorized", "bind a resource first")

    def _bind(self, request: domish.Element, payload: domish.Element) -> None:
        """RFC 6120 §7: the client's resource if it is valid, a random one otherwise."""
        if request.getAttribute("type") != "set" or payload.name != "bind":
            self.stream.send(error_reply(request, StanzaError("bad-request")))
            return
        wanted = next((str(c) for c in payload.elements(NS_BIND, "resource")), "").strip()
        try:
            resource = normalize_resource(wanted) if wanted else os.urandom(6).hex()
        except InvalidJID as e:
            self.stream.send(error_reply(request, StanzaError("bad-request", text=str(e))))
            return
        assert self.username is not None
        self.jid = JID.make(self.username, self.settings.domain, resource)
        self.bound = True
        if self._timeout.active():
            self._timeout.cancel()
        replaced = self.router.bind(self)
        if replaced is not None:
            log.info("{jid} logged in again; closing the older session", jid=self.jid.full)
            replaced.close("conflict", "Replaced by a new connection")
        result = domish.Element((NS_BIND, "bind"))
        result.addElement("jid", content=self.jid.full)
        self.stream.send(iq_result(request, result))
        log.info("{jid} bound from {host}", jid=self.jid.full, host=self.stream.peer_host)
        event = SessionEvent(self, self.router)
        notify(self.settings.bus, "resource-bound", event)
        notify(self.settings.bus, "session-started", event)

    # -- bound: stanzas -------------------------------------------------------------------------

    def _bound_stanza(self, element: domish.Element) -> None:
        if element.uri != NS_CLIENT or element.name not in ("message", "presence", "iq"):
            event = StanzaEvent(element, self, self.router)
            if not dispatch(self.settings.bus, f"stanza/{element.uri}:{element.name}", event):
                raise StreamError("unsupported-stanza-type", f"<{element.name}/> in {element.uri}")
            return
        self._stamp(element)
        if element.name == "iq":
            payload = first_child(element)
            if payload is not None and payload.uri in (NS_BIND, NS_SESSION) and element.getAttribute("to") is None:
                if payload.uri == NS_SESSION:
                    self.stream.send(iq_result(element))  # RFC 6121 legacy session: a no-op
                else:
                    self.stream.send(error_reply(element, StanzaError("not-allowed", text="already bound")))
                return
        if element.name == "presence" and element.getAttribute("to") is None:
            kind = element.getAttribute("type")
            if kind is None or kind == "unavailable":
                self._update_presence(element)
                return
        self.router.route(element, self)

    def _stamp(self, element: domish.Element) -> None:
        """RFC 6120 §8.1.2.1: the server sets ``from``; a client naming anyone else is cut off."""
        claimed = element.getAttribute("from")
        if claimed is not None:
            try:
                jid = JID.parse(claimed)
            except InvalidJID:
                jid = None
            if jid is None or jid.bare != self.jid.bare or jid.resource not in (None, self.jid.resource):
                raise StreamError("invalid-from", "the 'from' address is not yours")
        element["from"] = self.jid.full

    def _update_presence(self, presence: domish.Element) -> None:
        """Remember the broadcast presence (RFC 6121 §4.2, §4.5) and tell the plugins."""
        initial = not self.available
        if presence.getAttribute("type") == "unavailable":
            self.available = False
            self.presence = None
        else:
            self.available = True
            self.presence = presence
            self.priority = _priority(presence)
        self._broadcast(presence, initial and self.available)

    def _broadcast(self, presence: domish.Element, initial: bool = False) -> None:
        event = PresenceEvent(presence, self, self.router, self.jid.bare, self.jid, initial=initial)
        if dispatch(self.settings.bus, "presence/broadcast", event):
            return
        # Without a presence plugin: the user's own available resources see it (RFC 6121 §4.2.2)
        for session in self.router.sessions_of(self.jid.bare):
            if session.available or session is self:
                session.deliver(presence)


def _priority(presence: domish.Element) -> int:
    """RFC 6121 §4.7.2.3: an integer from -128 to +127, 0 if absent or invalid."""
    for child in presence.elements(NS_CLIENT, "priority"):
        try:
            return max(-128, min(127, int(str(child).strip())))
        except ValueError:
            return 0
    return 0

# -*- test-case-name: tests.protocol.test_component -*-
"""XEP-0114 external components: a process (a slixmpp ``ComponentXMPP``, a gateway, a bot)
connects, proves it knows the secret from ``[components]`` and then serves its domain.

The handshake is ``hex(SHA-1(stream id + secret))`` (XEP-0114 §3). Once accepted, the
component receives every stanza for its domain and may send stanzas from any address at that
domain; it cannot claim another one. A second connection for a domain already served is
refused with ``conflict``, so a stray process cannot take over a working component.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.xmpp.errors import StreamError
from unirtc.xmpp.jid import JID, InvalidJID, normalize_domain
from unirtc.xmpp.parser import StreamOpened
from unirtc.xmpp.router import Router
from unirtc.xmpp.stanzas import NS_CLIENT, STANZA_KINDS
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.component")

NS_COMPONENT = "jabber:component:accept"
HANDSHAKE_TIMEOUT = 30.0


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


@dataclass
class ComponentSettings:
    """What every component connection shares: secrets by domain and the router."""

    secrets: dict[str, str]
    router: Router
    clock: Any
    handshake_timeout: float = HANDSHAKE_TIMEOUT


class ComponentSession:
    """One external component connection; a ``LocalSession`` of the router once accepted."""

    kind = "component"

    def __init__(self, settings: ComponentSettings, stream: XmppStream) -> None:
        self.settings = settings
        self.stream = stream
        self.router = settings.router
        self.domain: str | None = None
        self.jid: JID = JID.make(None, "localhost")
        self.accepted = False
        self.available = False
        self.priority = 0
        self.presence: domish.Element | None = None
        self.data: dict[str, Any] = {}
        self._timeout = settings.clock.callLater(settings.handshake_timeout, self._timed_out)

    def deliver(self, element: domish.Element) -> None:
        self.stream.send(element)

    def close(self, condition: str, text: str | None = None) -> None:
        self.stream.fail(condition, text)

    def stream_opened(self, event: StreamOpened) -> None:
        to = event.attrs.get("to", "")
        try:
            domain = normalize_domain(to) if to else ""
        except InvalidJID:
            domain = ""
        self.stream.open({"from": domain or to} if domain else {})
        if domain not in self.settings.secrets:
            raise StreamError("host-unknown", "no component is configured for this domain")
        self.domain = domain
        self.jid = JID.make(None, domain)

    def stanza_received(self, element: domish.Element) -> None:
        if not self.accepted:
            self._handshake(element)
            return
        if element.uri != NS_CLIENT or element.name not in STANZA_KINDS:
            raise StreamError("unsupported-stanza-type", f"<{element.name}/> in {element.uri}")
        self._check_addresses(element)
        self.router.route(element, self)

    def _handshake(self, element: domish.Element) -> None:
        if element.name != "handshake" or self.domain is None:
            raise StreamError("not-authorized", "send the handshake first")
        expected = handshake_digest(self.stream.stream_id, self.settings.secrets[self.domain])
        if not hmac.compare_digest(str(element).strip().lower().encode(), expected.encode()):
            log.warn("Component {domain} from {host} sent a wrong secret",
                     domain=self.domain, host=self.stream.peer_host)
            raise StreamError("not-authorized", "wrong handshake")
        current = self.router.components.get(self.domain)
        if current is not None and not getattr(current, "stream", self.stream).closing:
            raise StreamError("conflict", f"{self.domain} is already connected")
        self.router.add_component(self.domain, self)
        self.accepted = True
        self._timeout.cancel()
        self.stream.send(domish.Element((NS_COMPONENT, "handshake")))
        log.info("Component {domain} connected from {host}", domain=self.domain, host=self.stream.peer_host)

    def _check_addresses(self, element: domish.Element) -> None:
        """The component speaks for its own domain only; every stanza names its recipient."""
        sender = element.getAttribute("from")
        if sender is None:
            element["from"] = self.jid.full
        else:
            try:
                jid = JID.parse(sender)
            except InvalidJID:
                jid = None
            if jid is None or jid.domain != self.domain:
                raise StreamError("invalid-from", f"a component may only send from {self.domain}")
        if element.getAttribute("to") is None:
            raise StreamError("improper-addressing", "a component must address its stanzas")

    def stream_closed(self) -> None:
        self.stream.close()

    def connection_lost(self) -> None:
        if self._timeout.active():
            self._timeout.cancel()
        if self.accepted and self.domain is not None:
            self.router.remove_component(self.domain, self)
            log.info("Component {domain} disconnected", domain=self.domain)

    def _timed_out(self) -> None:
        if not self.accepted:
            self.stream.fail("connection-timeout", "no handshake in time")

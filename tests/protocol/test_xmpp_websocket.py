"""XMPP over WebSocket (RFC 7395) through the real Site, endpoint, wire and c2s sessions, on
StringTransports: login, routing to TCP clients, SCRAM-PLUS over WSS, closing, hostile input."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish
from zope.interface import implementer

from tests.protocol.websocket_helpers import WsClient
from tests.protocol.xmpp_helpers import FakeServer, FakeTLSConnection, TLSStringTransport, scram_client_final
from unirtc.config import load_settings
from unirtc.plugin import Items, PluginContext
from unirtc.web.site import make_site
from unirtc.web.websocket import OriginPolicy, WebSocketEndpoint
from unirtc.xmpp import framing
from unirtc.xmpp.c2s import ClientSession
from unirtc.xmpp.channel_binding import binding_data
from unirtc.xmpp.parser import Stanza, StreamClosed, StreamOpened
from unirtc.xmpp.service import SessionsService, make_xmpp_listeners
from unirtc.xmpp.websocket import XmppWebSocketFactory

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAMS = "http://etherx.jabber.org/streams"
OPEN = '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="falcot.com" version="1.0"/>'
CLOSE = '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>'


class WssTransport(TLSStringTransport):
    """The TCP connection of a WSS channel: TLS from the start (HTTPChannel sets TCP_NODELAY)."""

    def __init__(self, peer_host: str, version: str) -> None:
        super().__init__(peer_host, version)
        self.startTLS(None)

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


@implementer(IOpenSSLServerConnectionCreator)
class _Certificate:
    """Stands in for CertificateService; no connection is made, so no context is needed."""

    def serverConnectionForTLS(self, protocol: Any) -> Any:  # pragma: no cover
        raise AssertionError("no TLS connection in this test")


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class XmppWs:
    """A scripted RFC 7395 client: WsClient underneath, the server's messages parsed back."""

    def __init__(self, site: Any, transport: StringTransport) -> None:
        self.ws = WsClient(site, transport=transport)
        assert self.ws.status == 101, self.ws.status
        self.events: list[Any] = []

    def send(self, text: str) -> None:
        self.ws.send_text(text)

    def pump(self) -> list[Any]:
        for message in self.ws.take():
            assert isinstance(message, str), message
            self.events.append(framing.parse_message(message, 10_000_000))
        return self.events

    def elements(self) -> list[domish.Element]:
        return [e.element for e in self.pump() if isinstance(e, Stanza)]

    def last(self) -> domish.Element:
        return self.elements()[-1]

    def clear(self) -> None:
        self.pump()
        self.events = []

    def stream_error(self) -> str | None:
        for element in self.elements():
            if (element.uri, element.name) == (NS_STREAMS, "error"):
                return next(c.name for c in element.elements() if c.name != "text")
        return None

    def features(self) -> domish.Element:
        element = self.last()
        assert (element.uri, element.name) == (NS_STREAMS, "features"), element.toXml()
        return element

    def mechanisms(self) -> list[str]:
        for child in self.features().elements(NS_SASL, "mechanisms"):
            return [str(m) for m in child.elements()]
        return []


class WebSocketC2STests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        c2s = replace(self.server.c2s, tls=None)
        factory = XmppWebSocketFactory(lambda s: ClientSession(c2s, s), self.server.clock, self.server.streams,
                                       max_stanza=self.server.max_stanza)
        self.factory = factory
        endpoint = WebSocketEndpoint({"xmpp": factory}, OriginPolicy(("https://falcot.com",)),
                                     max_message=self.server.max_stanza)
        items = Items()
        items.add("http-path", ("xmpp-websocket", endpoint))
        self.site = make_site(items)

    def connect(self, secure: bool = True, peer: str = "192.0.2.7", tls_version: str = "TLSv1.3") -> XmppWs:
        if secure:
            transport: StringTransport = WssTransport(peer, tls_version)
        else:
            transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        return XmppWs(self.site, transport)

    def login(self, user: str = "joe", resource: str = "browser", password: str = "secret") -> XmppWs:
        if (user, "falcot.com") not in self.server.directory.accounts:
            self.server.directory.add(user, password)
        client = self.connect()
        client.send(OPEN)
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(chr(0) + user + chr(0) + password)}</auth>")
        assert client.last().name == "success", client.events
        client.send(OPEN)
        client.send(f"<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    f"<resource>{resource}</resource></bind></iq>")
        assert client.last().getAttribute("type") == "result", client.events
        client.clear()
        return client

    def test_openGetsOpenAndSaslWithoutStarttls(self) -> None:
        """
        If a client opens the stream over WSS, the server answers with ``<open/>`` (from, id,
        version 1.0) and features offering SASL, SCRAM-PLUS included, and no STARTTLS.
        """
        client = self.connect()
        client.send(OPEN)
        opened = client.pump()[0]
        self.assertIsInstance(opened, StreamOpened)
        self.assertEqual((opened.attrs["from"], opened.attrs["version"]), ("falcot.com", "1.0"))
        self.assertTrue(opened.attrs["id"])
        names = [child.name for child in client.features().elements()]
        self.assertNotIn("starttls", names)
        self.assertIn("SCRAM-SHA-256-PLUS", client.mechanisms())
        self.assertIn("PLAIN", client.mechanisms())

    def test_loginAndChatWithATcpClient(self) -> None:
        """
        If a browser logs in over WebSocket (PLAIN, restart with a new ``<open/>``, bind), it
        exchanges messages with a client on a TCP stream through the same router.
        """
        joe = self.login("joe", "browser")
        roland = self.server.login("roland", "desk")
        joe.send("<message xmlns='jabber:client' to='roland@falcot.com/desk' type='chat'><body>Hi Roland</body>"
                 "</message>")
        received = roland.last()
        self.assertEqual((received.getAttribute("from"), str(received.body)), ("joe@falcot.com/browser", "Hi Roland"))
        roland.send("<message to='joe@falcot.com/browser' type='chat'><body>Hi Joe</body></message>")
        reply = joe.last()
        self.assertEqual((reply.uri, str(reply.body)), ("jabber:client", "Hi Joe"))
        self.assertEqual(reply.getAttribute("from"), "roland@falcot.com/desk")

    def test_scramPlusBindsToTheWssConnection(self) -> None:
        """
        If a client over WSS (TLS 1.3) runs SCRAM-SHA-256-PLUS with tls-exporter data from the TLS
        connection under the HTTP channel, it succeeds; other binding data fails.
        """
        self.server.directory.add("joe", "pencil")
        data = binding_data(FakeTLSConnection("TLSv1.3"), "tls-exporter")
        for cb_data, expected in ((data, "success"), (b"\x01" * 32, "failure")):
            client = self.connect()
            client.send(OPEN)
            bare, gs2 = "n=joe,r=abcdefgh", "p=tls-exporter,,"
            client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256-PLUS'>{b64(gs2 + bare)}</auth>")
            server_first = base64.b64decode(str(client.last())).decode()
            final, _ = scram_client_final("pencil", "sha256", bare, server_first, gs2.encode() + cb_data)
            client.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
            self.assertEqual(client.last().name, expected)

    def test_plainWebSocketFromElsewhereGetsNoSasl(self) -> None:
        """
        If the WebSocket is not TLS and the peer is not on loopback, no mechanism is offered and an
        attempt is refused with encryption-required.
        """
        client = self.connect(secure=False)
        client.send(OPEN)
        self.assertEqual(client.mechanisms(), [])
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(chr(0) + 'joe' + chr(0) + 'x')}</auth>")
        self.assertEqual(next(client.last().elements()).name, "encryption-required")

    def test_plainWebSocketFromLoopbackCountsAsEncrypted(self) -> None:
        """
        If the plain WebSocket comes from loopback (a local TLS-terminating proxy), SASL is offered,
        but no -PLUS mechanism, as there is no TLS connection to bind to.
        """
        client = self.connect(secure=False, peer="127.0.0.1")
        client.send(OPEN)
        mechanisms = client.mechanisms()
        self.assertIn("SCRAM-SHA-256", mechanisms)
        self.assertFalse([m for m in mechanisms if m.endswith("-PLUS")])

    def test_clientCloseIsAnswered(self) -> None:
        """
        If a bound client sends ``<close/>``, the server answers ``<close/>`` exactly as RFC 7395
        writes it, closes the WebSocket, and the session leaves the router.
        """
        joe = self.login()
        joe.send(CLOSE)
        self.assertEqual(joe.ws.take(), [framing.CLOSE])
        self.assertEqual(joe.ws.closed_with.code, 1000)
        self.assertTrue(joe.ws.disconnected)
        self.assertEqual(self.server.router.sessions_of(self._bare("joe")), [])

    def _bare(self, user: str) -> Any:
        from unirtc.xmpp.jid import JID

        return JID.make(user, "falcot.com")

    def test_connectionLossEndsTheSession(self) -> None:
        """
        If the WebSocket's TCP connection drops, the session leaves the router and the stream
        registry.
        """
        joe = self.login()
        self.assertEqual(len(self.server.streams), 1)
        joe.ws.lose()
        self.assertEqual(self.server.router.sessions_of(self._bare("joe")), [])
        self.assertEqual(self.server.streams, set())

    def assertStreamError(self, client: XmppWs, condition: str, close_code: int = 1000) -> None:
        self.assertEqual(client.stream_error(), condition)
        self.assertIsInstance(client.pump()[-1], StreamClosed)
        self.assertEqual(client.ws.closed_with.code, close_code)
        self.assertTrue(client.ws.disconnected)

    def test_hostileMessagesGetStreamErrors(self) -> None:
        """
        If a message is not well-formed, uses restricted XML, holds two elements, or comes before
        ``<open/>``, the client gets the stream error, ``<close/>`` and a closed WebSocket; another
        client still logs in and is served afterwards.
        """
        cases = [
            ("<message><body>unclosed", "not-well-formed", True),
            ("<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message>&a;</message>", "restricted-xml", True),
            ("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", "bad-format", True),
            ("<presence xmlns='jabber:client'/>", "bad-format", False),
            (OPEN, "bad-format", True),  # a second <open/> without a restart
        ]
        for text, expected, open_first in cases:
            client = self.connect()
            if open_first:
                client.send(OPEN)
            client.send(text)
            self.assertStreamError(client, expected)
        joe = self.login()
        joe.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertTrue(joe.elements())

    def test_oversizedMessageIsPolicyViolation(self) -> None:
        """
        If a message exceeds the stanza limit, in one frame or in fragments, the client gets a
        policy-violation stream error and a close with 1009.
        """
        client = self.connect()
        client.send(OPEN)
        client.ws.send_text("<message><body>" + "x" * self.server.max_stanza + "</body></message>", fragments=8)
        self.assertStreamError(client, "policy-violation", 1009)

    def test_binaryMessageIsRefused(self) -> None:
        """
        If a client sends a binary message, it gets a stream error and a close with 1003
        (unsupported data, RFC 7395 §3.2).
        """
        client = self.connect()
        client.send(OPEN)
        client.ws.send_bytes(b"<presence/>")
        self.assertStreamError(client, "bad-format", 1003)

    def test_shutdownSendsSystemShutdown(self) -> None:
        """
        If the server stops, a WebSocket client gets system-shutdown and a close like a TCP one.
        """
        joe = self.login()
        sessions = SessionsService(self.server.clock)
        sessions.streams = self.server.streams
        sessions.startService()
        sessions.stopService()
        self.assertStreamError(joe, "system-shutdown")

    def test_keepaliveIsAWebSocketPing(self) -> None:
        """
        If a stream stays quiet for the keepalive interval, the server sends a WebSocket ping, not
        whitespace (RFC 7395 forbids whitespace between messages).
        """
        joe = self.login()
        self.server.clock.advance(241)
        self.server.clock.advance(241)
        joe.ws.messages()
        self.assertTrue(joe.ws.pings)
        self.assertEqual(joe.ws.take(), [])

    def test_loginTimeoutClosesTheWebSocket(self) -> None:
        """
        If a WebSocket client never logs in, it gets connection-timeout after the login timeout.
        """
        client = self.connect()
        client.send(OPEN)
        self.server.clock.advance(61)
        self.assertStreamError(client, "connection-timeout")


class MountTests(SynchronousTestCase):
    def build(self, ini: str) -> list[Any]:
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        settings = load_settings(folder / "u.ini")
        reactor = MemoryReactorClock()
        context = PluginContext(settings=settings, directory=SimpleNamespace(), reactor=reactor)
        make_xmpp_listeners(settings, context, _Certificate(), SimpleNamespace(credentials=None), reactor)
        return context.items.get("http-path")

    def test_mountedAtXmppWebsocketByDefault(self) -> None:
        """
        If nothing is configured, XMPP over WebSocket is mounted at /xmpp-websocket for the
        ``xmpp`` subprotocol, with the default Origins of the web listener.
        """
        [(path, endpoint)] = self.build("")
        self.assertEqual(path, "xmpp-websocket")
        self.assertIsInstance(endpoint, WebSocketEndpoint)
        self.assertEqual(list(endpoint.protocols), ["xmpp"])
        self.assertTrue(endpoint.origins.allows("https://falcot.com:5281"))
        self.assertFalse(endpoint.origins.allows("https://evil.example"))

    def test_pathAndDisabling(self) -> None:
        """
        If ``[xmpp] websocket`` names another path it is used; empty, or with no web listener,
        nothing is mounted.
        """
        [(path, _)] = self.build("[xmpp]\nwebsocket = /ws\n")
        self.assertEqual(path, "ws")
        self.assertEqual(self.build("[xmpp]\nwebsocket =\n"), [])
        self.assertEqual(self.build("[web]\nlisten =\n"), [])

"""The WebSocket endpoint and wire (unirtc/web/websocket.py) over a real Site on StringTransports:
Origin allow-list, subprotocol choice, message reassembly and bounds, pings and closing."""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from wsproto.events import Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from tests.protocol.websocket_helpers import WsClient
from unirtc.plugin import Items
from unirtc.web.site import make_site
from unirtc.web.websocket import OriginPolicy, WebSocketEndpoint

ORIGINS = ("https://falcot.com", "https://falcot.com:8443")


class EchoApp:
    """A Twisted WebSocketProtocol that echoes messages and records what happened to it."""

    def __init__(self, request: Any, subprotocol: str, too_big: bool = False) -> None:
        self.request = request
        self.subprotocol = subprotocol
        self.transport: Any = None
        self.finished = False
        self.texts: list[str] = []
        self.lost: list[Failure] = []
        if too_big:
            self.messageTooBig = self._too_big

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.finished = True

    def textMessageReceived(self, message: str) -> None:
        self.texts.append(message)
        self.transport.sendTextMessage(f"{self.subprotocol}:{message}")

    def bytesMessageReceived(self, data: bytes) -> None:
        self.transport.sendBytesMessage(data[::-1])

    def pongReceived(self, payload: bytes) -> None:
        self.texts.append(f"pong {payload.decode()}")

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)

    def _too_big(self) -> None:
        self.transport.sendTextMessage("too big")
        self.transport.loseConnection(4000)


class EchoFactory:
    def __init__(self, subprotocol: str, too_big: bool = False) -> None:
        self.subprotocol = subprotocol
        self.too_big = too_big
        self.apps: list[EchoApp] = []

    def buildProtocol(self, request: Any) -> EchoApp:
        app = EchoApp(request, self.subprotocol, self.too_big)
        self.apps.append(app)
        return app


def make(max_message: int = 1000, too_big: bool = False,
         origins: tuple[str, ...] = ORIGINS) -> tuple[Site, dict[str, EchoFactory]]:
    factories = {"xmpp": EchoFactory("xmpp", too_big), "sip": EchoFactory("sip", too_big)}
    items = Items()
    endpoint = WebSocketEndpoint(factories, OriginPolicy(origins), max_message=max_message)
    items.add("http-path", ("ws", endpoint))
    return make_site(items), factories


class HandshakeTests(SynchronousTestCase):
    def test_allowedOriginUpgradesWithTheSubprotocol(self) -> None:
        """
        If a page from an allowed Origin asks for the ``xmpp`` subprotocol, the server switches
        protocols, names ``xmpp`` in its answer and hands the request to the xmpp factory.
        """
        site, factories = make()
        client = WsClient(site, path="/ws", origin="https://falcot.com:8443")
        self.assertEqual(client.status, 101)
        self.assertEqual(client.accepted.subprotocol, "xmpp")
        self.assertEqual(len(factories["xmpp"].apps), 1)
        self.assertTrue(factories["xmpp"].apps[0].finished)
        self.assertEqual(factories["xmpp"].apps[0].transport.subprotocol, "xmpp")

    def test_originIsComparedAsBrowsersSerialiseIt(self) -> None:
        """
        If the Origin differs from an allowed one only in letter case or an explicit default
        port, it is the same origin and is allowed.
        """
        site, _ = make()
        self.assertEqual(WsClient(site, path="/ws", origin="HTTPS://Falcot.COM:443").status, 101)

    def test_otherOriginIsForbiddenBeforeUpgrade(self) -> None:
        """
        If the Origin is not in the allow-list (another site, another port or scheme, or the
        opaque origin ``null``), the answer is 403 and no application protocol is built.
        """
        site, factories = make()
        for origin in ("https://evil.example", "https://falcot.com:9999", "http://falcot.com", "null",
                       "https://falcot.com.evil.example"):
            client = WsClient(site, path="/ws", origin=origin)
            self.assertEqual(client.status, 403, origin)
            self.assertIn(b"Origin", client.reject_body)
        self.assertEqual(factories["xmpp"].apps, [])

    def test_noOriginIsNotABrowserAndIsAllowed(self) -> None:
        """
        If the request carries no Origin (a non-browser client), the upgrade proceeds.
        """
        site, _ = make()
        self.assertEqual(WsClient(site, path="/ws", origin=None).status, 101)

    def test_starAllowsAnyOrigin(self) -> None:
        """
        If ``*`` is in the allow-list, any Origin is accepted.
        """
        site, _ = make(origins=("*",))
        self.assertEqual(WsClient(site, path="/ws", origin="https://anything.example").status, 101)

    def test_firstOfferedSubprotocolServedWins(self) -> None:
        """
        If the client offers several subprotocols, the first one it lists that is served wins,
        and one not served is skipped.
        """
        site, factories = make()
        client = WsClient(site, path="/ws", subprotocols=("mqtt", "sip", "xmpp"))
        self.assertEqual(client.accepted.subprotocol, "sip")
        self.assertEqual(len(factories["sip"].apps), 1)
        self.assertEqual(factories["xmpp"].apps, [])

    def test_noServedSubprotocolIsBadRequest(self) -> None:
        """
        If the client offers no subprotocol served here (or none at all), the answer is 400
        naming the ones that are.
        """
        site, _ = make()
        for offered in ((), ("mqtt",)):
            client = WsClient(site, path="/ws", subprotocols=offered)
            self.assertEqual(client.status, 400)
            self.assertIn(b"xmpp, sip", client.reject_body)

    def test_plainGetIsUpgradeRequired(self) -> None:
        """
        If a browser simply visits the endpoint, it gets 426 Upgrade Required, not a page.
        """
        site, _ = make()
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        protocol = site.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: falcot.com\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 426 "), transport.value()[:80])
        self.assertIn(b"Sec-Websocket-Version: 13", transport.value())

    def test_badUpgradeIsBadRequest(self) -> None:
        """
        If the upgrade request lacks its key or names another WebSocket version, the answer is 400.
        """
        site, _ = make()
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        protocol = site.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: falcot.com\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                              b"Sec-WebSocket-Protocol: xmpp\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), transport.value()[:80])

    def test_endpointNeedsASubprotocol(self) -> None:
        """
        If an endpoint is built with no subprotocol, that is a programming error.
        """
        self.assertRaises(ValueError, WebSocketEndpoint, {}, OriginPolicy(ORIGINS))


class WireTests(SynchronousTestCase):
    def connect(self, **kwargs: Any) -> tuple[WsClient, EchoApp]:
        site, factories = make(**kwargs)
        client = WsClient(site, path="/ws")
        return client, factories["xmpp"].apps[0]

    def test_textAndBinaryMessagesBothWays(self) -> None:
        """
        If the client sends a text and a binary message, the application gets each whole and its
        answers arrive as messages of the same kind.
        """
        client, app = self.connect()
        client.send_text("héllo")
        client.send_bytes(b"\x00\x01\xff")
        self.assertEqual(client.messages(), ["xmpp:héllo", b"\xff\x01\x00"])

    def test_fragmentedMessageIsReassembled(self) -> None:
        """
        If a message arrives in several frames, the application gets it once, whole.
        """
        client, app = self.connect()
        client.send_text("<message><body>fragmented</body></message>", fragments=5)
        self.assertEqual(app.texts, ["<message><body>fragmented</body></message>"])

    def test_oversizedMessageClosesWith1009(self) -> None:
        """
        If a message's fragments add up to more than the bound, the connection is closed with
        1009 (message too big) as soon as the bound is passed, and nothing is delivered.
        """
        client, app = self.connect(max_message=100)
        client.send_raw(client.ws.send(TextMessage("x" * 60, message_finished=False)))
        self.assertIsNone(client.closed_with)
        client.send_raw(client.ws.send(TextMessage("x" * 60, message_finished=False)))
        self.assertEqual(client.closed_with.code, CloseReason.MESSAGE_TOO_BIG)
        self.assertTrue(client.disconnected)
        self.assertEqual(app.texts, [])

    def test_oversizedMessageToldToApplication(self) -> None:
        """
        If the application defines ``messageTooBig``, it is called instead, and may answer before
        closing with its own code.
        """
        client, app = self.connect(max_message=100, too_big=True)
        client.send_text("y" * 101)
        self.assertEqual(client.messages(), ["too big"])
        self.assertEqual(client.closed_with.code, 4000)

    def test_messageAtTheBoundIsDelivered(self) -> None:
        """
        If a message is exactly as large as the bound, it is delivered.
        """
        client, app = self.connect(max_message=100)
        client.send_text("z" * 100, fragments=3)
        self.assertEqual(app.texts, ["z" * 100])

    def test_pingIsAnsweredAndPongDelivered(self) -> None:
        """
        If the client pings, the wire answers with a pong carrying the same payload; a pong from
        the client reaches the application.
        """
        client, app = self.connect()
        client.ping(b"are you there")
        self.assertEqual(client.pongs, [b"are you there"])
        app.transport.ping(b"p1")
        client.messages()
        self.assertEqual(client.pings, [b"p1"])
        client.send_raw(client.ws.send(Pong(b"p1")))
        self.assertEqual(app.texts, ["pong p1"])

    def test_clientCloseIsAnsweredAndEndsTheApplication(self) -> None:
        """
        If the client closes, the server answers the close, drops the TCP connection, and the
        application hears of the lost connection; later sends are dropped quietly.
        """
        client, app = self.connect()
        client.close(1000)
        self.assertEqual(client.closed_with.code, 1000)
        self.assertTrue(client.disconnected)
        client.lose()
        self.assertEqual(len(app.lost), 1)
        before = client.transport.value()
        app.transport.sendTextMessage("late")
        self.assertEqual(client.transport.value(), before)

    def test_unmaskedFrameIsAProtocolError(self) -> None:
        """
        If the client sends an unmasked frame (RFC 6455 §5.1), the server closes with 1002.
        """
        client, app = self.connect()
        client.send_raw(b"\x81\x05hello")
        self.assertEqual(client.closed_with.code, CloseReason.PROTOCOL_ERROR)
        self.assertTrue(client.disconnected)
        self.assertEqual(app.texts, [])

    def test_invalidUtf8TextIsClosedWith1007(self) -> None:
        """
        If a text message is not UTF-8, the server closes with 1007 (invalid payload data).
        """
        client, app = self.connect()
        mask = b"\x00\x00\x00\x00"
        client.send_raw(b"\x81\x82" + mask + b"\xc3\x28")
        self.assertEqual(client.closed_with.code, CloseReason.INVALID_FRAME_PAYLOAD_DATA)
        self.assertEqual(app.texts, [])

    def test_serverCloseSendsCode(self) -> None:
        """
        If the application closes with a code, the client gets a Close frame with that code and
        the TCP connection ends; a second close does nothing more.
        """
        client, app = self.connect()
        app.transport.loseConnection(1003, "binary")
        client.messages()
        self.assertEqual((client.closed_with.code, client.closed_with.reason), (1003, "binary"))
        self.assertTrue(client.disconnected)
        written = client.transport.value()
        app.transport.loseConnection()
        self.assertEqual(client.transport.value(), written)

    def test_dataAfterCloseIsIgnored(self) -> None:
        """
        If frames arrive after the closing handshake, they are ignored.
        """
        client, app = self.connect()
        client.close()
        client.protocol.dataReceived(b"\x81\x85\x00\x00\x00\x00hello")
        self.assertEqual(app.texts, [])

    def test_peerAndSecurityComeFromTheChannel(self) -> None:
        """
        If the application asks, the wire reports the HTTP channel's peer and whether it is TLS.
        """
        client, app = self.connect()
        self.assertEqual(app.transport.getPeer().host, "192.0.2.1")
        self.assertFalse(app.transport.secure)

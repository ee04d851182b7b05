"""SIP over WebSocket (RFC 7118) on the real web site, core, registrar and proxy, without sockets.

Browsers are scripted WebSocket clients (wsproto) on the ``/sip-websocket`` endpoint of a real
twisted.web ``Site`` over StringTransports that look like TLS; desk phones are UDP peers on a
fake datagram transport.  The proxy listens on 192.0.2.1 (UDP 5060, WSS 8443).  Time is a Clock.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from wsproto.events import Pong
from zope.interface import directlyProvides

from tests.protocol.websocket_helpers import WsClient
from tests.unit.sip_auth_helpers import NOW, FakeDirectory, authorization, challenges
from tests.unit.sip_auth_helpers import settings as sip_settings
from unirtc.plugin import Items
from unirtc.sip import websocket
from unirtc.sip.bindings import Binding, BindingStore
from unirtc.sip.digest import DigestAuthenticator, domain_map
from unirtc.sip.message import SipRequest, SipResponse, make_response, parse
from unirtc.sip.proxy import Proxy
from unirtc.sip.registrar import Registrar
from unirtc.sip.service import SipCore
from unirtc.sip.transport import SipDatagramProtocol, Transports
from unirtc.sip.websocket import KEEPALIVE_INTERVAL
from unirtc.web.site import make_site

PROXY_UDP = ("192.0.2.1", 5060)
DESK = ("198.51.100.7", 5060)
ORIGIN = "https://falcot.com:8443"


class WssTransport(StringTransport):
    """The TCP connection under an HTTPS channel: it provides ISSLTransport."""

    def __init__(self, host: str = "203.0.113.5", port: int = 50000, secure: bool = True) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", host, port))
        if secure:
            directlyProvides(self, ISSLTransport)

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def browser_request(method: str, uri: str, user: str = "roland", *, cseq: int = 1, branch: str = "z9hG4bKws1",
                    call_id: str = "ws-call-1", to: str | None = None, extra: tuple[str, ...] = (),
                    body: str = "", transport: str = "WSS") -> str:
    """A request as JsSIP writes it: Via with an .invalid host, Contact with transport=ws."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} df7jal23ls0d.invalid;branch={branch}",
        "Max-Forwards: 69",
        f"To: <{to or uri}>",
        f"From: \"{user}\" <sip:{user}@falcot.com>;tag=brw{user}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}x@df7jal23ls0d.invalid;transport=ws;ob>"
        + (';+sip.ice;reg-id=1;+sip.instance="<urn:uuid:0f0e4f3a-0000-4000-8000-00000000000%d>";expires=600'
           % len(user) if method == "REGISTER" else ""),
        "Supported: path,gruu,outbound",
        "User-Agent: JsSIP 3.13.8",
        *extra,
        f"Content-Length: {len(body.encode())}",
    ]
    return "\r\n".join(lines) + "\r\n\r\n" + body


def desk_request(method: str = "INVITE", uri: str = "sip:roland@falcot.com", *, extra: tuple[str, ...] = (),
                 to_tag: str = "", branch: str = "z9hG4bKdesk1", cseq: int = 1) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {DESK[0]}:{DESK[1]};branch={branch};rport",
        "Max-Forwards: 70",
        "From: <sip:alice@example.org>;tag=desk1",
        "To: <sip:roland@falcot.com>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: desk-call-1",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:alice@{DESK[0]}:{DESK[1]}>",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Browser:
    """One browser tab's SIP WebSocket: send SIP text, read SIP messages back."""

    def __init__(self, site, transport: StringTransport | None = None, origin: str | None = ORIGIN) -> None:
        self.ws = WsClient(site, path="/sip-websocket", subprotocols=("sip",), origin=origin,
                           transport=transport or WssTransport())

    def send(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            self.ws.send_bytes(text)
        else:
            self.ws.send_text(text)

    def take(self) -> list[SipRequest | SipResponse]:
        return [parse(m.encode() if isinstance(m, str) else m) for m in self.ws.take() if m.strip()]


class SipWebSocketTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.core = SipCore(self.clock)
        self.core.transports = Transports(self.core, self.clock, "falcot.com")
        self.core.transports.listeners = [("UDP", *PROXY_UDP)]
        self.udp = SipDatagramProtocol(self.core.transports)
        self.udp.transport = FakeDatagramTransport()
        self.udp.startProtocol()
        self.directory = FakeDirectory()
        for user in ("joe", "roland"):
            self.directory.add(user)
        realm_for = domain_map(sip_settings())
        self.store = BindingStore(None, self.clock)
        auth = DigestAuthenticator(self.directory, b"k" * 32, self.clock, realm_for)
        self.core.registrar = Registrar(auth, self.store, self.clock, realm_for)
        self.core.proxy = Proxy(self.core, self.clock, realm_for, "falcot.com", self.directory, self.store, auth)
        self.items = Items()
        self.settings = SimpleNamespace(
            sip=SimpleNamespace(websocket="sip-websocket"),
            web=SimpleNamespace(listen="tcp:8443:interface=192.0.2.1", tls=True, origins=(ORIGIN,)))
        self.factory = websocket.mount(self.settings, self.core, self.store, self.items)
        self.site = make_site(self.items)
        self._registrations = 0

    def browser(self, **kwargs) -> Browser:
        browser = Browser(self.site, **kwargs)
        self.assertEqual(browser.ws.status, 101)
        return browser

    def register(self, user: str = "roland", transport: StringTransport | None = None) -> Browser:
        """A browser that registered ``user`` with digest over its WebSocket (a Call-ID of its own)."""
        browser = self.browser(transport=transport)
        self._registrations += 1
        common = dict(user=user, to=f"sip:{user}@falcot.com", call_id=f"reg-{self._registrations}")
        browser.send(browser_request("REGISTER", "sip:falcot.com", **common))
        [challenge] = browser.take()
        self.assertEqual(challenge.status, 401)
        retry = browser_request("REGISTER", "sip:falcot.com", cseq=2, branch="z9hG4bKws2", **common)
        value = authorization(challenges(challenge)[0], parse(retry.encode()), username=user)
        browser.send(browser_request("REGISTER", "sip:falcot.com", cseq=2, branch="z9hG4bKws2",
                                     extra=(f"Authorization: {value}",), **common))
        [ok] = browser.take()
        self.assertEqual(ok.status, 200)
        return browser

    def udp_sent(self, to: tuple[str, int] | None = None) -> list[SipRequest | SipResponse]:
        written, self.udp.transport.written = self.udp.transport.written, []
        return [parse(data) for data, address in written if to is None or address == to]


class RegistrationTests(SipWebSocketTestCase):
    def test_registerOverWssStoresTheFlow(self) -> None:
        """
        If a browser registers over WSS with digest, the 401 (with its MD5 challenge only: JsSIP
        keeps the last challenge header, SIP.js the first, both do MD5 only) and the 200 come back
        as WebSocket messages with the browser's .invalid Via stamped with received, and the binding holds the
        Contact and the connection's wss- flow token, which is in the flow table.
        """
        browser = self.browser()
        browser.send(browser_request("REGISTER", "sip:falcot.com", to="sip:roland@falcot.com"))
        [challenge] = browser.take()
        self.assertEqual(challenge.status, 401)
        via = challenge.via[0]
        self.assertEqual((via.transport, via.host, via.received), ("WSS", "df7jal23ls0d.invalid", "203.0.113.5"))
        self.assertEqual([c["algorithm"] for c in challenges(challenge)], ["MD5"])
        browser.ws.take()
        self.register(transport=WssTransport(port=50001))
        [binding] = self.store.lookup(("roland", "falcot.com"), NOW)
        self.assertEqual(binding.contact, "sip:rolandx@df7jal23ls0d.invalid;transport=ws;ob")
        self.assertTrue(binding.flow.startswith("wss-"), binding.flow)
        self.assertEqual(self.core.transports.flows[binding.flow].transport_name, "WSS")
        self.assertEqual(binding.source, ("203.0.113.5", 50001))

    def test_connectionLossRemovesItsBindingsOnly(self) -> None:
        """
        If a browser's WebSocket closes, the bindings registered over it are removed and its flow
        leaves the table; the same account's binding on another connection stays.
        """
        first = self.register(transport=WssTransport(port=50001))
        self.register(transport=WssTransport(port=50002))
        bindings = self.store.lookup(("roland", "falcot.com"), NOW)
        self.assertEqual(len({b.flow for b in bindings}), 1, "same instance and reg-id: one binding")
        joe = self.register("joe", transport=WssTransport(port=50003))
        self.assertEqual(len(self.store.lookup(("joe", "falcot.com"), NOW)), 1)
        joe.ws.lose()
        self.assertEqual(self.store.lookup(("joe", "falcot.com"), NOW), [])
        self.assertEqual(len(self.store.lookup(("roland", "falcot.com"), NOW)), 1)
        first.ws.lose()  # its binding was replaced by the second connection's: nothing to remove
        self.assertEqual(len(self.store.lookup(("roland", "falcot.com"), NOW)), 1)
        self.assertEqual(len([t for t in self.core.transports.flows if t.startswith("wss-")]), 1)

    def test_listenerJoinsTheTransports(self) -> None:
        """
        If the endpoint is mounted, the web listener is a WSS listener of the SIP transports: our
        own address for Record-Route on that side, and Route entries naming it are ours.
        """
        transports = self.core.transports
        self.assertIn(("WSS", "192.0.2.1", 8443), transports.listeners)
        self.assertEqual(transports.local_address("WSS"), ("192.0.2.1", 8443))
        self.assertTrue(transports.is_local("192.0.2.1", 8443))
        self.assertEqual(transports.local_address("UDP"), PROXY_UDP)

    def test_notMountedWithoutPathOrListener(self) -> None:
        """
        If [sip] websocket is empty or there is no web listener, nothing is mounted.
        """
        for sip, web in (("", "tcp:8443"), ("sip-websocket", "")):
            items = Items()
            self.settings.sip.websocket, self.settings.web.listen = sip, web
            self.assertIsNone(websocket.mount(self.settings, self.core, self.store, items))
            self.assertEqual(items.get("http-path"), [])


class CallTests(SipWebSocketTestCase):
    def test_deskPhoneCallsBrowserOverItsFlow(self) -> None:
        """
        If a UDP phone calls roland, registered in a browser, the INVITE goes over roland's
        WebSocket with two Record-Routes (UDP side and WSS side, each naming the WebSocket flow);
        the browser's 200 reaches the phone over UDP, and the ACK sent along the route reaches the
        browser over the same WebSocket.
        """
        browser = self.register()
        self.udp.datagramReceived(desk_request(), DESK)
        [invite] = browser.take()
        self.assertIsInstance(invite, SipRequest)
        self.assertEqual(str(invite.uri), "sip:rolandx@df7jal23ls0d.invalid;transport=ws;ob")
        routes = invite.headers.get_all("Record-Route")
        [flow] = [t for t in self.core.transports.flows if t.startswith("wss-")]
        self.assertEqual(routes, [f"<sip:{flow}@192.0.2.1:8443;transport=wss;lr>",
                                  f"<sip:{flow}@192.0.2.1:5060;transport=udp;lr>"])
        self.assertEqual(invite.via[0].transport, "WSS")
        self.udp_sent()
        browser.send(bytes(make_response(invite, 200, to_tag="brw2")).decode())
        self.assertEqual([m.status for m in self.udp_sent(DESK) if isinstance(m, SipResponse)], [200])
        ack = desk_request("ACK", "sip:rolandx@df7jal23ls0d.invalid;transport=ws", to_tag="brw2",
                           branch="z9hG4bKdesk2",
                           extra=tuple(f"Route: {r}" for r in reversed(routes)))
        self.udp.datagramReceived(ack, DESK)
        [forwarded] = browser.take()
        self.assertEqual((forwarded.method, forwarded.headers.get("Route")), ("ACK", None))

    def test_browserCallsDeskPhoneOverUdp(self) -> None:
        """
        If joe in a browser calls roland's UDP desk phone, the proxy challenges him (407 over the
        WebSocket, MD5 only), then forwards the authenticated INVITE over UDP with both Record-Routes, and
        roland's 180 and 200 reach the browser as WebSocket messages.
        """
        self.store.update(("roland", "falcot.com"), [Binding(
            ("roland", "falcot.com"), f"sip:roland@{DESK[0]}:{DESK[1]}", NOW + 3600, 1.0, "c", 1, None, None,
            None, DESK)])
        joe = self.register("joe")
        invite = browser_request("INVITE", "sip:roland@falcot.com", "joe", call_id="ws-call-2")
        joe.send(invite)
        statuses = joe.take()
        self.assertEqual([m.status for m in statuses], [100, 407])
        self.assertEqual([c["algorithm"] for c in challenges(statuses[1], proxy=True)], ["MD5"])
        retry = browser_request("INVITE", "sip:roland@falcot.com", "joe", call_id="ws-call-2", cseq=2,
                                branch="z9hG4bKws3")
        value = authorization(challenges(statuses[1], proxy=True)[0], parse(retry.encode()), username="joe")
        joe.send(browser_request("INVITE", "sip:roland@falcot.com", "joe", call_id="ws-call-2", cseq=2,
                                 branch="z9hG4bKws3", extra=(f"Proxy-Authorization: {value}",)))
        [forwarded] = self.udp_sent(DESK)
        [flow] = [t for t in self.core.transports.flows if t.startswith("wss-")]
        self.assertEqual(forwarded.headers.get_all("Record-Route"),
                         [f"<sip:{flow}@192.0.2.1:5060;transport=udp;lr>",
                          f"<sip:{flow}@192.0.2.1:8443;transport=wss;lr>"])
        self.assertIsNone(forwarded.headers.get("Proxy-Authorization"))
        joe.take()
        for status in (180, 200):
            self.udp.datagramReceived(bytes(make_response(forwarded, status, to_tag="desk9")), DESK)
        self.assertEqual([m.status for m in joe.take()], [180, 200])

    def test_closedBrowserIsUnreachable(self) -> None:
        """
        If roland's only binding is a browser whose WebSocket has gone (say, stored before a
        restart), a call gets 480 and nothing is sent over UDP to the browser's old address.
        """
        self.store.update(("roland", "falcot.com"), [Binding(
            ("roland", "falcot.com"), "sip:r@abc.invalid;transport=ws", NOW + 3600, 1.0, "c", 1, None, None,
            "wss-0123456789abcdef", ("203.0.113.5", 50000))])
        self.udp.datagramReceived(desk_request(), DESK)
        sent = self.udp_sent()
        self.assertEqual([m.status for m in sent if isinstance(m, SipResponse)], [100, 480])
        self.assertEqual([m for m in sent if isinstance(m, SipRequest)], [])

    def test_browserGoneAfterRegisterGets480(self) -> None:
        """
        If the browser that registered roland closes its tab, a later call to roland gets 480.
        """
        browser = self.register()
        browser.ws.lose()
        self.udp.datagramReceived(desk_request(), DESK)
        self.assertEqual([m.status for m in self.udp_sent(DESK)], [100, 480])


class ChallengeTests(SynchronousTestCase):
    def test_md5ChallengesOnly(self) -> None:
        """
        If a 401 or 407 offers MD5 and SHA-256, the browser's copy keeps only MD5; other messages,
        challenges without MD5, and unparseable bytes pass unchanged.
        """
        from unirtc.sip.websocket import md5_challenges_only

        req = parse(browser_request("REGISTER", "sip:falcot.com").encode())
        both = make_response(req, 401, to_tag="t")
        for algorithm in ("MD5", "SHA-256"):
            both.headers.add("WWW-Authenticate", f'Digest realm="falcot.com", nonce="n", algorithm={algorithm}')
        kept = parse(md5_challenges_only(bytes(both)))
        self.assertEqual([c["algorithm"] for c in challenges(kept)], ["MD5"])
        sha_only = make_response(req, 407, to_tag="t")
        sha_only.headers.add("Proxy-Authenticate", 'Digest realm="falcot.com", nonce="n", algorithm=SHA-256')
        for data in (bytes(sha_only), bytes(make_response(req, 200, to_tag="t")), b"SIP/2.0 401 \x00garbage"):
            self.assertEqual(md5_challenges_only(data), data)


class HostileTests(SipWebSocketTestCase):
    def test_foreignOriginIsRefused(self) -> None:
        """
        If a page of another site opens the SIP WebSocket, the upgrade is refused with 403.
        """
        browser = Browser(self.site, origin="https://evil.example")
        self.assertEqual(browser.ws.status, 403)

    def test_plainWsOnlyFromLoopback(self) -> None:
        """
        If a client reaches the SIP WebSocket without TLS, it is closed with 1008 unless it comes
        from loopback (a TLS proxy on this host), whose requests carry Via WS and are served.
        """
        remote = Browser(self.site, transport=WssTransport(secure=False))
        self.assertEqual(remote.ws.closed_with.code, 1008)
        self.assertEqual([t for t in self.core.transports.flows if t.startswith("ws")], [])
        local = Browser(self.site, transport=WssTransport("127.0.0.1", secure=False))
        local.send(browser_request("OPTIONS", "sip:falcot.com", transport="WS"))
        [answer] = local.take()
        self.assertEqual((answer.status, answer.via[0].transport), (200, "WS"))
        self.assertTrue(any(t.startswith("ws-") for t in self.core.transports.flows))

    def test_malformedMessageGets400AndTheConnectionStays(self) -> None:
        """
        If a browser sends a request with a broken CSeq, it gets 400 over the WebSocket; garbage
        gets nothing; the connection stays open and serves the next request.
        """
        browser = self.browser()
        broken = browser_request("OPTIONS", "sip:falcot.com").replace("Max-Forwards: 69", "Max-Forwards: many")
        browser.send(broken)
        browser.send("\x00\x01 not SIP at all")
        [answer] = browser.take()
        self.assertEqual(answer.status, 400)
        browser.send(browser_request("OPTIONS", "sip:falcot.com", branch="z9hG4bKws9"))
        self.assertEqual([m.status for m in browser.take()], [200])
        self.assertFalse(browser.ws.disconnected)

    def test_binaryMessagesCarrySipToo(self) -> None:
        """
        If a client sends a SIP request in a binary message (RFC 7118 §4.2), it is served.
        """
        browser = self.browser()
        browser.send(browser_request("OPTIONS", "sip:falcot.com").encode())
        self.assertEqual([m.status for m in browser.take()], [200])

    def test_oversizedMessageClosesWith1009(self) -> None:
        """
        If a message exceeds 65535 bytes, the connection is closed with 1009 and its flow leaves
        the table.
        """
        browser = self.browser()
        browser.send(browser_request("MESSAGE", "sip:roland@falcot.com", body="x" * 70000))
        self.assertEqual(browser.ws.closed_with.code, 1009)
        browser.ws.lose()
        self.assertEqual(self.core.transports.flows, {})

    def test_crlfKeepAliveGetsPong(self) -> None:
        """
        If a client sends a double CRLF (RFC 5626 keep-alive), it gets a CRLF back.
        """
        browser = self.browser()
        browser.send("\r\n\r\n")
        self.assertEqual(browser.ws.take(), ["\r\n"])

    def test_quietPeerIsPingedAndADeadOneClosed(self) -> None:
        """
        If a WebSocket is quiet for the keepalive interval, the server pings it; a peer that
        answers the pings stays connected however long it says nothing else; one that answers
        nothing is closed (1001) once DEAD_AFTER has passed, and its flow leaves the table.
        """
        live, dead = self.browser(), self.browser(transport=WssTransport(port=50009))
        self.clock.advance(KEEPALIVE_INTERVAL)
        self.assertEqual((live.ws.messages(), live.ws.pings), ([], [b""]))
        for _ in range(10):
            live.ws.send_raw(live.ws.ws.send(Pong(b"")))
            self.clock.advance(KEEPALIVE_INTERVAL)
        live.ws.messages()
        dead.ws.messages()
        self.assertIsNone(live.ws.closed_with)
        self.assertEqual(dead.ws.closed_with.code, 1001)
        self.assertGreaterEqual(len(dead.ws.pings), 2)
        dead.ws.lose()
        self.assertEqual(len([t for t in self.core.transports.flows if t.startswith("wss-")]), 1)

    def test_trafficPostponesThePing(self) -> None:
        """
        If the peer sent something within the interval, no ping goes out at that tick.
        """
        browser = self.browser()
        self.clock.advance(KEEPALIVE_INTERVAL - 10)
        browser.send("\r\n\r\n")
        self.clock.advance(10)
        browser.ws.messages()
        self.assertEqual(browser.ws.pings, [])

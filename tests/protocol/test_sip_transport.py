"""SIP transports without sockets: UDP on a fake datagram transport, TCP on StringTransport."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from unirtc.certificates import CertificateService
from unirtc.config import load_settings
from unirtc.sip.message import SipRequest, SipResponse, parse
from unirtc.sip.service import make_sip_listeners
from unirtc.sip.transport import (
    IDLE_TIMEOUT,
    Hop,
    SipDatagramProtocol,
    SipStreamFactory,
    Transports,
    stamp_via,
    uri_hop,
    via_hop,
)
from unirtc.sip.uri import parse_uri
from unirtc.tls import CertificateFiles
from unirtc.turn.stun import Class, Message, Method, parse_message

CLIENT = ("192.0.2.7", 40000)


def options(via: str = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o1;rport", body: bytes = b"",
            call_id: str = "opt-1") -> bytes:
    head = (
        "OPTIONS sip:falcot.com SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:joe@falcot.com>;tag=a1\r\n"
        "To: <sip:falcot.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[SipRequest | SipResponse, Hop]] = []
        self.explode = False

    def receive(self, message: SipRequest | SipResponse, source: Hop) -> None:
        if self.explode:
            raise RuntimeError("a bug in the transaction user")
        self.messages.append((message, source))


class Setup:
    def __init__(self) -> None:
        self.clock = Clock()
        self.receiver = Recorder()
        self.reactor = MemoryReactorClock()
        self.transports = Transports(self.receiver, self.clock, "falcot.com",
                                     connect_tcp=self.reactor.connectTCP)
        self.transports.listeners = [("UDP", "192.0.2.1", 5060), ("TCP", "192.0.2.1", 5060)]
        self.udp = SipDatagramProtocol(self.transports)
        self.udp.transport = FakeDatagramTransport()
        self.udp.startProtocol()

    def tcp(self, peer: tuple[str, int] = CLIENT):
        protocol = SipStreamFactory(self.transports, "TCP").buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
        protocol.makeConnection(transport)
        return protocol, transport


class UdpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Setup()

    def test_rportAndReceivedAreFilledIn(self) -> None:
        """
        If a request over UDP asks for rport, its top Via gets received and rport with the
        source address, and responses go there (RFC 3581).
        """
        self.s.udp.datagramReceived(options(), CLIENT)
        [(message, source)] = self.s.receiver.messages
        via = message.via[0]
        self.assertEqual((via.received, via.rport), CLIENT)
        self.assertEqual(source, Hop("UDP", *CLIENT))
        self.assertEqual(via_hop(via), Hop("UDP", *CLIENT))

    def test_receivedWithoutRport(self) -> None:
        """
        If sent-by differs from the source and rport is absent, received is added and
        responses go to received at the sent-by port (§18.2.1, §18.2.2).
        """
        self.s.udp.datagramReceived(options("SIP/2.0/UDP pc.example.com:5062;branch=z9hG4bK-2"), CLIENT)
        via = self.s.receiver.messages[0][0].via[0]
        self.assertEqual(via.received, CLIENT[0])
        self.assertNotIn("rport", via.params)
        self.assertEqual(via_hop(via), Hop("UDP", CLIENT[0], 5062))

    def test_matchingSentByIsLeftAlone(self) -> None:
        """
        If sent-by is the source address and rport is absent, the Via is not rewritten.
        """
        data = options(f"SIP/2.0/UDP {CLIENT[0]}:{CLIENT[1]};branch=z9hG4bK-3")
        self.s.udp.datagramReceived(data, CLIENT)
        self.assertEqual(self.s.receiver.messages[0][0].headers.get("Via"),
                         f"SIP/2.0/UDP {CLIENT[0]}:{CLIENT[1]};branch=z9hG4bK-3")

    def test_malformedGets400ThenNextIsHandled(self) -> None:
        """
        If a request is malformed but answerable, the sender gets a 400 naming the problem,
        and the next valid datagram is still delivered.
        """
        bad = options().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
        self.s.udp.datagramReceived(bad, CLIENT)
        [(packet, addr)] = self.s.udp.transport.written
        response = parse(packet)
        self.assertEqual((response.status, addr), (400, CLIENT))
        self.assertIn("CSeq", response.reason)
        self.s.udp.datagramReceived(options(), CLIENT)
        self.assertEqual(len(self.s.receiver.messages), 1)

    def test_garbageIsDroppedSilently(self) -> None:
        """
        If a datagram cannot be answered (no headers to copy, a bad response), nothing is sent
        and nothing is delivered, and the drop is counted.
        """
        for junk in (b"\xff\xfe hello", b"SIP/2.0 200 OK\r\n\r\n", b"INVITE\r\n\r\n"):
            self.s.udp.datagramReceived(junk, CLIENT)
        self.assertEqual(self.s.udp.transport.written, [])
        self.assertEqual(self.s.receiver.messages, [])
        self.assertEqual(self.s.transports.dropped.count, 3)

    def test_crlfKeepAliveIsIgnored(self) -> None:
        """
        If a CRLF keep-alive arrives over UDP, nothing is answered or delivered.
        """
        self.s.udp.datagramReceived(b"\r\n\r\n", CLIENT)
        self.assertEqual((self.s.udp.transport.written, self.s.receiver.messages), ([], []))

    def test_stunKeepAliveGetsBindingResponse(self) -> None:
        """
        If a STUN Binding request arrives on the SIP port (RFC 5626 §4.4.2), it gets a
        Binding success response with the client's reflexive address.
        """
        request = Message(Method.BINDING, Class.REQUEST, bytes(range(12)))
        self.s.udp.datagramReceived(bytes(request), CLIENT)
        [(packet, addr)] = self.s.udp.transport.written
        answer = parse_message(packet)
        self.assertEqual((answer.message_class, addr), (Class.RESPONSE, CLIENT))

    def test_receiverFailureDoesNotEscape(self) -> None:
        """
        If the layer above raises, the datagram is dropped and the protocol keeps working.
        """
        self.s.receiver.explode = True
        self.s.udp.datagramReceived(options(), CLIENT)
        self.s.receiver.explode = False
        self.s.udp.datagramReceived(options(), CLIENT)
        self.assertEqual(len(self.s.receiver.messages), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sendOverUdp(self) -> None:
        """
        If a message is sent to a UDP hop, it is written to that address.
        """
        self.s.transports.send(b"data", Hop("UDP", "198.51.100.2", 5070))
        self.assertEqual(self.s.udp.transport.written, [(b"data", ("198.51.100.2", 5070))])

    def test_ipv4OverDualStackSocketIsMapped(self) -> None:
        """
        If the only UDP socket is IPv6 (bound to ::), IPv4 sources are reported plainly and
        IPv4 destinations are written as v4-mapped addresses.
        """
        s = Setup()
        s.udp.stopProtocol()
        udp6 = SipDatagramProtocol(s.transports, ipv6=True)
        udp6.transport = FakeDatagramTransport()
        udp6.startProtocol()
        udp6.datagramReceived(options(), ("::ffff:192.0.2.7", 40000, 0, 0))
        self.assertEqual(s.receiver.messages[0][1].host, "192.0.2.7")
        s.transports.send(b"x", Hop("UDP", "192.0.2.7", 40000))
        self.assertEqual(udp6.transport.written, [(b"x", ("::ffff:192.0.2.7", 40000))])

    def test_noSocketReportsError(self) -> None:
        """
        If there is no UDP socket for the destination, the error callback runs.
        """
        errors = []
        self.s.transports.send(b"x", Hop("UDP", "2001:db8::1", 5060), on_error=lambda: errors.append(1))
        self.assertEqual(errors, [1])


class StreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Setup()
        self.protocol, self.transport = self.s.tcp()

    def test_framingSurvivesArbitrarySplits(self) -> None:
        """
        If two messages arrive split byte by byte, each is delivered once, whole, with the
        connection's flow token as its source.
        """
        data = options(body=b"v=0\r\n", call_id="a") + options(call_id="b")
        for i in range(len(data)):
            self.protocol.dataReceived(data[i:i + 1])
        self.assertEqual([m.call_id for m, _ in self.s.receiver.messages], ["a", "b"])
        self.assertEqual(self.s.receiver.messages[0][0].body, b"v=0\r\n")
        source = self.s.receiver.messages[0][1]
        self.assertEqual(source, Hop("TCP", *CLIENT, flow=self.protocol.token))

    def test_keepAliveGetsPong(self) -> None:
        """
        If a client sends a double-CRLF ping, it gets a single CRLF pong (RFC 5626 §4.4.1).
        """
        self.protocol.dataReceived(b"\r\n\r\n")
        self.assertEqual(self.transport.value(), b"\r\n")

    def test_badMessageGets400AndStreamContinues(self) -> None:
        """
        If a framed message is malformed, the client gets a 400 on the connection, which
        stays open for the next message.
        """
        bad = options().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
        self.protocol.dataReceived(bad + options())
        self.assertEqual(parse(self.transport.value(), stream=True).status, 400)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.s.receiver.messages), 1)

    def test_framingErrorClosesConnection(self) -> None:
        """
        If a message on a stream has no Content-Length, the stream cannot be resynchronised
        and the connection is closed.
        """
        self.protocol.dataReceived(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.s.receiver.messages, [])

    def test_flowTableReusesConnection(self) -> None:
        """
        If a message is sent to the connection's flow token, it goes over that connection;
        once the connection is lost, the token is forgotten.
        """
        token = self.protocol.token
        self.assertIs(self.s.transports.flows[token], self.protocol)
        self.s.transports.send(b"NOTIFY", Hop("TCP", "203.0.113.9", 5060, flow=token))
        self.assertEqual(self.transport.value(), b"NOTIFY")
        self.protocol.connectionLost(None)
        self.assertNotIn(token, self.s.transports.flows)

    def test_sendByAddressReusesConnection(self) -> None:
        """
        If a TCP hop names the address of an open connection, that connection is used.
        """
        self.s.transports.send(b"hello", Hop("TCP", *CLIENT))
        self.assertEqual(self.transport.value(), b"hello")

    def test_largeRequestSwitchesToOpenTcpConnection(self) -> None:
        """
        If a request over 1300 bytes is bound for a UDP hop and a TCP connection to that
        address is open, the TCP connection is chosen (§18.1.1); a small one stays on UDP.
        """
        hop = Hop("UDP", *CLIENT)
        self.assertEqual(self.s.transports.choose(hop, 2000), Hop("TCP", *CLIENT, flow=self.protocol.token))
        self.assertEqual(self.s.transports.choose(hop, 500), hop)
        other = Hop("UDP", "198.51.100.3", 5060)
        self.assertEqual(self.s.transports.choose(other, 2000), other)

    def test_newOutboundConnection(self) -> None:
        """
        If a TCP hop has no open connection, one is opened and the message is written once it
        connects; a failed connection runs the error callback instead.
        """
        errors = []
        self.s.transports.send(b"INVITE", Hop("TCP", "198.51.100.4", 5070), on_error=lambda: errors.append(1))
        host, port, factory, _, _ = self.s.reactor.tcpClients[0]
        self.assertEqual((host, port), ("198.51.100.4", 5070))
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"INVITE")
        self.s.transports.send(b"FAIL", Hop("TCP", "198.51.100.5", 5070), on_error=lambda: errors.append(2))
        self.s.reactor.tcpClients[1][2].clientConnectionFailed(None, None)
        self.assertEqual(errors, [2])

    def test_noOutboundTls(self) -> None:
        """
        If a TLS hop has no open connection, nothing is opened and the error callback runs.
        """
        errors = []
        self.s.transports.send(b"x", Hop("TLS", "198.51.100.4", 5061), on_error=lambda: errors.append(1))
        self.assertEqual((errors, self.s.reactor.tcpClients), ([1], []))

    def test_idleConnectionIsClosed(self) -> None:
        """
        If a connection stays silent for the idle timeout, it is closed; traffic resets it.
        """
        self.s.clock.advance(IDLE_TIMEOUT - 1)
        self.protocol.dataReceived(b"\r\n\r\n")
        self.s.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnecting)
        self.s.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)


class HelperTests(SynchronousTestCase):
    def test_stampViaIpv6Source(self) -> None:
        """
        If an IPv6 client asks for rport, received holds the bare address and rport the port.
        """
        message = parse(options())
        stamp_via(message, Hop("UDP", "2001:db8::7", 5099))
        via = message.via[0]
        self.assertEqual((via.received, via.rport), ("2001:db8::7", 5099))
        self.assertEqual(via_hop(via), Hop("UDP", "2001:db8::7", 5099))

    def test_uriHop(self) -> None:
        """
        If a URI has a numeric host, its hop follows transport, sips: and default ports;
        a host name gives None (it would need DNS).
        """
        self.assertEqual(uri_hop(parse_uri("sip:a@192.0.2.1")), Hop("UDP", "192.0.2.1", 5060))
        self.assertEqual(uri_hop(parse_uri("sip:a@192.0.2.1:5070;transport=TCP")), Hop("TCP", "192.0.2.1", 5070))
        self.assertEqual(uri_hop(parse_uri("sips:a@[2001:db8::1]")), Hop("TLS", "2001:db8::1", 5061))
        self.assertIsNone(uri_hop(parse_uri("sip:a@pc.example.com")))

    def test_localAddressAndIsLocal(self) -> None:
        """
        If a listener is bound to an address, Via and Record-Route use it; if bound to a
        wildcard, the advertised name; is_local recognises both with the right port.
        """
        t = Transports(Recorder(), Clock(), "falcot.com")
        t.listeners = [("UDP", "192.0.2.1", 5060), ("TLS", "", 5061)]
        self.assertEqual(t.local_address("UDP"), ("192.0.2.1", 5060))
        self.assertEqual(t.local_address("TLS"), ("falcot.com", 5061))
        self.assertTrue(t.is_local("192.0.2.1", 5060))
        self.assertTrue(t.is_local("falcot.com", None))
        self.assertFalse(t.is_local("192.0.2.1", 5070))
        self.assertFalse(t.is_local("192.0.2.99", 5060))


class ListenerTests(SynchronousTestCase):
    def test_listenersFromConfig(self) -> None:
        """
        If [sip] listen names UDP, TCP and TLS on IPv4 and IPv6, make_sip_listeners returns
        the binding store and one named listener each: UDP through UDPServer (the IPv6 one
        dual-stack), TCP through tcp/tcp6 endpoints, TLS wrapped in TLS over TCP.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text(
            "[server]\ndomain = falcot.com\n[sip]\ndomains = sip.falcot.com\n"
            "listen = udp:5060:interface=127.0.0.1 tcp:5060:interface=127.0.0.1 "
            "tls:5061:interface=127.0.0.1 udp:5070:interface=\\:\\: tcp:5070:interface=\\:\\:\n")
        settings = load_settings(folder / "u.ini")

        class Reactor(MemoryReactorClock):
            def __init__(self) -> None:
                super().__init__()
                self.udp: list[tuple] = []

            def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
                self.udp.append((port, protocol, interface))

        reactor = Reactor()
        certificate = CertificateService(CertificateFiles(folder / "c.pem", folder / "k.pem"), ["falcot.com"], True)
        services = make_sip_listeners(settings, directory=None, certificate=certificate, reactor=reactor)
        self.assertEqual([s.name for s in services], [
            "sip-bindings", "sip-udp-5060-127.0.0.1", "sip-tcp-5060-127.0.0.1",
            "sip-tls-5061-127.0.0.1", "sip-udp-5070-::", "sip-tcp-5070-::"])
        for service in services[1:]:
            service.privilegedStartService()
        self.assertEqual([(port, interface, proto.ipv6) for port, proto, interface in reactor.udp],
                         [(5060, "127.0.0.1", False), (5070, "::", True)])
        servers = [(port, type(factory).__name__, interface) for port, factory, _, interface in reactor.tcpServers]
        self.assertEqual(servers, [(5060, "SipStreamFactory", "127.0.0.1"),
                                   (5061, TLSMemoryBIOFactory.__name__, "127.0.0.1"),
                                   (5070, "SipStreamFactory", "::")])
        self.assertTrue((folder / "var" / "server.key").exists())

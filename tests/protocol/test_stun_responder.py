"""The embedded STUN responder: ``respond`` decisions and the UDP adapter on a fake transport."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import MessageLengthError
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import load_settings
from unirtc.service import makeService, service_named
from unirtc.turn import responder
from unirtc.turn.responder import StunResponder, respond
from unirtc.turn.stun import COOKIE, Class, Message, Method, StunError, parse_message

TID = bytes(range(12))
SOURCE = ("192.0.2.1", 32853)
RFC5769 = Path(__file__).parent.parent / "corpora" / "stun_rfc5769"


def binding_request(fingerprint: bool = True, attributes: dict | None = None) -> bytes:
    message = Message(Method.BINDING, Class.REQUEST, TID, dict(attributes or {}))
    if fingerprint:
        message.add_fingerprint()
    return bytes(message)


def frame(body: bytes, message_type: int = 0x0001) -> bytes:
    return struct.pack(">HHI", message_type, len(body), COOKIE) + TID + body


class RespondTests(SynchronousTestCase):
    def test_bindingRequestGetsMappedAddress(self) -> None:
        """
        If a Binding request arrives, the answer is a success response with the same transaction
        ID, XOR-MAPPED-ADDRESS equal to the source, and a valid FINGERPRINT like the request's.
        """
        answer = parse_message(respond(binding_request(), SOURCE))
        self.assertEqual((answer.message_method, answer.message_class), (Method.BINDING, Class.RESPONSE))
        self.assertEqual(answer.transaction_id, TID)
        self.assertEqual(answer.attributes["XOR-MAPPED-ADDRESS"], SOURCE)
        self.assertIn("FINGERPRINT", answer.attributes)

    def test_ipv6AndMappedSources(self) -> None:
        """
        If the request comes over IPv6 (Twisted's 4-tuple address), the mapped address is IPv6;
        an IPv4 client on a dual-stack socket (::ffff:a.b.c.d) is told its IPv4 address.
        """
        answer = parse_message(respond(binding_request(), ("2001:db8::7", 4000, 0, 0)))
        self.assertEqual(answer.attributes["XOR-MAPPED-ADDRESS"], ("2001:db8::7", 4000))
        answer = parse_message(respond(binding_request(), ("::ffff:192.0.2.9", 4001, 0, 0)))
        self.assertEqual(answer.attributes["XOR-MAPPED-ADDRESS"], ("192.0.2.9", 4001))

    def test_rfc5769RequestAnswered(self) -> None:
        """
        If the RFC 5769 §2.1 sample request (with USERNAME, PRIORITY, ICE attributes and
        MESSAGE-INTEGRITY) arrives, it gets a success response: the responder needs no credentials.
        """
        data = (RFC5769 / "2.1_sample_request.bin").read_bytes()
        answer = parse_message(respond(data, SOURCE))
        self.assertEqual(answer.message_class, Class.RESPONSE)
        self.assertEqual(answer.transaction_id, data[8:20])

    def test_unknownComprehensionRequiredGets420(self) -> None:
        """
        If a Binding request carries an unknown comprehension-required attribute, the answer is
        420 listing it in UNKNOWN-ATTRIBUTES.
        """
        answer = parse_message(respond(binding_request(attributes={0x7F01: b"abcd"}), SOURCE))
        self.assertEqual(answer.message_class, Class.ERROR)
        self.assertEqual(answer.attributes["ERROR-CODE"][0], 420)
        self.assertEqual(answer.attributes["UNKNOWN-ATTRIBUTES"], [0x7F01])

    def test_malformedBindingRequestGets400(self) -> None:
        """
        If a datagram is framed as a Binding request but an attribute inside is malformed (a
        truncated XOR-MAPPED-ADDRESS, a non-UTF-8 USERNAME), the answer is 400 with its
        transaction ID.
        """
        for body in (struct.pack(">HH", 0x0020, 4) + b"\x00\x01\x00\x00",
                     struct.pack(">HH", 0x0006, 4) + b"\xff\xfe\xfd\xfc"):
            answer = parse_message(respond(frame(body), SOURCE))
            self.assertEqual(answer.attributes["ERROR-CODE"], (400, "Bad Request"))
            self.assertEqual(answer.transaction_id, TID)

    def test_badFingerprintIsDropped(self) -> None:
        """
        If a Binding request's FINGERPRINT is wrong, it is dropped (StunError), not answered:
        RFC 8489 §7.3 treats it as possibly another protocol.
        """
        data = bytearray(binding_request())
        data[-1] ^= 0xFF
        self.assertRaises(StunError, respond, bytes(data), SOURCE)

    def test_nonStunIsDropped(self) -> None:
        """
        If a datagram is not STUN (too short, bad cookie, high bits set, length mismatch, length
        not a multiple of 4), it is dropped with a StunError saying why.
        """
        good = binding_request(fingerprint=False)
        for data in (b"", b"hello world", b"\x00" * 19, good[:4] + b"\x00\x00\x00\x00" + good[8:],
                     b"\xc0" + good[1:], good + b"\x00", frame(b"\x00\x01\x00")):
            self.assertRaises(StunError, respond, data, SOURCE)

    def test_oversizeDatagramIsDropped(self) -> None:
        """
        If a datagram is larger than any STUN message can be, it is dropped.
        """
        data = struct.pack(">HHI", 0x0001, 0xFFFC, COOKIE) + TID + b"\x00" * 70000
        self.assertRaises(StunError, respond, data, SOURCE)

    def test_nothingOwedForIndicationsResponsesAndOtherMethods(self) -> None:
        """
        If a valid STUN message is not a Binding request (an indication, a response, an Allocate
        request), there is no answer and no error.
        """
        for method, klass in ((Method.BINDING, Class.INDICATION), (Method.BINDING, Class.RESPONSE),
                              (Method.ALLOCATE, Class.REQUEST)):
            self.assertIsNone(respond(bytes(Message(method, klass, TID)), SOURCE))

    def test_sourcePortZeroIsDropped(self) -> None:
        """
        If the source port is 0 (a spoofed or broken sender), nothing can be answered: StunError.
        """
        self.assertRaises(StunError, respond, binding_request(), ("192.0.2.1", 0))

    def test_softwareIsOptional(self) -> None:
        """
        If the responder is configured without SOFTWARE, answers carry none (smaller answers).
        """
        answer = parse_message(respond(binding_request(), SOURCE, software=None))
        self.assertNotIn("SOFTWARE", answer.attributes)


@given(st.binary(max_size=600))
def test_respondRaisesOnlyStunError(data: bytes) -> None:
    """If any bytes arrive, respond answers, returns None or raises StunError; nothing else."""
    try:
        respond(data, SOURCE)
    except StunError:
        pass


@given(st.binary(max_size=200).map(lambda body: body[: len(body) - len(body) % 4]))
def test_framedGarbageAnsweredOrDropped(body: bytes) -> None:
    """If a valid Binding header fronts random attribute bytes, the answer is STUN or a StunError."""
    try:
        answer = respond(frame(body), SOURCE)
    except StunError:
        return
    assert parse_message(answer).transaction_id == TID


class FailingTransport(FakeDatagramTransport):
    def write(self, packet, addr=FakeDatagramTransport.noAddr):
        raise MessageLengthError("message too long")


class StunResponderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict] = []
        self.patch(responder, "log", Logger(namespace="test", observer=self.events.append))
        self.protocol = StunResponder()
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def test_answersToTheSender(self) -> None:
        """
        If a Binding request arrives from an address, the answer is written to that address.
        """
        self.protocol.datagramReceived(binding_request(), SOURCE)
        [(packet, addr)] = self.transport.written
        self.assertEqual(addr, SOURCE)
        self.assertEqual(parse_message(packet).attributes["XOR-MAPPED-ADDRESS"], SOURCE)
        self.assertEqual((self.protocol.answered, self.protocol.dropped), (1, 0))

    def test_garbageThenValidStillAnswered(self) -> None:
        """
        If garbage datagrams arrive, they are dropped without an answer, and a valid request
        afterwards is answered as usual.
        """
        for junk in (b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 20, b"\xff" * 1500):
            self.protocol.datagramReceived(junk, SOURCE)
        self.assertEqual(self.transport.written, [])
        self.protocol.datagramReceived(binding_request(), SOURCE)
        self.assertEqual(len(self.transport.written), 1)
        self.assertEqual((self.protocol.answered, self.protocol.dropped), (1, 3))

    def test_dropsLoggedAtDebugOnPowersOfTwo(self) -> None:
        """
        If 100 junk datagrams arrive, only the 1st, 2nd, 4th ... 64th drop are logged, all at
        debug level, so a flood cannot fill the log.
        """
        for _ in range(100):
            self.protocol.datagramReceived(b"junk", SOURCE)
        self.assertEqual([e["count"] for e in self.events], [1, 2, 4, 8, 16, 32, 64])
        self.assertEqual({e["log_level"] for e in self.events}, {LogLevel.debug})

    def test_sendFailureIsADrop(self) -> None:
        """
        If the answer cannot be sent (the socket refuses it), the datagram counts as dropped and
        the responder keeps going.
        """
        protocol = StunResponder()
        protocol.makeConnection(FailingTransport())
        protocol.datagramReceived(binding_request(), SOURCE)
        self.assertEqual((protocol.answered, protocol.dropped), (0, 1))


class MemoryReactorWithUDP(MemoryReactorClock):
    """Twisted's memory reactor has no listenUDP; this one records UDP listeners."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: dict[int, tuple] = {}

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpPorts[port] = (protocol, interface)


class StunListenerTests(SynchronousTestCase):
    def service(self, turn: str) -> tuple[MemoryReactorWithUDP, object]:
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text(f"[server]\ndomain = falcot.com\n[turn]\n{turn}\n")
        reactor = MemoryReactorWithUDP()
        root = makeService(load_settings(folder / "u.ini"), reactor)
        return reactor, root

    def test_listenerFromConfig(self) -> None:
        """
        If [turn] stun names a UDP port and interface (IPv6 here), a "stun-udp" listener binds a
        StunResponder there on the given reactor.
        """
        reactor, root = self.service("stun = udp:3479:interface=\\:\\:")
        service_named(root, "listeners", "stun-udp").privilegedStartService()
        protocol, interface = reactor.udpPorts[3479]
        self.assertIsInstance(protocol, StunResponder)
        self.assertEqual(interface, "::")

    def test_noListenerWhenDisabled(self) -> None:
        """
        If [turn] stun is empty, there is no STUN listener.
        """
        reactor, root = self.service("stun =")
        self.assertRaises(KeyError, service_named, root, "listeners", "stun-udp")

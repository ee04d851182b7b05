"""STUN Binding over TCP: framing, answers, and closing on garbage or idleness."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from unirtc.turn.stream import StunStreamFactory
from unirtc.turn.stun import Class, Message, Method, parse_message


class StunStreamTests(SynchronousTestCase):
    def connect(self):
        self.clock = Clock()
        protocol = StunStreamFactory(self.clock, idle_timeout=30).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_requestsSplitAndPipelined(self) -> None:
        """
        If two Binding requests arrive split at odd places and back to back, each gets a success
        response with the peer's address, in order, and the connection stays open.
        """
        protocol, transport = self.connect()
        first, second = Message(Method.BINDING, Class.REQUEST), Message(Method.BINDING, Class.REQUEST)
        data = bytes(first) + bytes(second)
        for piece in (data[:7], data[7:25], data[25:]):
            protocol.dataReceived(piece)
        answers = transport.value()
        one = parse_message(answers[: len(answers) // 2])
        two = parse_message(answers[len(answers) // 2:])
        self.assertEqual((one.transaction_id, two.transaction_id), (first.transaction_id, second.transaction_id))
        self.assertEqual(one.attributes["XOR-MAPPED-ADDRESS"], ("192.0.2.7", 40000))
        self.assertFalse(transport.disconnecting)

    def test_garbageAndOversizeClose(self) -> None:
        """
        If the stream carries something that is not STUN, or announces a message larger than the
        responder answers, the connection is closed without an answer.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnected or transport.disconnecting)
        protocol, transport = self.connect()
        header = bytes(Message(Method.BINDING, Class.REQUEST))[:20]
        protocol.dataReceived(header[:2] + b"\xff\xfc" + header[4:])
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnected or transport.disconnecting)

    def test_idleConnectionClosed(self) -> None:
        """
        If a connection sends nothing for the idle timeout, it is closed; activity resets the timer.
        """
        protocol, transport = self.connect()
        self.clock.advance(20)
        protocol.dataReceived(bytes(Message(Method.BINDING, Class.REQUEST)))
        self.clock.advance(20)
        self.assertFalse(transport.disconnected or transport.disconnecting)
        self.clock.advance(11)
        self.assertTrue(transport.disconnected or transport.disconnecting)

"""Tests for unirtc.sip.message.StreamFramer: TCP/TLS framing, keep-alives, limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_samples import BASE_HEADERS, build, corpus, stream_wire
from unirtc.sip.message import (
    KeepAlive,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    is_keepalive,
    parse,
)


class StreamFramerTests(SynchronousTestCase):
    """Splitting TCP/TLS byte streams into messages."""

    def test_severalMessagesInOneChunk(self) -> None:
        """
        If several messages and a keep-alive arrive together, each comes out
        whole and in order, with a KeepAlive event for the double CRLF.
        """
        wire = stream_wire()
        data = wire["wsinv"] + b"\r\n\r\n" + wire["mpart01"] + b"\r\n" + wire["unreason"]
        events = StreamFramer().feed(data)
        self.assertEqual(events, [wire["wsinv"], KeepAlive(), wire["mpart01"], wire["unreason"]])
        self.assertEqual(KeepAlive.PONG, b"\r\n")

    def test_byteByByte(self) -> None:
        """
        If a message arrives one byte at a time, it comes out once, complete.
        """
        framer = StreamFramer()
        wire = stream_wire()["mpart01"]
        events = [event for i in range(len(wire)) for event in framer.feed(wire[i : i + 1])]
        self.assertEqual(events, [wire])

    def test_keepAliveSplitAcrossChunks(self) -> None:
        """
        If a double-CRLF ping arrives in pieces, one KeepAlive is reported once
        it is complete; a lone CRLF (a pong) is skipped.
        """
        framer = StreamFramer()
        self.assertEqual(framer.feed(b"\r\n"), [])
        self.assertEqual(framer.feed(b"\r"), [])
        self.assertEqual(framer.feed(b"\n"), [KeepAlive()])
        self.assertEqual(framer.feed(b"\r\n"), [])
        wire = stream_wire()["zeromf"]
        self.assertEqual(framer.feed(wire), [wire])

    def test_waitsForTheBody(self) -> None:
        """
        If Content-Length promises more than has arrived (clerr on TCP), no
        message is produced until the rest comes.
        """
        framer = StreamFramer()
        self.assertEqual(framer.feed(corpus("clerr")), [])
        self.assertEqual(framer.feed(b"x" * 9000), [])

    def test_framingErrors(self) -> None:
        """
        If Content-Length is missing, negative, conflicting or the message is
        oversized, feed raises SipParseError (400 or 413), keeps failing, and a
        new framer on another connection still works.
        """
        big_body = build(headers=[*BASE_HEADERS, "Content-Length: 70000"])
        cases = [
            (corpus("inv2543"), 400, "Missing Content-Length header"),
            (corpus("ncl"), 400, "Bad Content-Length header"),
            (corpus("mcl01"), 400, "Multiple Content-Length headers"),
            (big_body, 413, "Message Too Large"),
            (b"INVITE " + b"a" * 70000, 413, "Message Too Large"),
        ]
        for data, status, reason in cases:
            framer = StreamFramer()
            with self.assertRaises(SipParseError) as caught:
                framer.feed(data)
            self.assertEqual((caught.exception.status, caught.exception.reason), (status, reason))
            self.assertRaises(SipParseError, framer.feed, stream_wire()["zeromf"])
        wire = stream_wire()["zeromf"]
        self.assertEqual(StreamFramer().feed(wire), [wire])

    def test_smallerLimit(self) -> None:
        """
        If the framer has a small max_size, a message just over it is refused.
        """
        wire = stream_wire()["zeromf"]
        self.assertEqual(StreamFramer(max_size=len(wire)).feed(wire), [wire])
        self.assertRaises(SipParseError, StreamFramer(max_size=len(wire) - 1).feed, wire)

    def test_isKeepalive(self) -> None:
        """
        If a datagram holds only CRLFs it is a keep-alive; a message is not.
        """
        self.assertTrue(is_keepalive(b"\r\n\r\n"))
        self.assertFalse(is_keepalive(build()))


_STREAM_ITEMS = st.sampled_from([*stream_wire().values(), b"\r\n\r\n"])


@given(st.lists(_STREAM_ITEMS, max_size=6), st.lists(st.integers(1, 400), max_size=30))
@settings(max_examples=150, deadline=None)
def test_framerIgnoresChunkBoundaries(items: list[bytes], cuts: list[int]) -> None:
    """If a stream of messages and pings is cut anywhere, the framer yields the same events."""
    data = b"".join(items)
    framer = StreamFramer()
    events: list[bytes | KeepAlive] = []
    position = 0
    for size in [*cuts, len(data)]:
        events += framer.feed(data[position : position + size])
        position += size
    assert events == [KeepAlive() if item == b"\r\n\r\n" else item for item in items]
    frames = [event for event in events if isinstance(event, bytes)]
    assert all(isinstance(parse(frame, stream=True), SipRequest | SipResponse) for frame in frames)


"""Tests for unirtc.sip.message: parsing, validation, serialisation and responses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_samples import BASE_HEADERS, EXPECTED, build, corpus, without
from unirtc.sip.headers import Headers
from unirtc.sip.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    make_response,
    parse,
    reason_phrase,
)
from unirtc.sip.uri import SipURI


class ParseTests(SynchronousTestCase):
    """parse() on hand-built messages: syntax, validation and limits."""

    def assertRejected(
        self,
        data: bytes,
        reason: str, status: int = 400,
        stream: bool = False,
        max_size: int = 65535,
    ) -> None:
        with self.assertRaises(SipParseError) as caught:
            parse(data, stream, max_size=max_size)
        self.assertEqual((caught.exception.status, caught.exception.reason), (status, reason))

    def test_basicRequest(self) -> None:
        """
        If a plain INVITE is parsed, its typed views return the header values.
        """
        message = parse(build(body=b"v=0\r\n", headers=[*BASE_HEADERS, "Content-Length: 5"]))
        assert isinstance(message, SipRequest)
        self.assertEqual((message.method, message.uri.host), ("INVITE", "biloxi.example.com"))
        self.assertEqual(message.call_id, "a84b4c76e66710@pc33.atlanta.example.com")
        self.assertEqual((message.from_.tag, message.to.tag), ("1928301774", None))
        self.assertEqual((message.max_forwards, message.content_length), (70, 5))
        self.assertEqual(message.body, b"v=0\r\n")
        self.assertIsNone(message.expires)
        self.assertEqual(message.record_route, [])

    def test_compactFormsAndFolding(self) -> None:
        """
        If headers use compact names and folded lines, the values are found
        under the long names and unfolded to single spaces.
        """
        headers = [
            "v: SIP/2.0/UDP a.example.com\r\n ;branch=z9hG4bK1",
            "t: <sip:b@b.com>",
            "f: <sip:a@a.com>\r\n\t;tag=1",
            "i: 1@a",
            "CSeq: 1\r\n  INVITE",
            "m: <sip:a@host>",
            "l: 0",
            "c: text/plain",
            "k: path, outbound",
            "s: hello\r\n   world",
        ]
        message = parse(build(headers=headers))
        self.assertEqual(message.via[0].branch, "z9hG4bK1")
        self.assertEqual(message.from_.tag, "1")
        self.assertEqual(message.headers.get("Subject"), "hello world")
        self.assertEqual(message.headers.get_list("Supported"), ["path", "outbound"])
        self.assertEqual(message.headers.get("Content-Type"), "text/plain")
        self.assertIn(b"\r\nSubject: hello world\r\n", bytes(message))
        self.assertIn(b"\r\nCall-ID: 1@a\r\n", bytes(message))

    def test_leadingCRLFAndBareLF(self) -> None:
        """
        If CRLFs precede the start line or lines end in bare LF, the message
        still parses.
        """
        self.assertEqual(parse(b"\r\n\r\n" + build()).cseq.number, 314159)
        self.assertEqual(parse(build(eol=b"\n")).cseq.number, 314159)

    def test_multipleViaOrder(self) -> None:
        """
        If Via values come in several fields and comma lists, their order is
        kept in the typed view and in the serialisation.
        """
        headers = [
            "Via: SIP/2.0/UDP a.com;branch=z9hG4bK1, SIP/2.0/TCP b.com",
            *without("Via"),
            "Via: SIP/2.0/TLS c.com",
        ]
        message = parse(build(headers=headers))
        self.assertEqual([v.host for v in message.via], ["a.com", "b.com", "c.com"])
        self.assertEqual([v.host for v in parse(bytes(message)).via], ["a.com", "b.com", "c.com"])

    def test_missingMandatoryHeaders(self) -> None:
        """
        If a request lacks Via, From, To, Call-ID or CSeq, it is rejected with
        a reason naming the header; a missing Max-Forwards is tolerated.
        """
        for name in ["Via", "From", "To", "Call-ID", "CSeq"]:
            self.assertRejected(build(headers=without(name)), f"Missing {name} header")
        self.assertIsNone(parse(build(headers=without("Max-Forwards"))).max_forwards)

    def test_missingResponseHeaders(self) -> None:
        """
        If a response lacks Via or Call-ID, it is rejected and gets no error
        response.
        """
        with self.assertRaises(SipParseError) as caught:
            parse(build("SIP/2.0 200 OK", without("Via")))
        self.assertEqual(caught.exception.reason, "Missing Via header")
        self.assertIsNone(error_response(caught.exception))
        self.assertRejected(build("SIP/2.0 200 OK", without("Call-ID")), "Missing Call-ID header")

    def test_startLines(self) -> None:
        """
        If the request or status line is malformed, the message is rejected
        with 400, or 505 for another SIP version.
        """
        for start in [
            "INVITE sip:a@b.com",
            "INVITE  sip:a@b.com SIP/2.0",
            "INVITE sip:a@b.com SIP/2.0 ",
            "INVITE sip:a@b.com HTTP/1.1",
            "IN VITE sip:a@b.com SIP/2.0",
            "SIP/2.0 2000 OK",
            "SIP/2.0 099 Low",
            "SIP/2.0 700 High",
            "SIP/2.0 abc OK",
            "SIP/2.0  200 OK",
            "SIP/2.0 200 O\x01K",
            "",
        ]:
            with self.assertRaises(SipParseError, msg=start) as caught:
                parse(build(start))
            self.assertEqual(caught.exception.status, 400, start)
        self.assertRejected(build("INVITE sip:a@b.com SIP/3.0"), "Version Not Supported", 505)
        self.assertRejected(build("SIP/1.0 200 OK"), "Version Not Supported", 505)
        self.assertEqual(parse(build("INVITE sip:a@b.com sip/2.0")).version, "SIP/2.0")

    def test_requestURI(self) -> None:
        """
        If the Request-URI is malformed, carries headers, uses an unknown scheme
        or is over-long, the status is 400, 400, 416 or 414.
        """
        self.assertRejected(build("INVITE sip:a@ SIP/2.0"), "Bad Request-URI")
        self.assertRejected(build("INVITE mailto:a@b.com SIP/2.0"), "Unsupported URI Scheme", 416)
        long_uri = "sip:" + "a" * 9000 + "@b.com"
        self.assertRejected(build(f"INVITE {long_uri} SIP/2.0"), "Request-URI Too Long", 414)
        self.assertEqual(parse(build("INVITE tel:+15551234 SIP/2.0")).uri.scheme, "tel")

    def test_cseqMethodMismatch(self) -> None:
        """
        If the CSeq method differs from the request method (even in case),
        the request is rejected.
        """
        mismatch = "CSeq method does not match request method"
        self.assertRejected(build("BYE sip:a@b.com SIP/2.0"), mismatch)
        self.assertRejected(build("invite sip:a@b.com SIP/2.0"), mismatch)

    def test_contentLength(self) -> None:
        """
        If Content-Length is shorter than the datagram's body the extra octets
        are dropped; if longer, or on a stream when unequal or absent, the
        message is rejected.
        """
        headers = [*BASE_HEADERS, "Content-Length: 4"]
        self.assertEqual(parse(build(headers=headers, body=b"abcdef")).body, b"abcd")
        self.assertRejected(build(headers=headers, body=b"abc"), "Content-Length mismatch")
        self.assertRejected(
            build(headers=headers, body=b"abcdef"), "Content-Length mismatch", stream=True
        )
        self.assertRejected(build(body=b"abc"), "Missing Content-Length header", stream=True)
        self.assertEqual(parse(build(headers=headers, body=b"abcd"), stream=True).body, b"abcd")

    def test_hostileHeaderBytes(self) -> None:
        """
        If a header holds NUL or another control outside a quoted-pair, invalid
        UTF-8, a line without a colon or a bad name, the message is rejected.
        """
        cases = {
            "Control character in header": [
                "Subject: a\x00b",
                "Subject: \x07",
                'X: "a\x00"',
                "Subject: a\rb",
            ],
            "Malformed header line": ["no colon here", "Bad Name: x", ": empty name", "Nul\x00: x"],
        }
        for reason, extra in cases.items():
            for line in extra:
                self.assertRejected(build(headers=[*BASE_HEADERS, line]), reason)
        self.assertRejected(
            build().replace(b"Bob", b"B\xffb"), "Invalid UTF-8 in message head"
        )
        self.assertRejected(
            build(headers=[" folded first", *BASE_HEADERS]),
            "Continuation line before first header",
        )
        self.assertEqual(parse(build(headers=[*BASE_HEADERS, 'X: "a\\\x00"'])).cseq.number, 314159)

    def test_framingProblems(self) -> None:
        """
        If a datagram is empty, only CRLFs, lacks the blank line after the
        headers, or exceeds the size limit, it is rejected (413 for size).
        """
        self.assertRejected(b"", "Empty message")
        self.assertRejected(b"\r\n\r\n", "Empty message")
        self.assertRejected(build()[:-2], "Missing end of headers")
        self.assertRejected(build(body=b"x" * 70000), "Message Too Large", 413)
        self.assertRejected(build(), "Message Too Large", 413, max_size=100)

    def test_badTypedHeaders(self) -> None:
        """
        If a mandatory header is unparseable or repeated, the request is
        rejected naming it; the error keeps the headers so it can be answered.
        """
        cases = [
            (["From: Bell, Alexander <sip:a@b.com>;tag=1"], "From", "Bad From header"),
            (["To: <sip:b@b.com"], "To", "Bad To header"),
            (["Max-Forwards: 300"], "Max-Forwards", "Bad Max-Forwards header"),
            (["Call-ID: a b"], "Call-ID", "Bad Call-ID header"),
            (["Contact: <sip:a@b.com>;;"], "Contact", "Bad Contact header"),
            (["To: <sip:b@b.com>", "To: <sip:c@c.com>"], "To", "Multiple To headers"),
        ]
        for lines, name, reason in cases:
            with self.assertRaises(SipParseError) as caught:
                parse(build(headers=[*without(name), *lines]))
            self.assertTrue(caught.exception.reason.startswith(reason), caught.exception.reason)
            self.assertIsNotNone(caught.exception.headers)

    def test_lazyHeadersRaiseOnAccess(self) -> None:
        """
        If a header that is not checked on parse (Route, Expires) is malformed,
        parse succeeds and reading its typed view raises SipParseError.
        """
        message = parse(build(headers=[*BASE_HEADERS, "Route: <sip:a", "Expires: soon"]))
        self.assertEqual(message.headers.get("Route"), "<sip:a")
        self.assertRaises(SipParseError, lambda: message.route)
        self.assertRaises(SipParseError, lambda: message.expires)


class SerialiseTests(SynchronousTestCase):
    """bytes(message) and building messages by hand."""

    def test_contentLengthIsRecalculated(self) -> None:
        """
        If a message's body changes, bytes() writes its true length once, where
        the first Content-Length was, or at the end when there was none.
        """
        message = parse(build(headers=[*BASE_HEADERS[:2], "l: 0", *BASE_HEADERS[2:]]))
        message.body = b"hello"
        wire = bytes(message)
        self.assertEqual(wire.count(b"Content-Length"), 1)
        self.assertIn(b"Max-Forwards: 70\r\nContent-Length: 5\r\nTo:", wire)
        self.assertTrue(wire.endswith(b"\r\n\r\nhello"))
        message.headers.remove("Content-Length")
        self.assertIn(b"Content-Length: 5\r\n\r\nhello", bytes(message))

    def test_buildRequest(self) -> None:
        """
        If a request is built from objects, bytes() gives a parseable message
        with canonical header names and CRLF line ends.
        """
        headers = Headers(
            [
                ("v", "SIP/2.0/TCP h.com;branch=z9hG4bKx"),
                ("f", "<sip:a@b.com>;tag=1"),
                ("t", "<sip:c@d.com>"),
                ("i", "x@y"),
                ("CSEQ", "1 OPTIONS"),
            ]
        )
        request = SipRequest("OPTIONS", SipURI(user="c", host="d.com"), headers=headers)
        wire = bytes(request)
        self.assertTrue(wire.startswith(b"OPTIONS sip:c@d.com SIP/2.0\r\nVia: SIP/2.0/TCP"))
        self.assertIn(b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", wire)
        self.assertEqual(parse(wire, stream=True), parse(wire))

    def test_responseDefaultReason(self) -> None:
        """
        If a response is built without a reason, the standard phrase (or the
        class name for unlisted codes) is used.
        """
        self.assertEqual(SipResponse(486).reason, "Busy Here")
        self.assertEqual(SipResponse(499).reason, "Client Error")
        self.assertEqual(reason_phrase(183), "Session Progress")
        self.assertEqual(bytes(SipResponse(200)).split(b"\r\n")[0], b"SIP/2.0 200 OK")


class MakeResponseTests(SynchronousTestCase):
    """make_response() copies what RFC 3261 §8.2.6.2 requires."""

    def test_copiesHeaders(self) -> None:
        """
        If a response is made, it copies every Via in order, From, To, Call-ID
        and CSeq, and adds the To tag.
        """
        request = parse(build(headers=[*BASE_HEADERS, "Via: SIP/2.0/TCP second.com"]))
        assert isinstance(request, SipRequest)
        response = make_response(request, 180, to_tag="a6c85cf")
        self.assertEqual((response.status, response.reason), (180, "Ringing"))
        self.assertEqual(response.headers.get_all("Via"), request.headers.get_all("Via"))
        self.assertEqual(response.to.tag, "a6c85cf")
        self.assertEqual(response.to.uri, request.to.uri)
        self.assertEqual(response.from_, request.from_)
        self.assertEqual((response.call_id, response.cseq), (request.call_id, request.cseq))
        self.assertNotIn("Contact", response.headers)
        self.assertEqual(bytes(parse(bytes(response))), bytes(response))

    def test_keepsExistingTag(self) -> None:
        """
        If the request's To already has a tag, make_response keeps it rather
        than adding another.
        """
        headers = [*without("To"), "To: <sip:b@b.com>;tag=existing"]
        request = parse(build(headers=headers))
        assert isinstance(request, SipRequest)
        response = make_response(request, 200, "Fine", to_tag="new")
        self.assertEqual((response.to.tag, response.reason), ("existing", "Fine"))

    def test_trying(self) -> None:
        """
        If a 100 Trying is made, it copies Timestamp and adds no tag unless asked.
        """
        request = parse(build(headers=[*BASE_HEADERS, "Timestamp: 54"]))
        assert isinstance(request, SipRequest)
        response = make_response(request, 100)
        self.assertEqual(response.headers.get("Timestamp"), "54")
        self.assertIsNone(response.to.tag)

@given(st.binary(max_size=2048))
@settings(max_examples=400, deadline=None)
def test_parseNeverRaisesAnythingButSipParseError(data: bytes) -> None:
    """If parse() is given arbitrary bytes, it returns a message or raises SipParseError."""
    for stream in (False, True):
        try:
            parse(data, stream=stream)
        except SipParseError:
            pass


_EDITS = st.tuples(st.integers(0, 4000), st.integers(0, 8), st.binary(max_size=4))


@given(st.sampled_from(sorted(EXPECTED)), st.lists(_EDITS, max_size=4))
@settings(max_examples=400, deadline=None)
def test_mutatedCorpusOnlyRaisesSipParseError(
    name: str, edits: list[tuple[int, int, bytes]]
) -> None:
    """
    If a torture message is mutated, parsing it (and its lazy views) only raises
    SipParseError, and whatever parses serialises to bytes that parse again identically.
    """
    data = bytearray(corpus(name))
    for offset, length, insert in edits:
        offset %= len(data) + 1
        data[offset : offset + length] = insert
    try:
        message = parse(bytes(data))
    except SipParseError:
        message = None
    if message is not None:
        for view in ("route", "record_route", "expires"):
            try:
                getattr(message, view)
            except SipParseError:
                pass
        wire = bytes(message)
        assert bytes(parse(wire)) == wire
        assert parse(wire, stream=True) == parse(wire)
    framer = StreamFramer()
    try:
        framer.feed(bytes(data))
    except SipParseError:
        pass


class BrokenHeaderLineTests(SynchronousTestCase):
    def test_brokenHeaderLineStillGetsA400(self) -> None:
        """
        If a request has every mandatory header but one other line without a colon, parsing fails
        with "Malformed header line" and the error still carries the headers a 400 needs, so the
        client gets an answer instead of silence.
        """
        data = (b"REGISTER sip:falcot.com SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-broken\r\n"
                b"From: <sip:joe@falcot.com>;tag=1\r\nTo: <sip:joe@falcot.com>\r\n"
                b"Call-ID: broken-1\r\nCSeq: 1 REGISTER\r\nThis line has no colon\r\n"
                b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        error = self.assertRaises(SipParseError, parse, data)
        self.assertEqual(error.reason, "Malformed header line")
        response = error_response(error)
        self.assertEqual((response.status, response.call_id), (400, "broken-1"))
        self.assertIn(b"branch=z9hG4bK-broken", bytes(response))

"""Tests for unirtc.sip.headers: the header multi-map and the typed header parsers."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from unirtc.sip.headers import (
    CSeq,
    Headers,
    Via,
    canonical_name,
    parse_call_id,
    parse_contact,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_max_forwards,
    parse_via,
    parse_via_list,
)
from unirtc.sip.uri import SipParseError


class HeadersTests(SynchronousTestCase):
    """The ordered, case-insensitive multi-map."""

    def test_caseInsensitiveAndCompactNames(self) -> None:
        """
        If a header is stored under a compact or oddly cased name, it is found
        by any spelling, and iteration yields the canonical long name.
        """
        headers = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("i", "x@y")])
        self.assertEqual(headers.get_all("Via"), ["SIP/2.0/UDP a", "SIP/2.0/UDP b"])
        self.assertEqual(headers.get("call-id"), "x@y")
        self.assertEqual(headers.get("I"), "x@y")
        self.assertIn("CALL-ID", headers)
        self.assertNotIn("To", headers)
        self.assertEqual([name for name, _ in headers], ["Via", "Via", "Call-ID"])
        self.assertEqual(headers.count("v"), 2)
        self.assertEqual(len(headers), 3)

    def test_unknownNamesKeepTheirSpelling(self) -> None:
        """
        If a header name is not a known one, it keeps its spelling but is still
        looked up case-insensitively.
        """
        headers = Headers([("X-Custom-THING", "1")])
        self.assertEqual(list(headers), [("X-Custom-THING", "1")])
        self.assertEqual(headers.get("x-custom-thing"), "1")
        self.assertIsNone(headers.get("X-Other"))
        self.assertEqual(headers.get("X-Other", "d"), "d")

    def test_canonicalNames(self) -> None:
        """
        If a known header is named in any case or by its compact form, the
        canonical spelling is returned.
        """
        cases = {
            "call-id": "Call-ID",
            "CSEQ": "CSeq",
            "m": "Contact",
            "www-authenticate": "WWW-Authenticate",
            "k": "Supported",
            "o": "Event",
            "x": "Session-Expires",
        }
        for name, canonical in cases.items():
            self.assertEqual(canonical_name(name), canonical)

    def test_getListSplitsCommas(self) -> None:
        """
        If list headers are split across fields and commas, get_list returns
        every element in order, without splitting quoted commas.
        """
        headers = Headers([("Contact", '"A, B" <sip:a@b.com>, <sip:c@d.com>'), ("m", "<sip:e@f>")])
        self.assertEqual(
            headers.get_list("Contact"), ['"A, B" <sip:a@b.com>', "<sip:c@d.com>", "<sip:e@f>"]
        )

    def test_addFirst(self) -> None:
        """
        If a field is added with first=True, it goes before the existing fields
        of that name (a proxy's own Via).
        """
        headers = Headers([("To", "t"), ("Via", "SIP/2.0/UDP a")])
        headers.add("Via", "SIP/2.0/UDP mine", first=True)
        headers.add("Route", "<sip:r>", first=True)
        self.assertEqual(
            list(headers),
            [
                ("Route", "<sip:r>"),
                ("To", "t"),
                ("Via", "SIP/2.0/UDP mine"),
                ("Via", "SIP/2.0/UDP a"),
            ],
        )

    def test_setReplacesInPlace(self) -> None:
        """
        If set() is called, every field of that name is replaced by one at the
        position of the first, and other fields are untouched.
        """
        headers = Headers([("X-A", "1"), ("Expires", "1"), ("X-B", "2"), ("Expires", "2")])
        headers.set("expires", "60")
        self.assertEqual(list(headers), [("X-A", "1"), ("Expires", "60"), ("X-B", "2")])
        headers.set("X-C", "3")
        self.assertEqual(list(headers)[-1], ("X-C", "3"))

    def test_remove(self) -> None:
        """
        If remove() is called, every field of that name goes and the count is
        returned.
        """
        headers = Headers([("Route", "<sip:a>"), ("To", "t"), ("Route", "<sip:b>")])
        self.assertEqual(headers.remove("route"), 2)
        self.assertEqual(headers.remove("route"), 0)
        self.assertEqual(list(headers), [("To", "t")])

    def test_popFirst(self) -> None:
        """
        If pop_first() is called, the first list element is removed, leaving
        the rest of its field, and the field goes once it is empty.
        """
        headers = Headers([("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c")])
        self.assertEqual(headers.pop_first("Via"), "SIP/2.0/UDP a")
        self.assertEqual(headers.get_all("Via"), ["SIP/2.0/UDP b", "SIP/2.0/UDP c"])
        self.assertEqual(headers.pop_first("v"), "SIP/2.0/UDP b")
        self.assertEqual(headers.get_all("Via"), ["SIP/2.0/UDP c"])
        self.assertEqual(headers.pop_first("Via"), "SIP/2.0/UDP c")
        self.assertIsNone(headers.pop_first("Via"))
        self.assertEqual(len(headers), 0)

    def test_addRejectsInjection(self) -> None:
        """
        If a header name is not a token or a value holds CR or LF, add() raises
        ValueError, so no header can be smuggled into a message.
        """
        headers = Headers()
        self.assertRaises(ValueError, headers.add, "X", "a\r\nVia: evil")
        self.assertRaises(ValueError, headers.add, "X", "a\nb")
        self.assertRaises(ValueError, headers.add, "Bad Name", "a")
        self.assertRaises(ValueError, headers.add, "", "a")
        self.assertEqual(len(headers), 0)

    def test_equalityIgnoresNameSpelling(self) -> None:
        """
        If two header maps hold the same values in the same order under
        different spellings, they are equal; a different order is not.
        """
        compact = Headers([("i", "1"), ("t", "x")])
        self.assertEqual(compact, Headers([("Call-ID", "1"), ("to", "x")]))
        self.assertNotEqual(Headers([("t", "x"), ("i", "1")]), Headers([("i", "1"), ("t", "x")]))
        self.assertEqual(Headers([("X-A", "1")]).copy(), Headers([("X-A", "1")]))

    def test_parsedIsCachedUntilChanged(self) -> None:
        """
        If a typed view is read twice, the parser runs once; changing that
        header makes the next read parse again.
        """
        calls: list[list[str]] = []

        def parser(values: list[str]) -> int:
            calls.append(values)
            return len(values)

        headers = Headers([("Route", "<sip:a>")])
        self.assertEqual(headers.parsed("Route", parser), 1)
        self.assertEqual(headers.parsed("route", parser), 1)
        self.assertEqual(len(calls), 1)
        headers.add("Route", "<sip:b>")
        self.assertEqual(headers.parsed("Route", parser), 2)
        headers.pop_first("Route")
        headers.set("Route", "<sip:c>")
        self.assertEqual(headers.parsed("Route", parser), 1)
        self.assertEqual(len(calls), 3)


class ViaTests(SynchronousTestCase):
    """Via values (RFC 3261 §20.42, RFC 3581 rport)."""

    def test_parse(self) -> None:
        """
        If a Via has transport, host, port and parameters, each is read;
        transport is uppercased and parameter names lowercased.
        """
        via = parse_via("SIP/2.0/udp pc33.example.com:5066;Branch=z9hG4bK776;received=192.0.2.1")
        self.assertEqual((via.protocol, via.transport), ("SIP/2.0", "UDP"))
        self.assertEqual((via.host, via.port), ("pc33.example.com", 5066))
        self.assertEqual(via.sent_by, "pc33.example.com:5066")
        self.assertEqual((via.branch, via.received), ("z9hG4bK776", "192.0.2.1"))
        self.assertFalse(via.has_rport)
        self.assertIsNone(via.rport)

    def test_rportFlagAndValue(self) -> None:
        """
        If rport is a bare flag, has_rport is true and rport None; with a value,
        rport is that port.
        """
        flag = parse_via("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bKa")
        self.assertEqual((flag.has_rport, flag.rport), (True, None))
        filled = parse_via("SIP/2.0/UDP 10.0.0.1;rport=5061;branch=z9hG4bKa")
        self.assertEqual((filled.has_rport, filled.rport), (True, 5061))

    def test_lwsEverywhere(self) -> None:
        """
        If LWS surrounds the slashes, colon, semicolons and equals signs
        (RFC 4475 wsinv), the Via still parses.
        """
        via = parse_via("SIP  /   2.0  / TCP   host.example.com : 5070  ;  branch  =  z9hG4bK1 ")
        fields = (via.transport, via.host, via.port, via.branch)
        self.assertEqual(fields, ("TCP", "host.example.com", 5070, "z9hG4bK1"))

    def test_ipv6(self) -> None:
        """
        If the sent-by is an IPv6 reference and received an IPv6 address, both
        are accepted.
        """
        via = parse_via("SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;received=2001:db8::1")
        self.assertEqual((via.host, via.port, via.received), ("[2001:db8::9]", 5061, "2001:db8::1"))

    def test_str(self) -> None:
        """
        If a Via is written, it reads back the same.
        """
        via = Via("TLS", "proxy.example.com", 5061, {"branch": "z9hG4bK1", "rport": None})
        self.assertEqual(str(via), "SIP/2.0/TLS proxy.example.com:5061;branch=z9hG4bK1;rport")
        self.assertEqual(parse_via(str(via)), via)

    def test_list(self) -> None:
        """
        If Via fields hold comma lists, parse_via_list returns every value in
        order.
        """
        vias = parse_via_list(["SIP/2.0/UDP a.com, SIP/2.0/TCP b.com", "SIP/2.0/TLS c.com"])
        self.assertEqual([v.host for v in vias], ["a.com", "b.com", "c.com"])

    def test_malformed(self) -> None:
        """
        If a Via is malformed, SipParseError with a reason naming Via is raised.
        """
        for text in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 host.com",
            "SIP/2.0/UDP host.com:99999",
            "SIP/2.0/UDP host.com;;",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP host.com;branch",
            "SIP/2.0/UDP host.com;received=example.com",
            "SIP/2.0/UDP host.com;rport=x",
            "SIP/2.0/UDP host.com;rport=70000",
            "SIP/2.0/UDP host.com;ttl=256",
            "SIP/2.0/UDP host.com;maddr=a b",
            "SIP/2.0/U,DP host.com",
            "SIP/2.0/UDP host com",
        ]:
            with self.assertRaises(SipParseError, msg=text) as caught:
                parse_via_list([text])
            self.assertTrue(caught.exception.reason.startswith("Bad Via header"), text)


class ScalarHeaderTests(SynchronousTestCase):
    """CSeq, Call-ID, Max-Forwards, Expires and Content-Length."""

    def test_cseq(self) -> None:
        """
        If a CSeq has leading zeros and LWS, the number and method are read;
        overlarge, signed or method-less values are rejected.
        """
        self.assertEqual(parse_cseq(["0009  INVITE"]), CSeq(9, "INVITE"))
        self.assertEqual(str(parse_cseq([f"{2**32 - 1} ACK"])), "4294967295 ACK")
        for bad in [
            "36893488147419103232 REGISTER",
            "4294967296 ACK",
            "-1 ACK",
            "1",
            "x ACK",
            "1 IN VITE",
            '1 INV"ITE',
        ]:
            self.assertRaises(SipParseError, parse_cseq, [bad])

    def test_singleValuedHeaders(self) -> None:
        """
        If a single-valued header is missing or repeated, SipParseError names
        the header and the problem.
        """
        with self.assertRaises(SipParseError) as missing:
            parse_call_id([])
        self.assertEqual(missing.exception.reason, "Missing Call-ID header")
        with self.assertRaises(SipParseError) as repeated:
            parse_cseq(["1 A", "2 A"])
        self.assertEqual(repeated.exception.reason, "Multiple CSeq headers")
        self.assertRaises(SipParseError, parse_max_forwards, ["1", "2"])

    def test_callId(self) -> None:
        """
        If a Call-ID uses the word characters of RFC 3261 it is accepted; spaces
        or two @ are rejected.
        """
        odd = "a%ZK-!.*_+'@w`~)(><:\\/\"][?}{"
        self.assertEqual(parse_call_id([odd]), odd)
        for bad in ["a b", "a@b@c", "", "@b", "a;b"]:
            self.assertRaises(SipParseError, parse_call_id, [bad])

    def test_integers(self) -> None:
        """
        If Max-Forwards, Expires or Content-Length are numeric and in range,
        their value is returned (None when absent); otherwise SipParseError.
        """
        self.assertEqual(parse_max_forwards(["0068"]), 68)
        self.assertIsNone(parse_max_forwards([]))
        self.assertEqual(parse_expires(["3600"]), 3600)
        self.assertEqual(parse_content_length(["0"]), 0)
        for parser, bad in [
            (parse_max_forwards, "256"),
            (parse_max_forwards, "-1"),
            (parse_expires, "1" + "0" * 100),
            (parse_expires, "Thu, 01 Dec 1994 16:00:00 GMT"),
            (parse_content_length, "-999"),
            (parse_content_length, "five"),
            (parse_content_length, "1 2"),
        ]:
            self.assertRaises(SipParseError, parser, [bad])

    def test_contactWildcard(self) -> None:
        """
        If Contact is *, the wildcard is returned; * mixed with addresses is
        rejected; no Contact gives an empty list.
        """
        self.assertEqual(parse_contact(["*"]), "*")
        self.assertEqual(parse_contact([]), [])
        self.assertRaises(SipParseError, parse_contact, ["*, <sip:a@b.com>"])
        self.assertRaises(SipParseError, parse_contact, ["*", "<sip:a@b.com>"])
        contacts = parse_contact(['"A, B" <sip:a@b.com>;expires=60, <sip:c@d.com>;q=0.5'])
        assert contacts != "*"
        self.assertEqual([c.display_name for c in contacts], ["A, B", None])
        self.assertEqual([c.params for c in contacts], [{"expires": "60"}, {"q": "0.5"}])

"""Tests for unirtc.sip.uri: SIP/tel URIs, RFC 3261 §19.1.4 comparison, name-addr values."""

from __future__ import annotations

import dataclasses
import ipaddress
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.sip.uri import (
    AbsoluteURI,
    NameAddr,
    SipParseError,
    SipURI,
    parse_name_addr,
    parse_params,
    parse_uri,
    split_commas,
)


def sip(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri


class SipURIParseTests(SynchronousTestCase):
    """Parsing sip:, sips:, tel: and other URIs into their components."""

    def test_allComponents(self) -> None:
        """
        If a URI has every component, each lands in its own field, with
        parameter names lowercased.
        """
        uri = sip("sips:alice:secret@Atlanta.example.com:5061;Transport=TCP;lr?Subject=hi&X=1")
        self.assertEqual(uri.scheme, "sips")
        self.assertEqual(uri.user, "alice")
        self.assertEqual(uri.password, "secret")
        self.assertEqual(uri.host, "Atlanta.example.com")
        self.assertEqual(uri.port, 5061)
        self.assertEqual(dict(uri.params), {"transport": "TCP", "lr": None})
        self.assertEqual(dict(uri.headers), {"Subject": "hi", "X": "1"})
        self.assertEqual(uri.transport, "TCP")
        self.assertTrue(uri.lr)
        self.assertIsNone(uri.maddr)

    def test_minimal(self) -> None:
        """
        If a URI is only a host, user, password and port are None and there are
        no parameters.
        """
        uri = sip("SIP:example.com")
        self.assertEqual((uri.scheme, uri.user, uri.password, uri.port), ("sip", None, None, None))
        self.assertEqual(uri.host, "example.com")
        self.assertFalse(uri.lr)
        self.assertEqual(str(uri), "sip:example.com")

    def test_ipv6Reference(self) -> None:
        """
        If the host is an IPv6 reference, it keeps its brackets and the port
        after it is read.
        """
        uri = sip("sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]")
        self.assertEqual(uri.host, "[2001:db8::10]")
        self.assertEqual(uri.port, 5070)
        self.assertEqual(uri.maddr, "[2001:db8::1]")
        self.assertEqual(str(uri), "sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]")

    def test_ipv4Host(self) -> None:
        """
        If the host is a dotted quad, it is accepted as an IPv4 address.
        """
        self.assertEqual(sip("sip:192.0.2.4:5060").host, "192.0.2.4")

    def test_escapesAreDecoded(self) -> None:
        """
        If user, parameters or headers hold %HEX escapes, the fields hold the
        decoded characters, once: value%2541 is value%41, not valueA.
        """
        uri = sip("sip:%61lice%20smith@x.com;%6C%72;n%61me=v%61lue%25%34%31?Route=%3Csip:y%3E")
        self.assertEqual(uri.user, "alice smith")
        self.assertEqual(dict(uri.params), {"lr": None, "name": "value%41"})
        self.assertEqual(dict(uri.headers), {"Route": "<sip:y>"})

    def test_escapedNulIsKept(self) -> None:
        """
        If the user part holds %00, the decoded user keeps the NUL and the text
        after it, and writing it escapes it again.
        """
        uri = sip("sip:null-%00-null@example.com")
        self.assertEqual(uri.user, "null-\x00-null")
        self.assertEqual(str(uri), "sip:null-%00-null@example.com")

    def test_strEscapesReservedCharacters(self) -> None:
        """
        If a component holds characters its grammar does not allow, str()
        escapes them, and parsing the result gives the same components.
        """
        uri = SipURI(user="sips:a@b", password="p@ss", host="example.net", params={"x": "a b"})
        text = str(uri)
        self.assertEqual(text, "sip:sips%3Aa%40b:p%40ss@example.net;x=a%20b")
        again = sip(text)
        self.assertEqual((again.user, again.password), ("sips:a@b", "p@ss"))
        self.assertEqual(dict(again.params), {"x": "a b"})

    def test_semicolonInUserPart(self) -> None:
        """
        If the user part contains a semicolon (RFC 4475 semiuri), it belongs to
        the user, not to the parameters.
        """
        uri = sip("sip:user;par=u%40example.net@example.com")
        self.assertEqual(uri.user, "user;par=u@example.net")
        self.assertEqual(uri.host, "example.com")
        self.assertEqual(dict(uri.params), {})

    def test_telURI(self) -> None:
        """
        If the scheme is tel, the number is the user, the host is empty and
        parameters follow.
        """
        uri = sip("tel:+1-201-555-0123;phone-context=example.com")
        self.assertEqual((uri.scheme, uri.user, uri.host), ("tel", "+1-201-555-0123", ""))
        self.assertEqual(dict(uri.params), {"phone-context": "example.com"})
        self.assertEqual(str(uri), "tel:+1-201-555-0123;phone-context=example.com")

    def test_otherSchemesAreOpaque(self) -> None:
        """
        If the scheme is not sip, sips or tel, the URI is kept as an opaque
        AbsoluteURI with a lowercased scheme.
        """
        uri = parse_uri("HTTP://www.example.com/a?b=c")
        self.assertEqual(uri, AbsoluteURI("http", "//www.example.com/a?b=c"))
        self.assertEqual(str(uri), "http://www.example.com/a?b=c")

    def test_malformed(self) -> None:
        """
        If a URI breaks the RFC 3261 grammar, parse_uri raises SipParseError
        with status 400.
        """
        for text in [
            "",
            "sip",
            "sip:",
            "1sip:host",
            "sip:user@",
            "sip:@host",
            "sip:host:",
            "sip:host:99999",
            "sip:host:5o60",
            "sip:[2001:db8::1",
            "sip:[2001:db8::zz]",
            "sip:[2001:db8::1]x",
            "sip:a b@host",
            "sip:host name",
            "sip:host;;lr",
            "sip:host;lr;LR",
            "sip:host;=x",
            "sip:host?x",
            "sip:host?a=1&A=2",
            "sip:%zz@host",
            "sip:256.1.1.1",
            "sip:1.2.3",
            "sip:-host",
            "<sip:host>",
            "tel:",
            "tel:+1 555",
            "urn:",
            "urn:a b",
        ]:
            with self.assertRaises(SipParseError, msg=text) as caught:
                parse_uri(text)
            self.assertEqual(caught.exception.status, 400)


class SipURIEqualityTests(SynchronousTestCase):
    """URI comparison per RFC 3261 §19.1.4, with the RFC's own examples."""

    EQUAL = [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:bob@[2001:db8:0:0:0:0:0:10]", "sip:bob@[2001:DB8::10]"),
    ]
    UNEQUAL = [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ("sip:alice:a@atlanta.com", "sip:alice:b@atlanta.com"),
        ("sip:atlanta.com", "sip:alice@atlanta.com"),
        ("sip:a@x.com;user=phone", "sip:a@x.com"),
        ("sip:a@x.com;ttl=1", "sip:a@x.com"),
        ("sip:a@x.com;method=INVITE", "sip:a@x.com"),
        ("sip:a@x.com;maddr=1.2.3.4", "sip:a@x.com"),
        ("sip:a@x.com;foo=1", "sip:a@x.com;foo=2"),
        ("sip:a@x.com;foo", "sip:a@x.com;foo=1"),
    ]

    def test_equivalentURIs(self) -> None:
        """
        If two URIs are equivalent by §19.1.4 (escapes, host case, parameter
        order and case, parameters present in only one), they are equal and
        hash alike.
        """
        for left, right in self.EQUAL:
            self.assertEqual(sip(left), sip(right), (left, right))
            self.assertEqual(sip(right), sip(left), (right, left))
            self.assertEqual(hash(sip(left)), hash(sip(right)))

    def test_differentURIs(self) -> None:
        """
        If two URIs differ by §19.1.4 (user case, explicit default port,
        transport/user/ttl/method/maddr in one only, headers, scheme), they are
        not equal.
        """
        for left, right in self.UNEQUAL:
            self.assertNotEqual(sip(left), sip(right), (left, right))
            self.assertNotEqual(sip(right), sip(left), (right, left))

    def test_notEqualToOtherTypes(self) -> None:
        """
        If a SipURI is compared with a string, they are not equal.
        """
        self.assertNotEqual(sip("sip:a@b.com"), "sip:a@b.com")


_USER_TEXT = st.text(min_size=1, max_size=20)
_HOSTS = st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "a-b.example.org."])
_PARAM_NAMES = st.text(string.ascii_lowercase + "-_.!~*'()[]/:&+$%", min_size=1, max_size=8)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipURI:
    return SipURI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | _USER_TEXT),
        password=draw(st.none() | st.text(max_size=8)),
        host=draw(_HOSTS),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(st.dictionaries(_PARAM_NAMES, st.none() | _USER_TEXT, max_size=3)),
        headers=draw(st.dictionaries(st.just("h") | st.just("Route"), st.text(max_size=8))),
    )


@given(sip_uris())
@settings(max_examples=150, deadline=None)
def test_uriStrParsesBackToTheSameFields(uri: SipURI) -> None:
    """If any SipURI is written with str(), parsing the text gives back the same fields."""
    if uri.user is None:
        uri = dataclasses.replace(uri, password=None)
    again = sip(str(uri))
    assert dataclasses.astuple(again) == dataclasses.astuple(uri)
    assert again == uri


@given(st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_parseUriRaisesOnlySipParseError(text: str) -> None:
    """If parse_uri is given any text, it returns a URI or raises SipParseError."""
    try:
        str(parse_uri(text))
    except SipParseError:
        pass


class NameAddrTests(SynchronousTestCase):
    """name-addr and addr-spec values (From, To, Contact, Route)."""

    def test_quotedDisplayNameWithEscapes(self) -> None:
        """
        If the display name is a quoted string with quoted-pairs, the display
        name holds the unescaped text.
        """
        value = parse_name_addr(r'"J Rosenberg \\\"" <sip:jdrosen@example.com> ; tag = 98asjd8')
        self.assertEqual(value.display_name, 'J Rosenberg \\"')
        self.assertEqual(value.uri, sip("sip:jdrosen@example.com"))
        self.assertEqual(value.tag, "98asjd8")

    def test_tokenDisplayName(self) -> None:
        """
        If the display name is a run of tokens, they are joined by single
        spaces; with no LWS before < (RFC 4475 lwsdisp) it is still read.
        """
        self.assertEqual(parse_name_addr("A.  Bell <sip:a@b.com>").display_name, "A. Bell")
        self.assertEqual(parse_name_addr("caller<sip:c@b.com>;tag=1").display_name, "caller")

    def test_addrSpecParametersBelongToTheHeader(self) -> None:
        """
        If a URI without <> is followed by ;params, they are header parameters,
        while inside <> they are URI parameters (RFC 4475 cparam01/02).
        """
        bare = parse_name_addr("sip:+1972@gw1.example.net;unknownparam")
        self.assertEqual((dict(bare.uri.params), bare.params), ({}, {"unknownparam": None}))
        bracketed = parse_name_addr("<sip:+1972@gw1.example.net;unknownparam>")
        self.assertEqual(dict(bracketed.uri.params), {"unknownparam": None})
        self.assertEqual(bracketed.params, {})

    def test_parameterValues(self) -> None:
        """
        If parameter values are quoted strings (with ; and , inside) or IPv6
        references, they are kept as written; names are lowercased.
        """
        value = parse_name_addr('<sip:a@b.com>;Q=0.5;x="a;b,c";addr=[::1];flag')
        self.assertEqual(value.params, {"q": "0.5", "x": '"a;b,c"', "addr": "[::1]", "flag": None})

    def test_otherSchemes(self) -> None:
        """
        If the URI has a scheme SIP does not know, it is kept as an AbsoluteURI.
        """
        self.assertEqual(parse_name_addr("<http://www.example.com>;tag=3").uri.scheme, "http")
        self.assertEqual(parse_name_addr("isbn:2983792873").uri, AbsoluteURI("isbn", "2983792873"))

    def test_strRoundTrip(self) -> None:
        """
        If a NameAddr with quotes, backslashes and controls in its display name
        is written, it parses back equal.
        """
        value = NameAddr(sip("sip:a@b.com;lr"), 'say "hi" \\ \x07', {"tag": "x", "q": "0.5"})
        self.assertEqual(str(value), '"say \\"hi\\" \\\\ \\\x07" <sip:a@b.com;lr>;tag=x;q=0.5')
        self.assertEqual(parse_name_addr(str(value)), value)

    def test_malformed(self) -> None:
        """
        If a name-addr is malformed (open quote, non-token display name, spaces
        inside <>, missing >, headers outside <>, bad or repeated parameters),
        SipParseError is raised.
        """
        for text in [
            "",
            '"Mr. J. User <sip:j.user@example.com>',
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            '"Watson" sip:t@example.org',
            "< sip:t.watson@example.org >",
            "<sip:t.watson@example.org",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b.com>;;",
            "<sip:a@b.com>;tag=1;TAG=2",
            "<sip:a@b.com>;tag=",
            "<sip:a@b.com>;tag=a b",
            '<sip:a@b.com>;x="open',
            "<sip:a@b.com> junk",
            '"a\x00" <sip:a@b.com>',
        ]:
            self.assertRaises(SipParseError, parse_name_addr, text)


class LexicalTests(SynchronousTestCase):
    """Comma-list and parameter splitting."""

    def test_commasInsideQuotesAndBrackets(self) -> None:
        """
        If commas appear in quoted strings or inside <URI>, they do not split
        the list.
        """
        parts = split_commas('"Bell, A." <sip:a@b.com;x=1,2>, <sip:c@d.com> ,sip:e@f.com')
        self.assertEqual(parts, ['"Bell, A." <sip:a@b.com;x=1,2>', "<sip:c@d.com>", "sip:e@f.com"])

    def test_emptyElements(self) -> None:
        """
        If a list has an empty element, an unclosed quote or an unclosed <,
        SipParseError is raised.
        """
        for text in ["a,,b", "a,", ",", '"a, b', "<sip:a@b.com, c"]:
            self.assertRaises(SipParseError, split_commas, text)

    def test_paramsNeedLeadingSemicolon(self) -> None:
        """
        If parameter text does not start with ;, it is rejected; empty text
        gives no parameters.
        """
        self.assertEqual(parse_params("  "), {})
        self.assertRaises(SipParseError, parse_params, "x=1")

    def test_nestedAngleAndQuotedSeparators(self) -> None:
        """
        If < nests, SipParseError is raised; a quoted ; or a lone > does not
        split parameters.
        """
        self.assertRaises(SipParseError, split_commas, "<sip:a@b.com <sip:c@d.com>>")
        self.assertEqual(parse_params(';a="x;y";b'), {"a": '"x;y"', "b": None})
        self.assertEqual(split_commas("a>, b"), ["a>", "b"])


@given(st.lists(st.one_of(st.integers(0, 999).map(str), st.integers(0, 99).map(lambda n: f"0{n}")),
                min_size=4, max_size=4))
@settings(max_examples=300, deadline=None)
def test_dottedQuadHostsFollowIpaddress(octets: list[str]) -> None:
    """If a host is a dotted quad, it parses exactly when ipaddress accepts it as IPv4."""
    host = ".".join(octets)
    try:
        ipaddress.IPv4Address(host)
        valid = True
    except ValueError:
        valid = False
    try:
        parsed = sip(f"sip:{host}").host
    except SipParseError:
        parsed = None
    assert parsed == (host if valid else None)

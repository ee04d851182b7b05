"""Server Dialback keys (XEP-0185 vectors) and dialback elements (XEP-0220)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from unirtc.xmpp.dialback import (
    NS_DIALBACK,
    Dialback,
    DialbackError,
    dialback_key,
    feature,
    keys_match,
    parse,
    to_bytes,
)
from unirtc.xmpp.parser import Stanza, StreamParser

VECTORS = json.loads((Path(__file__).parent.parent / "corpora" / "xmpp_dialback" / "dialback_vectors.json")
                     .read_text())["vectors"]
HEADER = (b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          b"xmlns:db='jabber:server:dialback' to='falcot.com' from='example.org' version='1.0'>")


def element(xml: str | bytes) -> domish.Element:
    """Parse one element the way an s2s stream does."""
    data = xml.encode() if isinstance(xml, str) else xml
    events = StreamParser(default_namespace="jabber:server").feed(HEADER + data)
    stanza = events[1]
    assert isinstance(stanza, Stanza)
    return stanza.element


class DialbackKeyTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """
        If the key is computed for each published vector (XEP-0185, XEP-0220, twisted.words), it
        equals the published key.
        """
        self.assertEqual(len(VECTORS), 3)
        for vector in VECTORS:
            key = dialback_key(vector["secret"], vector["receiving"], vector["originating"], vector["stream_id"])
            self.assertEqual(key, vector["key"], vector["source"])

    def test_bytesSecretIsTheSame(self) -> None:
        """If the secret is given as bytes, the key is the same as for the text secret."""
        vector = VECTORS[0]
        key = dialback_key(vector["secret"].encode(), vector["receiving"], vector["originating"], vector["stream_id"])
        self.assertEqual(key, vector["key"])

    def test_swappedDomainsOrOtherStreamDiffer(self) -> None:
        """
        If receiving and originating are swapped, or the stream id differs, the key differs, so a
        key cannot be replayed on another stream or reflected at its sender.
        """
        vector = VECTORS[0]
        args = (vector["secret"], vector["receiving"], vector["originating"], vector["stream_id"])
        swapped = (vector["secret"], vector["originating"], vector["receiving"], vector["stream_id"])
        other_stream = (*args[:3], "D60000229G")
        self.assertNotEqual(dialback_key(*swapped), vector["key"])
        self.assertNotEqual(dialback_key(*other_stream), vector["key"])

    def test_compareIsExact(self) -> None:
        """If an offered key differs only in case, or is a prefix, it does not match."""
        key = VECTORS[0]["key"]
        self.assertTrue(keys_match(key, key))
        self.assertFalse(keys_match(key, key.upper()))
        self.assertFalse(keys_match(key, key[:-1]))
        self.assertFalse(keys_match(key, ""))


class ParseTests(SynchronousTestCase):
    def test_resultRequest(self) -> None:
        """If a peer sends db:result with a key, it parses as a request with prepared domains."""
        parsed = parse(element("<db:result from='Example.ORG' to='falcot.com'> abc123 </db:result>"))
        self.assertEqual(parsed, Dialback("result", "example.org", "falcot.com", "abc123"))
        self.assertTrue(parsed.is_request)

    def test_verifyNeedsId(self) -> None:
        """If db:verify has no id, it is bad-format; with one, the id is kept."""
        with self.assertRaises(DialbackError) as raised:
            parse(element("<db:verify from='example.org' to='falcot.com'>k</db:verify>"))
        self.assertEqual(raised.exception.condition, "bad-format")
        parsed = parse(element("<db:verify from='example.org' to='falcot.com' id='s1'>k</db:verify>"))
        self.assertEqual(parsed.stream_id, "s1")

    def test_answers(self) -> None:
        """If a peer answers valid, invalid or with an error, the type and condition are read."""
        self.assertEqual(parse(element("<db:result from='example.org' to='falcot.com' type='valid'/>")).type,
                         "valid")
        error = parse(element(
            "<db:result from='example.org' to='falcot.com' type='error'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"))
        self.assertEqual((error.type, error.error), ("error", "item-not-found"))

    def test_malformed(self) -> None:
        """
        If addressing is missing or malformed, the key is missing, oversized or not printable,
        or the type is unknown, parse raises DialbackError with the matching stream condition.
        """
        cases = {
            "<db:result to='falcot.com'>k</db:result>": "improper-addressing",
            "<db:result from='example.org'>k</db:result>": "improper-addressing",
            "<db:result from='exa mple.org' to='falcot.com'>k</db:result>": "invalid-from",
            "<db:result from='example.org' to='falcot.com'/>": "bad-format",
            "<db:result from='example.org' to='falcot.com' type='maybe'/>": "bad-format",
            f"<db:result from='example.org' to='falcot.com'>{'a' * 1025}</db:result>": "policy-violation",
            "<db:result from='example.org' to='falcot.com'>a b</db:result>": "policy-violation",
            "<db:result from='example.org' to='falcot.com'>&lt;x&gt;</db:result>": "policy-violation",
            f"<db:verify from='example.org' to='falcot.com' id='{'i' * 1025}'>k</db:verify>": "bad-format",
            "<db:other from='example.org' to='falcot.com'>k</db:other>": "unsupported-stanza-type",
            "<message from='example.org' to='falcot.com'/>": "unsupported-stanza-type",
        }
        for xml, condition in cases.items():
            with self.assertRaises(DialbackError, msg=xml) as raised:
                parse(element(xml))
            self.assertEqual(raised.exception.condition, condition, xml)


class SerialiseTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """If a request and its answers are serialised and parsed again, they are unchanged."""
        request = Dialback("verify", "falcot.com", "example.org", "k3y", "s'1<")
        for item in (request, request.answer("valid"), request.answer("error", "item-not-found")):
            self.assertEqual(parse(element(to_bytes(item))), item)
            self.assertEqual(parse(element(to_bytes(item, prefixed=False))), item)

    def test_prefixedForm(self) -> None:
        """If serialised prefixed, the element uses db: as in XEP-0220's examples."""
        data = to_bytes(Dialback("result", "falcot.com", "example.org", "abc"))
        self.assertEqual(data, b'<db:result from="falcot.com" to="example.org">abc</db:result>')

    def test_resultAnswerDropsKey(self) -> None:
        """If a db:result request is answered, the answer carries no key; a verify answer echoes it."""
        result = Dialback("result", "example.org", "falcot.com", "abc")
        self.assertEqual(result.answer("valid"), Dialback("result", "falcot.com", "example.org", "", None, "valid"))
        self.assertRaises(ValueError, result.answer, "error")
        self.assertRaises(ValueError, result.answer, "maybe")

    def test_feature(self) -> None:
        """If the dialback feature is offered, it is in urn:xmpp:features:dialback with <errors/>."""
        offered = feature()
        self.assertEqual((offered.uri, offered.name), ("urn:xmpp:features:dialback", "dialback"))
        self.assertEqual([c.name for c in offered.elements()], ["errors"])


@given(st.text(max_size=200), st.sampled_from(["result", "verify"]))
def test_parseOnlyRaisesDialbackError(text: str, kind: str) -> None:
    """Whatever text a dialback element carries, parse returns a value or raises DialbackError."""
    node = domish.Element((NS_DIALBACK, kind))
    node["from"], node["to"], node["id"] = "example.org", text or "x", text or "x"
    node.addContent(text)
    try:
        parsed = parse(node)
    except DialbackError:
        return
    assert len(parsed.key) <= 1024

"""RFC 7395 framing (unirtc/xmpp/framing.py): one message, one element; open/close; hostile input."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from unirtc.xmpp import framing
from unirtc.xmpp.errors import StreamError
from unirtc.xmpp.parser import Stanza, StreamClosed, StreamOpened, StreamParser

CORPUS = Path(__file__).parent.parent / "corpora" / "xml_attacks"
OPEN = '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="falcot.com" version="1.0" xml:lang="fr"/>'
MAX = 10000


def condition(text: str, max_stanza: int = MAX) -> str:
    try:
        framing.parse_message(text, max_stanza)
    except StreamError as e:
        return e.condition
    raise AssertionError(f"no stream error for {text[:60]!r}")


class ParseMessageTests(SynchronousTestCase):
    def test_openIsTheStreamHeader(self) -> None:
        """
        If the message is ``<open/>``, it becomes the stream header with its attributes, xml:lang
        included, in the jabber:client namespace.
        """
        event = framing.parse_message(OPEN, MAX)
        self.assertIsInstance(event, StreamOpened)
        self.assertEqual(event.attrs, {"to": "falcot.com", "version": "1.0", "xml:lang": "fr"})
        self.assertEqual(event.namespace, "jabber:client")

    def test_xmlDeclarationBeforeOpenIsTolerated(self) -> None:
        """
        If a client puts an XML declaration before ``<open/>``, the message is still the header.
        """
        self.assertIsInstance(framing.parse_message("<?xml version='1.0'?>\n" + OPEN, MAX), StreamOpened)

    def test_closeIsTheStreamEnd(self) -> None:
        """
        If the message is ``<close/>``, the stream is closed.
        """
        close = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        self.assertIsInstance(framing.parse_message(close, MAX), StreamClosed)

    def test_stanzaKeepsItsNamespaceAndChildren(self) -> None:
        """
        If the message is a stanza, it comes out as one element in jabber:client with its
        children, whether it declares the namespace (as RFC 7395 requires) or not.
        """
        for text in ("<message xmlns='jabber:client' to='roland@falcot.com'><body>Hi &amp; bye</body></message>",
                     "<message to='roland@falcot.com'><body>Hi &amp; bye</body></message>"):
            event = framing.parse_message(text, MAX)
            self.assertIsInstance(event, Stanza)
            self.assertEqual((event.element.uri, event.element.name), ("jabber:client", "message"))
            self.assertEqual(str(event.element.body), "Hi & bye")

    def test_whitespaceMessageIsNothing(self) -> None:
        """
        If a message holds only whitespace (an old-style keepalive), it carries no event.
        """
        self.assertIsNone(framing.parse_message(" \r\n\t", MAX))

    def test_twoElementsInOneMessageIsBadFormat(self) -> None:
        """
        If one message holds two elements, that breaks RFC 7395 framing: bad-format.
        """
        self.assertEqual(condition("<presence/><presence/>"), "bad-format")

    def test_unfinishedElementIsNotWellFormed(self) -> None:
        """
        If a message ends inside an element or a tag, it is not well-formed.
        """
        for text in ("<message><body>hi</body>", "<presence/><pres", "<message to='x"):
            self.assertEqual(condition(text), "not-well-formed", text)

    def test_textOrStreamFooterIsNotWellFormed(self) -> None:
        """
        If a message is bare text, a stray end tag, or the TCP stream footer, it is not well-formed.
        """
        for text in ("hello", "</message>", "</stream:stream>", "<a></b>"):
            self.assertEqual(condition(text), "not-well-formed", text)

    def test_restrictedXml(self) -> None:
        """
        If a message holds a DOCTYPE, a comment, a processing instruction or an undefined entity,
        it is restricted-xml (RFC 6120 §11.1), as on a TCP stream.
        """
        for text in ("<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message>&a;</message>", "<message><!-- c --></message>",
                     "<?php x ?><message/>", "<message>&bomb;</message>"):
            self.assertEqual(condition(text), "restricted-xml", text)

    def test_xmlAttackCorpus(self) -> None:
        """
        If a message is one of the defusedxml attack files, it is refused with a stream error
        (restricted-xml for the DTD-based ones), never expanded.
        """
        for path in sorted(CORPUS.glob("*.xml")):
            text = path.read_text(encoding="utf-8")
            self.assertIn(condition(text), ("restricted-xml", "not-well-formed", "bad-format"), path.name)

    def test_oversizedStanzaIsPolicyViolation(self) -> None:
        """
        If the element is larger than the stanza limit, it is policy-violation, and a message of
        exactly the limit is accepted.
        """
        head, tail = "<message><body>", "</body></message>"
        exact = head + "x" * (MAX - len(head) - len(tail)) + tail
        self.assertIsInstance(framing.parse_message(exact, MAX), Stanza)
        self.assertEqual(condition(exact.replace("<body>", "<body>x")), "policy-violation")

    def test_deepNestingIsPolicyViolation(self) -> None:
        """
        If elements nest deeper than the parser allows, it is policy-violation.
        """
        self.assertEqual(condition("<a>" * 60 + "</a>" * 60), "policy-violation")

    def test_openOfAnotherVersionIsUnsupported(self) -> None:
        """
        If ``<open/>`` asks for XMPP 2.0 or a malformed version, it is unsupported-version.
        """
        for version in ("2.0", "one"):
            text = OPEN.replace('version="1.0"', f'version="{version}"')
            self.assertEqual(condition(text), "unsupported-version", version)

    def test_otherFramingElementIsBadFormat(self) -> None:
        """
        If an element in the framing namespace is neither open nor close, it is bad-format.
        """
        self.assertEqual(condition("<reopen xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"), "bad-format")

    def test_unboundPrefix(self) -> None:
        """
        If an element uses a prefix no message declares (each message stands alone), it is
        bad-namespace-prefix.
        """
        self.assertEqual(condition("<stream:features/>"), "bad-namespace-prefix")


class RenderTests(SynchronousTestCase):
    def test_openMessage(self) -> None:
        """
        If the server opens its stream, the message is an ``<open/>`` in the framing namespace with
        the header attributes, escaped, and parses back as a header.
        """
        text = framing.open_message({"from": "falcot.com", "id": "a'b", "version": "1.0", "xml:lang": "en"})
        self.assertTrue(text.startswith('<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"'))
        event = framing.parse_message(text, MAX)
        self.assertEqual(event.attrs["id"], "a'b")
        self.assertEqual(event.attrs["xml:lang"], "en")

    def test_closeIsExactlyTheRfcForm(self) -> None:
        """
        If the server closes, it sends the close element exactly as RFC 7395 writes it (Strophe.js
        compares the string).
        """
        self.assertEqual(framing.CLOSE, '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />')

    def test_elementMessageDeclaresItsNamespaces(self) -> None:
        """
        If a stanza or stream features are sent, each message declares its namespaces, so that it
        parses on its own as the same element.
        """
        features = domish.Element(("http://etherx.jabber.org/streams", "features"))
        features.addElement(("urn:ietf:params:xml:ns:xmpp-bind", "bind"))
        text = framing.element_message(features)
        self.assertTrue(text.startswith("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"))
        message = domish.Element(("jabber:client", "message"))
        message.addElement("body", content="<&>")
        text = framing.element_message(message)
        self.assertIn("xmlns='jabber:client'", text)
        parser = StreamParser(MAX, "jabber:server")  # a different default: only the declaration counts
        parser.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>")
        (stanza,) = parser.feed(text.encode())
        self.assertEqual(stanza.element.uri, "jabber:client")
        self.assertEqual(str(stanza.element.body), "<&>")

    def test_errorMessageStandsAlone(self) -> None:
        """
        If a stream error is sent, its message declares the stream prefix and carries the
        condition and text.
        """
        text = framing.error_message("policy-violation", "too <big>")
        self.assertTrue(text.startswith("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"))
        parser = StreamParser(MAX)
        parser.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        (stanza,) = parser.feed(text.encode())
        names = [child.name for child in stanza.element.elements()]
        self.assertEqual(names, ["policy-violation", "text"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parseMessageRaisesOnlyStreamError(text: str) -> None:
    """Any text is one event, nothing, or a StreamError; never another exception."""
    try:
        framing.parse_message(text, 1000)
    except StreamError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=50))
def test_bodyRoundTrips(body: str) -> None:
    """A message body with any XML character survives rendering and parsing."""
    legal = "".join(c for c in body if c in "\t\n" or c >= " " and c not in "\ufffe\uffff")
    message = domish.Element(("jabber:client", "message"))
    message.addElement("body", content=legal)
    event = framing.parse_message(framing.element_message(message), 10000)
    assert isinstance(event, Stanza)
    assert str(event.element.body) == legal

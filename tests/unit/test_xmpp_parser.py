"""Tests for unirtc.xmpp.parser: the RFC 6120 restricted-XML stream parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.parsers import expat

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.xmpp.errors import StreamError, stream_error_xml
from unirtc.xmpp.parser import (
    Stanza,
    StreamClosed,
    StreamOpened,
    StreamParser,
    element_to_bytes,
)

CORPORA = Path(__file__).parent.parent / "corpora"
ATTACKS = sorted((CORPORA / "xml_attacks").glob("*.xml"))
UTF8_SEQUENCES = CORPORA / "xmpp_utf8" / "prosody_utf8_sequences.txt"
NS_STREAMS = b"http://etherx.jabber.org/streams"


def header(namespace: bytes = b"jabber:client", extra: bytes = b"") -> bytes:
    """A stream header as a client (or server, or component) sends it."""
    return (
        b"<?xml version='1.0'?><stream:stream xmlns='" + namespace + b"' xmlns:stream='"
        + NS_STREAMS + b"' to='example.com' version='1.0' xml:lang='en'" + extra + b">"
    )


HEADER = header()
MESSAGE = b"<message to='juliet@example.com' type='chat' id='m1'><body>Art thou?</body></message>"
IQ = b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
PRESENCE = b"<presence/>"


def summary(events: list) -> list[tuple]:
    """Events in a comparable form (domish elements have no equality of their own)."""
    out: list[tuple] = []
    for event in events:
        if isinstance(event, Stanza):
            out.append(("stanza", element_to_bytes(event.element), event.size))
        elif isinstance(event, StreamOpened):
            out.append(("opened", event.attrs, event.namespace, event.prefixes))
        else:
            out.append(("closed",))
    return out


def outcome(chunks: list[bytes], **kwargs: object) -> tuple[list[tuple], str | None]:
    """Feed chunks in turn; return every event produced and the error condition, if any."""
    parser = StreamParser(**kwargs)  # type: ignore[arg-type]
    events: list = []
    for chunk in chunks:
        try:
            events += parser.feed(chunk)
        except StreamError as e:
            return summary(events + e.events), e.condition
    return summary(events), None


def bytewise(data: bytes) -> list[bytes]:
    """The input cut into single bytes, the worst case of TCP segmentation."""
    return [data[i : i + 1] for i in range(len(data))]


class StreamTestMixin:
    """Shared assertion: feeding ``data`` raises a stream error with ``condition``."""

    def assertCondition(self, data: bytes, condition: str, **kwargs: object) -> StreamError:
        parser = StreamParser(**kwargs)  # type: ignore[arg-type]
        error = self.assertRaises(StreamError, parser.feed, data)  # type: ignore[attr-defined]
        self.assertEqual(error.condition, condition)  # type: ignore[attr-defined]
        return error


class StreamHeaderTests(StreamTestMixin, SynchronousTestCase):
    def test_headerOpensStream(self) -> None:
        """
        If a client sends a valid header, one StreamOpened carries its attributes, xml:lang
        under "xml:lang", the content namespace and the prefixes it declared.
        """
        events = StreamParser().feed(header(extra=b" from='romeo@example.net' id='s1'"))
        self.assertEqual(
            events,
            [
                StreamOpened(
                    {"to": "example.com", "version": "1.0", "xml:lang": "en",
                     "from": "romeo@example.net", "id": "s1"},
                    "jabber:client",
                    {"stream": "http://etherx.jabber.org/streams"},
                )
            ],
        )

    def test_serverAndComponentNamespaces(self) -> None:
        """
        If the parser is set up for jabber:server or jabber:component:accept, headers in
        that namespace open the stream, and s2s sees the dialback prefix it declared.
        """
        dialback = b" xmlns:db='jabber:server:dialback'"
        [opened] = StreamParser(default_namespace="jabber:server").feed(
            header(b"jabber:server", dialback)
        )
        self.assertEqual(opened.prefixes["db"], "jabber:server:dialback")
        [opened] = StreamParser(default_namespace="jabber:component:accept").feed(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='"
            + NS_STREAMS + b"' to='muc.example.com'>"
        )
        self.assertEqual(opened.namespace, "jabber:component:accept")
        self.assertNotIn("version", opened.attrs)

    def test_badSettingsRefused(self) -> None:
        """
        If the parser is asked for a content namespace XMPP does not define, or for a
        limit below one, it refuses.
        """
        self.assertRaises(ValueError, StreamParser, default_namespace="urn:example")
        self.assertRaises(ValueError, StreamParser, max_stanza=0)
        self.assertRaises(ValueError, StreamParser, reparse_window=0)
        self.assertRaises(ValueError, StreamParser, max_names=0)

    def test_wrongContentNamespace(self) -> None:
        """
        If a header declares a content namespace other than the configured one, or none,
        the error is invalid-namespace.
        """
        self.assertCondition(header(b"jabber:server"), "invalid-namespace")
        self.assertCondition(
            b"<stream:stream xmlns:stream='" + NS_STREAMS + b"'>", "invalid-namespace"
        )

    def test_wrongStreamRoot(self) -> None:
        """
        If the root is not <stream> in the streams namespace, the error is invalid-namespace.
        """
        self.assertCondition(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>",
            "invalid-namespace",
        )
        self.assertCondition(
            b"<stream:features xmlns='jabber:client' xmlns:stream='" + NS_STREAMS + b"'>",
            "invalid-namespace",
        )
        self.assertCondition(b"<stream xmlns='jabber:client'>", "invalid-namespace")

    def test_unboundStreamPrefix(self) -> None:
        """
        If the header uses the stream prefix without declaring it, the error is
        bad-namespace-prefix.
        """
        self.assertCondition(b"<stream:stream xmlns='jabber:client'>", "bad-namespace-prefix")

    def test_versions(self) -> None:
        """
        If the version is 1.x it is accepted; another major version or a malformed one is
        unsupported-version.
        """
        self.assertEqual(len(StreamParser().feed(HEADER.replace(b"1.0", b"1.1"))), 1)
        for version in (b"2.0", b"0.9", b"1", b"one", b"1.0.0", b""):
            self.assertCondition(HEADER.replace(b"'1.0' xml", b"'" + version + b"' xml"),
                                 "unsupported-version")

    def test_nonUtf8Declaration(self) -> None:
        """
        If the XML declaration names an encoding other than UTF-8, the error is
        unsupported-encoding.
        """
        data = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='ISO-8859-1'?>")
        self.assertCondition(data, "unsupported-encoding")
        data = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='utf-8'?>")
        self.assertEqual(len(StreamParser().feed(data)), 1)

    def test_streamClose(self) -> None:
        """
        If the peer closes its stream, a StreamClosed follows the stanzas before it.
        """
        events = StreamParser().feed(HEADER + PRESENCE + b"</stream:stream>")
        self.assertIsInstance(events[1], Stanza)
        self.assertEqual(events[2], StreamClosed())

    def test_onlyWhitespaceAfterClose(self) -> None:
        """
        If anything but whitespace follows </stream:stream>, at once or later, the error is
        not-well-formed.
        """
        parser = StreamParser()
        parser.feed(HEADER + b"</stream:stream>\n")
        self.assertEqual(parser.feed(b" \r\n"), [])
        self.assertEqual(self.assertRaises(StreamError, parser.feed, PRESENCE).condition,
                         "not-well-formed")
        error = self.assertCondition(HEADER + b"</stream:stream> x", "not-well-formed")
        self.assertEqual(error.events[-1], StreamClosed())

    def test_resetExpectsNewHeader(self) -> None:
        """
        If the parser is reset after SASL success, a second header (with its own XML
        declaration) opens a new stream and old partial input is forgotten.
        """
        parser = StreamParser()
        parser.feed(HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AGp1bGlldA==</auth>")
        parser.feed(b"<message><bo")
        parser.reset()
        events = parser.feed(HEADER + IQ)
        self.assertEqual([type(e) for e in events], [StreamOpened, Stanza])
        self.assertEqual(events[1].size, len(IQ))


class StanzaTests(StreamTestMixin, SynchronousTestCase):
    def test_messageIqPresence(self) -> None:
        """
        If a stream carries message, iq and presence, each is one Stanza in the content
        namespace with its attributes, children and text, and its exact size in bytes.
        """
        events = StreamParser().feed(HEADER + MESSAGE + b"\n" + IQ + b" " + PRESENCE)
        message, iq, presence = (e for e in events if isinstance(e, Stanza))
        self.assertEqual((message.element.uri, message.element.name), ("jabber:client", "message"))
        self.assertEqual(message.element["to"], "juliet@example.com")
        self.assertEqual(str(message.element.body), "Art thou?")
        self.assertEqual(message.size, len(MESSAGE))
        self.assertEqual(iq.element.ping.uri, "urn:xmpp:ping")
        self.assertEqual(iq.size, len(IQ))
        self.assertEqual(presence.element.name, "presence")
        self.assertEqual(presence.size, len(PRESENCE))
        self.assertIsNone(message.element.parent)

    def test_tricksySizes(self) -> None:
        """
        If tags contain '>' or '/>' inside attribute values, or spaces before '>', the size
        still runs from the stanza's '<' to its last '>'.
        """
        for stanza in (
            b"<iq id='a/>b' type=\"x>y\"/>",
            b"<message id='1'  ><body>a &lt; b</body></message  >",
            b"<presence><x xmlns='urn:x'/></presence>",
        ):
            [event] = StreamParser().feed(HEADER + stanza)[1:]
            self.assertEqual(event.size, len(stanza), stanza)

    def test_entitiesAndCharacterReferences(self) -> None:
        """
        If text and attributes use the five predefined entities and character references,
        they are decoded.
        """
        data = b"<message id='&apos;&quot;'><body>&amp;&lt;&gt;&#233;&#x1F600;</body></message>"
        [stanza] = StreamParser().feed(HEADER + data)[1:]
        self.assertEqual(stanza.element["id"], "'\"")
        self.assertEqual(str(stanza.element.body), "&<>\u00e9\U0001f600")

    def test_namespacesAndPrefixes(self) -> None:
        """
        If stanzas use prefixed extensions, xmlns='' and xml:lang, the tree has the right
        namespaces and serialises back to the same tree.
        """
        data = (b"<message xml:lang='fr'><x:y xmlns:x='urn:x' x:a='1'><z/></x:y>"
                b"<w xmlns=''/></message>")
        [stanza] = StreamParser().feed(HEADER + data)[1:]
        y, w = stanza.element.children
        self.assertEqual((y.uri, y.name, y.attributes), ("urn:x", "y", {("urn:x", "a"): "1"}))
        self.assertEqual(y.children[0].uri, "jabber:client")
        self.assertEqual(w.uri, "")
        self.assertEqual(
            stanza.element.attributes, {("http://www.w3.org/XML/1998/namespace", "lang"): "fr"}
        )
        again = StreamParser().feed(HEADER + element_to_bytes(stanza.element))[1]
        self.assertEqual(element_to_bytes(again.element), element_to_bytes(stanza.element))

    def test_nonStanzaChildren(self) -> None:
        """
        If a child of the root is in another namespace (STARTTLS, stream features), it is
        reported like a stanza.
        """
        starttls = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        [event] = StreamParser().feed(HEADER + starttls)[1:]
        self.assertEqual(event.element.uri, "urn:ietf:params:xml:ns:xmpp-tls")

    def test_whitespaceKeepalives(self) -> None:
        """
        If a peer sends whitespace between stanzas, far more than max_stanza in total, no
        events and no error result, and later stanzas are unaffected.
        """
        parser = StreamParser(max_stanza=256)
        parser.feed(HEADER)
        for _ in range(2000):
            self.assertEqual(parser.feed(b" "), [])
        self.assertEqual(parser.feed(b"\r\n\t " * 5000), [])
        [event] = parser.feed(PRESENCE)
        self.assertEqual(event.size, len(PRESENCE))

    def test_textAtTopLevel(self) -> None:
        """
        If non-whitespace text appears between stanzas, the error is not-well-formed.
        """
        self.assertCondition(HEADER + PRESENCE + b" hello", "not-well-formed")

    def test_unboundPrefixInStanza(self) -> None:
        """
        If a stanza uses an undeclared prefix, the error is bad-namespace-prefix.
        """
        self.assertCondition(HEADER + b"<message><foo:bar/></message>", "bad-namespace-prefix")
        self.assertCondition(HEADER + b"<message foo:id='1'/>", "bad-namespace-prefix")

    def test_malformed(self) -> None:
        """
        If the XML is malformed (mismatched tags, bad names, duplicate attributes, '<' in
        values), the error is not-well-formed.
        """
        for data in (b"<message></iq>", b"<1message/>", b"<iq id='1' id='2'/>",
                     b"<iq id='<'/>", b"<iq>&#0;</iq>", b"</stream:stream><x/>"):
            self.assertCondition(HEADER + data, "not-well-formed")


class RestrictedXmlTests(StreamTestMixin, SynchronousTestCase):
    def test_attackCorpusIsPresent(self) -> None:
        """
        If the corpus was copied, all eight defusedxml files are there.
        """
        self.assertEqual(len(ATTACKS), 8)

    def test_attackCorpusAsOpening(self) -> None:
        """
        If an attack document is sent instead of a stream header, the DOCTYPE makes it
        restricted-xml, whole or byte by byte.
        """
        for path in ATTACKS:
            data = path.read_bytes()
            self.assertCondition(data, "restricted-xml")
            self.assertEqual(outcome(bytewise(data)), ([], "restricted-xml"), path.name)

    def test_attackCorpusAfterHeader(self) -> None:
        """
        If an attack document follows a valid header, the stream error is restricted-xml or
        not-well-formed; with the DTD cut off, its entity references are restricted-xml.
        """
        for path in ATTACKS:
            data = path.read_bytes()
            events, condition = outcome([HEADER, data])
            self.assertEqual(len(events), 1)
            self.assertIn(condition, ("restricted-xml", "not-well-formed"), path.name)
            body = data[data.index(b"]>") + 2 :] if b"]>" in data else b""
            if b"&" in body:
                self.assertCondition(HEADER + body, "restricted-xml")

    def test_billionLaughsNeverExpands(self) -> None:
        """
        If a billion-laughs document arrives byte by byte, it is rejected at the DOCTYPE,
        before any entity is declared, let alone referenced.
        """
        lol = b"<!DOCTYPE lolz [<!ENTITY lol 'lol'>" + b"".join(
            b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        ) + b"]><lolz>&lol9;</lolz>"
        for data in (lol, (CORPORA / "xml_attacks" / "defusedxml_xmlbomb.xml").read_bytes()):
            parser = StreamParser()
            for offset in range(len(data)):
                try:
                    parser.feed(data[offset : offset + 1])
                except StreamError as e:
                    self.assertEqual(e.condition, "restricted-xml")
                    break
            self.assertLess(offset, data.index(b"<!ENTITY"))

    def test_commentsAndProcessingInstructions(self) -> None:
        """
        If comments or processing instructions appear before the header or in a stanza,
        the error is restricted-xml.
        """
        self.assertCondition(b"<!-- hi -->" + HEADER, "restricted-xml")
        self.assertCondition(b"<?php x?>" + HEADER, "restricted-xml")
        self.assertCondition(HEADER + b"<message><!-- hi --></message>", "restricted-xml")
        self.assertCondition(HEADER + b"<message><?x y?></message>", "restricted-xml")
        self.assertCondition(HEADER + b"<!-- keepalive -->", "restricted-xml")

    def test_undefinedEntities(self) -> None:
        """
        If a stanza references an entity other than the predefined five, in text or in an
        attribute, the error is restricted-xml.
        """
        self.assertCondition(HEADER + b"<message><body>&nbsp;</body></message>", "restricted-xml")
        self.assertCondition(HEADER + b"<message id='&ent;'/>", "restricted-xml")


class LimitTests(StreamTestMixin, SynchronousTestCase):
    def test_stanzaAtLimit(self) -> None:
        """
        If a stanza is exactly max_stanza bytes it is accepted, and one byte more is a
        policy-violation, whether fed at once or byte by byte.
        """
        stanza = b"<message><body>" + b"a" * 1000 + b"</body></message>"
        size = len(stanza)
        stream = HEADER + b"\n " + stanza
        for chunks in ([stream], bytewise(stream)):
            events, condition = outcome(chunks, max_stanza=size)
            self.assertEqual((events[-1][2], condition), (size, None))
            events, condition = outcome(chunks, max_stanza=size - 1)
            self.assertEqual((len(events), condition), (1, "policy-violation"))

    def test_unclosedStanzaStopsEarly(self) -> None:
        """
        If a stanza never ends, the policy-violation comes with the first chunk that takes
        it past max_stanza, so the parser never holds much more than max_stanza bytes.
        """
        parser = StreamParser(max_stanza=4096)
        parser.feed(HEADER + b"<message><body>")
        fed = len(b"<message><body>")
        chunk = b"x" * 1000 + b"<b>" + b"y" * 20 + b"</b>\n"
        with self.assertRaises(StreamError) as caught:
            for _ in range(100):
                parser.feed(chunk)
                fed += len(chunk)
        self.assertEqual(caught.exception.condition, "policy-violation")
        self.assertLess(fed, 4096)
        self.assertGreater(fed + len(chunk), 4096)

    def test_hugeSingleFeed(self) -> None:
        """
        If one feed holds a multi-megabyte text node or start tag, the error is
        policy-violation.
        """
        self.assertCondition(HEADER + b"<message><body>" + b"z" * 3_000_000,
                             "policy-violation", max_stanza=65536)
        self.assertCondition(HEADER + b"<message id='" + b"z" * 3_000_000,
                             "policy-violation", max_stanza=65536)

    def test_unclosedStartTagByteByByte(self) -> None:
        """
        If a start tag or comment never ends, fed byte by byte, the error comes once the
        bytes since the stanza began pass max_stanza.
        """
        for opening in (b"<message to='", b"<message><!--"):
            parser = StreamParser(max_stanza=512)
            parser.feed(HEADER + b"\n")
            parser.feed(opening)
            with self.assertRaises(StreamError) as caught:
                for _ in range(512 - len(opening)):
                    parser.feed(b"a")
                parser.feed(b"a")
            self.assertEqual(caught.exception.condition, "policy-violation")

    def test_oversizedHeader(self) -> None:
        """
        If the prolog and header grow past max_stanza, the error is policy-violation.
        """
        self.assertCondition(b"    " * 300, "policy-violation", max_stanza=1024)
        self.assertCondition(header(extra=b" id='" + b"i" * 2000 + b"'"),
                             "policy-violation", max_stanza=1024)

    def test_depthLimit(self) -> None:
        """
        If elements nest max_depth deep they are accepted; one level more is a
        policy-violation.
        """
        def nested(depth: int) -> bytes:
            return b"<a>" * depth + b"</a>" * depth

        self.assertEqual(len(StreamParser(max_depth=50).feed(HEADER + nested(50))), 2)
        self.assertCondition(HEADER + nested(51), "policy-violation", max_depth=50)

    def test_distinctNames(self) -> None:
        """
        If a stream keeps inventing element and attribute names, it is a policy-violation
        once it has used more than max_names; reusing names costs nothing, and a new
        stream after reset() starts counting afresh.
        """
        parser = StreamParser(max_names=100)
        parser.feed(HEADER)
        for _ in range(50):
            parser.feed(MESSAGE + IQ + PRESENCE)
        parser.reset()
        parser.feed(HEADER + b"".join(b"<x%d a%d='1'/>" % (i, i) for i in range(47)))
        error = self.assertRaises(StreamError, parser.feed, b"<y/><z1 z2='' z3=''/>")
        self.assertEqual(error.condition, "policy-violation")
        self.assertEqual(len(error.events), 1)

    def test_otherStreamsUnaffected(self) -> None:
        """
        If one stream fails, a fresh parser for the next session parses normally.
        """
        self.assertCondition(HEADER + b"<message>" + b"x" * 300, "policy-violation",
                             max_stanza=256)
        self.assertEqual(outcome([HEADER, PRESENCE], max_stanza=256)[1], None)


class ErrorStateTests(SynchronousTestCase):
    def test_errorIsSticky(self) -> None:
        """
        If a feed raised a stream error, every later feed raises it again, even with valid
        input and after reset().
        """
        parser = StreamParser()
        self.assertRaises(StreamError, parser.feed, HEADER + b"<!-- x -->")
        for data in (b"", PRESENCE):
            self.assertEqual(self.assertRaises(StreamError, parser.feed, data).condition,
                             "restricted-xml")
        parser.reset()
        self.assertRaises(StreamError, parser.feed, HEADER)

    def test_eventsBeforeErrorKept(self) -> None:
        """
        If a feed completes stanzas before hitting bad input, they travel on the error.
        """
        error = self.assertRaises(StreamError, StreamParser().feed, HEADER + IQ + b"<!---->")
        self.assertEqual([type(e) for e in error.events], [StreamOpened, Stanza])

    def test_streamErrorValidatesCondition(self) -> None:
        """
        If a condition is not an RFC 6120 one, StreamError and stream_error_xml refuse it.
        """
        self.assertRaises(ValueError, StreamError, "oops")
        self.assertRaises(ValueError, stream_error_xml, "oops")

    def test_streamErrorXml(self) -> None:
        """
        If a stream error is rendered, it names the condition in the streams-error namespace
        and escapes the text, which parses back as one <stream:error> child.
        """
        self.assertEqual(
            stream_error_xml("not-well-formed"),
            b"<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"</stream:error>",
        )
        rendered = stream_error_xml("policy-violation", "a<b & 'c'\x00")
        [error] = StreamParser().feed(HEADER + rendered)[1:]
        self.assertEqual((error.element.uri, error.element.name), (NS_STREAMS.decode(), "error"))
        self.assertEqual(str(error.element.text), "a<b & 'c'\ufffd")


class _CountingExpat:
    """Wraps an expat parser to count the Parse calls the stream parser makes."""

    def __init__(self, real: Any) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "calls", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)

    def Parse(self, data: bytes, final: bool = False) -> int:
        object.__setattr__(self, "calls", self.calls + 1)
        return self._real.Parse(data, final)


class ChunkingTests(SynchronousTestCase):
    def test_byteAtATimeMatchesOneShot(self) -> None:
        """
        If a stream is fed one byte at a time, the events equal those of one feed.
        """
        stream = (HEADER + b" " + MESSAGE + IQ + b"\n" + PRESENCE
                  + b"<message><body>\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80</body></message>"
                  + b"</stream:stream>")
        whole = outcome([stream])
        self.assertEqual(len(whole[0]), 6)
        self.assertEqual(outcome(bytewise(stream)), whole)

    def test_longTagsAnyWindow(self) -> None:
        """
        If stanzas carry tags of many kilobytes, with '>' and quotes inside attribute
        values, the events are the same whole, byte by byte, and with any reparse window.
        """
        value = b"a>b/>\"c\"" * 1500
        stream = (HEADER + b"<message id='" + value + b"'><body a='" + value + b"'/></message>"
                  + b"<iq id=\"x'>\"><![CDATA[" + value + b"]]></iq>" + PRESENCE)
        whole = outcome([stream])
        self.assertEqual([event[0] for event in whole[0]], ["opened"] + ["stanza"] * 3)
        self.assertEqual(outcome([stream], reparse_window=1), whole)
        self.assertEqual(outcome(bytewise(stream), reparse_window=16), whole)
        cut = len(stream) - len(PRESENCE) - 1
        self.assertEqual(outcome([stream[:cut], stream[cut:]]), whole)

    def test_lastByteDeliversStanza(self) -> None:
        """
        If a long tag arrives in two pieces and the second is its final '>', the stanza
        is reported at once: nothing is held back waiting for more input.
        """
        stanza = b"<message id='" + b"m" * 20000 + b"'/>"
        parser = StreamParser()
        self.assertEqual(len(parser.feed(HEADER + stanza[:-1])), 1)
        [event] = parser.feed(stanza[-1:])
        self.assertEqual(event.size, len(stanza))

    def test_drippedTagIsLinear(self) -> None:
        """
        If a huge tag arrives one byte at a time, expat is called only while the tag is
        within the reparse window and once it ends, not once per byte, so it never
        re-scans the tag tens of thousands of times.
        """
        created: list[_CountingExpat] = []
        real_create = expat.ParserCreate

        def create(*args: Any, **kwargs: Any) -> _CountingExpat:
            created.append(_CountingExpat(real_create(*args, **kwargs)))
            return created[-1]

        self.patch(expat, "ParserCreate", create)
        parser = StreamParser(reparse_window=256)
        parser.feed(HEADER)
        stanza = b"<message id='" + b"d" * 50000 + b"'><!--" + b"e" * 50000 + b"--></message>"
        with self.assertRaises(StreamError) as caught:
            for offset in range(len(stanza)):
                parser.feed(stanza[offset : offset + 1])
        self.assertEqual(caught.exception.condition, "restricted-xml")
        self.assertLess(created[0].calls, 2 * 256 + 10)

    def test_utf8Corpus(self) -> None:
        """
        If text or an attribute holds a Prosody corpus sequence, invalid UTF-8 is
        not-well-formed, fed whole or split; valid UTF-8 parses unless it encodes a
        character XML forbids (U+0000, U+FFFE, U+FFFF).
        """
        forbidden = {"\x00", "\ufffe", "\uffff"}
        lines = [line for line in UTF8_SEQUENCES.read_text().splitlines() if line.strip()]
        self.assertEqual(len(lines), 52)
        not_xml = set()
        for line in lines:
            verdict, rest = line.split(":", 1)
            sequence = bytes.fromhex(rest.split("#")[0])
            valid = verdict == "Should pass"
            if valid:
                text = sequence.decode("utf-8")
            else:
                self.assertRaises(UnicodeDecodeError, sequence.decode, "utf-8")
            for stanza in (b"<message><body>" + sequence + b"</body></message>",
                           b"<message id='" + sequence + b"'/>"):
                for chunks in ([HEADER + stanza], [HEADER] + bytewise(stanza)):
                    events, condition = outcome(chunks)
                    if valid and not forbidden & set(text):
                        self.assertIsNone(condition, line)
                        self.assertEqual(events[-1][2], len(stanza))
                    else:
                        self.assertEqual(condition, "not-well-formed", line)
                        if valid:
                            not_xml.add(text)
        self.assertEqual(not_xml, forbidden)


STREAM_BITS = [
    HEADER, PRESENCE, MESSAGE, IQ, b"<message>", b"</message>", b"<body>", b"</body>",
    b"hello", b" ", b"\n", b"&amp;", b"&foo;", b"<!-- c -->", b"<a xmlns='urn:x'>", b"</a>",
    b"<x:y/>", b"\xc3\xa9", b"\xc3", b"\xe2\x82", b"<iq id='>'/>", b"</stream:stream>",
    b"<![CDATA[ <x> ]]>", b"<?pi?>", b"<!DOCTYPE x>", b"'", b"<", b">", b"a" * 90,
    b"<!-", b"-", b"-->", b"<![CD", b"]]>", b"<?", b"?>", b"<m a='", b'"', b"<!",
]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitraryBytesOnlyGiveEventsOrStreamError(data: bytes) -> None:
    """
    If any bytes follow a valid header, the parser returns events or raises StreamError,
    whole or split in two.
    """
    for chunks in ([HEADER + data], [HEADER, data[: len(data) // 2], data[len(data) // 2 :]]):
        events, condition = outcome(chunks)
        assert events[0][0] == "opened"
        assert condition is None or isinstance(condition, str)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(STREAM_BITS), max_size=40),
    st.lists(st.integers(0, 4000)),
    st.sampled_from([1, 4, 4096]),
)
def test_splittingNeverChangesTheOutcome(bits: list[bytes], cuts: list[int], window: int) -> None:
    """
    If a stream is cut at arbitrary points, or into single bytes, the events and the
    error are the same as when it is fed at once, whatever the reparse window.
    """
    data = HEADER + b"".join(bits)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    limits = {"max_stanza": 200, "max_depth": 3, "reparse_window": window}
    whole = outcome([data], **limits)
    assert outcome(chunks, **limits) == whole
    assert outcome(bytewise(data), **limits) == whole

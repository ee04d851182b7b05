"""Stanza helpers: error replies, IQ results, namespace rebasing, serialisation."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from unirtc.xmpp.jid import JID
from unirtc.xmpp.parser import StreamParser
from unirtc.xmpp.stanzas import (
    StanzaError,
    can_bounce,
    checked_address,
    error_reply,
    iq_result,
    rebase,
    stanza_type,
    to_bytes,
)

COMPONENT_HEADER = (b"<stream:stream xmlns='jabber:component:accept' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' to='bot.falcot.com'>")


def parse(xml: str) -> domish.Element:
    parser = StreamParser()
    header = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
              b"to='falcot.com' version='1.0'>")
    return parser.feed(header + xml.encode())[1].element


class StanzaErrorTests(SynchronousTestCase):
    def test_defaultTypeAndValidation(self) -> None:
        """
        If a StanzaError is made with a defined condition, its type defaults per RFC 6120 §8.3.3;
        an unknown condition or type is a ValueError.
        """
        self.assertEqual(StanzaError("item-not-found").type, "cancel")
        self.assertEqual(StanzaError("forbidden").type, "auth")
        self.assertRaises(ValueError, StanzaError, "no-such-condition")
        self.assertRaises(ValueError, StanzaError, "forbidden", "sometimes")

    def test_errorReplySwapsAddressesAndDropsPayload(self) -> None:
        """
        If a stanza is bounced, the reply keeps kind and id, swaps to/from, carries the condition
        and text in the stanzas namespace, and does not echo the payload.
        """
        request = parse("<message from='a@falcot.com/x' to='b@falcot.com' id='7'><body>secret</body></message>")
        reply = error_reply(request, StanzaError("service-unavailable", text="gone"))
        xml = to_bytes(reply).decode()
        self.assertEqual((reply.name, reply["id"], reply["to"], reply["from"]),
                         ("message", "7", "a@falcot.com/x", "b@falcot.com"))
        self.assertIn("<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>", xml)
        self.assertIn(">gone</text>", xml)
        self.assertNotIn("secret", xml)

    def test_noErrorLoops(self) -> None:
        """
        If a stanza is an error or an IQ result, it must not be bounced.
        """
        self.assertFalse(can_bounce(parse("<message type='error'/>")))
        self.assertFalse(can_bounce(parse("<iq type='result' id='1'/>")))
        self.assertTrue(can_bounce(parse("<iq type='get' id='1'/>")))

    def test_iqResult(self) -> None:
        """
        If a result is built for a request, it has the request's id, swapped addresses and payload.
        """
        request = parse("<iq from='a@falcot.com/x' to='falcot.com' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        payload = domish.Element(("urn:example", "answer"))
        result = iq_result(request, payload)
        self.assertEqual(to_bytes(result),
                         b"<iq type='result' id='p' to='a@falcot.com/x' from='falcot.com'>"
                         b"<answer xmlns='urn:example'/></iq>")

    def test_typesAndAddresses(self) -> None:
        """
        If type is absent, a message is 'normal' and a presence 'available'; a malformed address is
        jid-malformed.
        """
        self.assertEqual(stanza_type(parse("<message/>")), "normal")
        self.assertEqual(stanza_type(parse("<presence/>")), "available")
        self.assertEqual(checked_address(parse("<message to='Joe@Falcot.com'/>"), "to"), JID.parse("joe@falcot.com"))
        with self.assertRaises(StanzaError) as caught:
            checked_address(parse("<message to='@falcot.com'/>"), "to")
        self.assertEqual(caught.exception.condition, "jid-malformed")


class RebaseTests(SynchronousTestCase):
    def test_componentStanzaBecomesClientStanza(self) -> None:
        """
        If a stanza parsed on a component stream is rebased, it and its inherited children move to
        jabber:client, a child in its own namespace keeps it, and serialising it gives no xmlns for
        the stream's namespace at all.
        """
        parser = StreamParser(default_namespace="jabber:component:accept")
        events = parser.feed(COMPONENT_HEADER + b"<message to='a@falcot.com'><body>hi</body>"
                             b"<x xmlns='urn:example'><y/></x></message>")
        element = rebase(events[1].element)
        self.assertEqual((element.uri, element.body.uri, element.x.uri, element.x.y.uri),
                         ("jabber:client", "jabber:client", "urn:example", "urn:example"))
        self.assertEqual(to_bytes(element),
                         b"<message to='a@falcot.com'><body>hi</body><x xmlns='urn:example'><y/></x></message>")

    def test_streamElementsUseStreamPrefix(self) -> None:
        """
        If a stream-level element is serialised, it uses the stream: prefix the header declared.
        """
        features = domish.Element(("http://etherx.jabber.org/streams", "features"))
        features.addElement(("urn:ietf:params:xml:ns:xmpp-bind", "bind"))
        self.assertEqual(to_bytes(features),
                         b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")

"""Stored stanza text and deep copies: round trips, and hostile stored text refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from unirtc.xmpp.serialize import StoredXmlError, clone, from_text, to_text

MESSAGE = ("<message to='roland@falcot.com' from='joe@falcot.com/laptop' type='chat' xml:lang='fr'>"
           "<body>caf\u00e9 &amp; &lt;b&gt;</body><x xmlns='jabber:x:oob'><url>http://x/</url></x></message>")


class SerializeTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        If a stanza is written as text and read back, it is in jabber:client again with the same
        attributes, xml:lang, text and foreign-namespace children.
        """
        element = from_text(MESSAGE)
        again = from_text(to_text(element))
        self.assertEqual((again.uri, again["type"], again[("http://www.w3.org/XML/1998/namespace", "lang")]),
                         ("jabber:client", "chat", "fr"))
        self.assertEqual(str(again.body), "caf\u00e9 & <b>")
        self.assertEqual(str(next(again.elements("jabber:x:oob", "x")).url), "http://x/")
        self.assertEqual(to_text(again), to_text(element))

    def test_cloneIsIndependent(self) -> None:
        """
        If a clone's attributes and children change, the original is untouched.
        """
        original = from_text(MESSAGE)
        copy = clone(original)
        copy["to"] = "ann@falcot.com"
        copy.body.children[0] = "changed"
        copy.addElement("extra")
        self.assertEqual(original["to"], "roland@falcot.com")
        self.assertEqual(str(original.body), "caf\u00e9 & <b>")
        self.assertEqual(len(list(original.elements())), 2)

    def test_hostileTextRefused(self) -> None:
        """
        If stored text has a DOCTYPE or entity, a comment, a processing instruction, two elements,
        an unclosed element, stray text or exceeds the size limit, StoredXmlError is raised.
        """
        for text in ["<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", "<a/><!-- c -->", "<?pi x?><a/>",
                     "<a/><b/>", "<a>", "<a/><b>", "junk", "", "</stream:stream>", "<a/>tail", "<a:b/>"]:
            with self.assertRaises(StoredXmlError, msg=text):
                from_text(text)
        with self.assertRaises(StoredXmlError):
            from_text("<a>" + "x" * 2000 + "</a>", max_size=1000)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=200))
def test_anyBodyRoundTrips(body: str) -> None:
    """
    If a message body is any printable text, it survives storage unchanged.
    """
    message = domish.Element(("jabber:client", "message"))
    message.addElement("body", content=body)
    assert str(from_text(to_text(message)).body) == body

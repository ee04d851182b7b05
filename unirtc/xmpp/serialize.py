# -*- test-case-name: tests.unit.test_xmpp_serialize -*-
"""Copying stanzas and keeping them as text: what plugins that store or fan out stanzas need.

The router hands the same ``domish.Element`` to every recipient, so a plugin that changes an
address (a carbon copy, presence sent on a user's behalf) works on a ``clone``. Stored stanzas
(offline messages, vCards, private XML, archives) are kept as XML text and read back through
our own restricted stream parser, so a stored payload is held to the same rules as one that
arrives on a stream: no DTDs, entities, comments or processing instructions, and a size limit.
"""

from __future__ import annotations

from twisted.words.xish import domish

from unirtc.xmpp.errors import StreamError
from unirtc.xmpp.parser import Stanza, StreamParser
from unirtc.xmpp.stanzas import NS_CLIENT, to_bytes

_HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
           b"version='1.0'>")
MAX_STORED = 1_000_000


class StoredXmlError(ValueError):
    """Stored text that is not exactly one well-formed, unrestricted XML element."""


def clone(element: domish.Element) -> domish.Element:
    """A deep copy whose attributes and children can change without touching the original."""
    copy = domish.Element((element.uri, element.name), element.defaultUri, dict(element.attributes),
                          dict(element.localPrefixes))
    for child in element.children:
        copy.addChild(clone(child) if isinstance(child, domish.Element) else child)
    return copy


def to_text(element: domish.Element) -> str:
    """XML text for storage; stanzas keep ``jabber:client`` implicit, as on a stream."""
    return to_bytes(element).decode("utf-8")


def from_text(text: str, max_size: int = MAX_STORED) -> domish.Element:
    """Parse text written by ``to_text`` (or a hostile copy of it) back into one element."""
    data = text.encode("utf-8")
    if len(data) > max_size:
        raise StoredXmlError(f"stored XML is larger than {max_size} bytes")
    parser = StreamParser(max(max_size, 1024), NS_CLIENT)
    try:
        events = parser.feed(_HEADER + data)
    except StreamError as e:
        raise StoredXmlError(str(e)) from None
    elements = [event.element for event in events if isinstance(event, Stanza)]
    if len(elements) != 1 or len(events) != len(elements) + 1 or not _complete(parser):
        raise StoredXmlError("stored XML is not exactly one complete element")
    return elements[0]


def _complete(parser: StreamParser) -> bool:
    """True if nothing but whitespace follows the element (no half-open second element)."""
    try:
        return len(parser.feed(b"</stream:stream>")) == 1
    except StreamError:
        return False

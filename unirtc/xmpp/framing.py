# -*- test-case-name: tests.unit.test_xmpp_framing -*-
"""RFC 7395 framing: one WebSocket text message is one complete XML element, and the stream
header and footer become ``<open/>`` and ``<close/>`` in ``urn:ietf:params:xml:ns:xmpp-framing``.

Sans-I/O: messages in, the stream events ``stream.py`` sessions already understand out
(``StreamOpened``, ``Stanza``, ``StreamClosed``), and elements out as self-contained messages.
Each message is parsed by the same restricted parser as a TCP stream (no DTD, entities,
comments or processing instructions; stanza size and depth bounded), inside a stream header of
our own, so it can be checked to hold exactly one element and nothing else.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import quoteattr

from twisted.words.xish import domish

from unirtc.xmpp.errors import NS_STREAMS, StreamError, stream_error_xml
from unirtc.xmpp.parser import NS_XML, Stanza, StreamClosed, StreamEvent, StreamOpened, StreamParser
from unirtc.xmpp.stanzas import NS_CLIENT

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
# Written exactly as RFC 7395's examples: Strophe.js recognises the close by string comparison.
CLOSE = f'<close xmlns="{NS_FRAMING}" />'
# The stream root each message is parsed in; its prefix is one no client uses, so a message
# must declare every prefix it uses itself (each message stands alone, RFC 7395 §3.3.3).
_WRAPPER_OPEN = f"<rfc7395-wrapper:stream xmlns='{NS_CLIENT}' xmlns:rfc7395-wrapper='{NS_STREAMS}'>".encode()
_WRAPPER_CLOSE = b"</rfc7395-wrapper:stream>"
# An XML declaration before the element: tolerated (some clients send one with <open/>).
_XML_DECLARATION = re.compile(r"\s*<\?xml\s[^<>]*\?>")
_VERSION = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})")


def parse_message(text: str, max_stanza: int) -> StreamEvent | None:
    """The stream event one text message carries, or None for a message of whitespace only.

    Raises ``StreamError``: whatever the restricted parser raises for the element
    (``not-well-formed``, ``restricted-xml``, ``policy-violation``...), ``bad-format`` for a
    message holding more than one element, and ``unsupported-version`` for an ``<open/>`` that
    is not XMPP 1.x.
    """
    declaration = _XML_DECLARATION.match(text)
    if declaration is not None:
        text = text[declaration.end():]
    if not text.strip(" \t\r\n"):
        return None
    if text.lstrip(" \t\r\n").startswith("<!DOCTYPE"):  # inside our root expat would only say "syntax"
        raise StreamError("restricted-xml", "a DOCTYPE is not allowed in XMPP")
    parser = StreamParser(max_stanza, NS_CLIENT)
    parser.feed(_WRAPPER_OPEN)
    events = parser.feed(text.encode("utf-8", "surrogatepass"))
    ending = parser.feed(_WRAPPER_CLOSE)  # an unfinished element fails here, as not-well-formed
    events += ending
    stanzas = [event for event in events if isinstance(event, Stanza)]
    if len(stanzas) != 1 or len(events) != 2:
        raise StreamError("bad-format", "RFC 7395: each WebSocket message holds exactly one element")
    element = stanzas[0].element
    if element.uri != NS_FRAMING:
        return stanzas[0]
    if element.name == "open":
        return _opened(element)
    if element.name == "close":
        return StreamClosed()
    raise StreamError("bad-format", f"<{element.name}/> is not an RFC 7395 framing element")


def _opened(element: domish.Element) -> StreamOpened:
    """``<open/>`` as the stream header it stands for (RFC 7395 §3.4)."""
    attrs: dict[str, str] = {}
    for key, value in element.attributes.items():
        if isinstance(key, tuple):
            if key == (NS_XML, "lang"):
                attrs["xml:lang"] = value
        else:
            attrs[key] = value
    version = attrs.get("version")
    if version is not None:
        match = _VERSION.fullmatch(version)
        if match is None or int(match[1]) != 1:
            raise StreamError("unsupported-version", "this server speaks XMPP 1.x")
    return StreamOpened(attrs, NS_CLIENT, {})


def open_message(attrs: dict[str, str]) -> str:
    """Our ``<open/>`` answer with the header attributes (from, id, version, xml:lang)."""
    parts = [f'<open xmlns="{NS_FRAMING}"']
    for key, value in attrs.items():
        parts.append(f" {key}={quoteattr(value)}")
    parts.append("/>")
    return "".join(parts)


def element_message(element: domish.Element) -> str:
    """An element as a self-contained message: every namespace it uses declared on it
    (``jabber:client`` included, RFC 7395 §3.3.3), ``stream:`` for stream features."""
    return element.toXml({NS_STREAMS: "stream"})


def error_message(condition: str, text: str | None = None) -> str:
    """``<stream:error/>`` as a message of its own (RFC 7395 §3.6.1)."""
    body = stream_error_xml(condition, text).decode("utf-8")
    return body.replace("<stream:error>", f"<stream:error xmlns:stream='{NS_STREAMS}'>", 1)

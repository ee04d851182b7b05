"""Sans-I/O XMPP stream parser: bytes in, stream events out, RFC 6120 §11 restricted XML.

Twisted's ``domish.elementStream()`` expands DTD entities and skips comments and processing
instructions, so the server wraps pyexpat itself, as Prosody's ``util.xmppstream`` wraps lxp:

- DOCTYPE, entity declarations, comments and processing instructions are ``restricted-xml``;
  without a DTD, expat reports any entity other than the five predefined ones as undefined,
  which is ``restricted-xml`` too;
- each stanza (a child of the stream root, with everything inside it) is bounded by
  ``max_stanza`` input bytes, counted from its ``<`` as Prosody counts bytes per stanza;
  expat is never handed a byte past that bound, so a stanza that never ends costs at most
  ``max_stanza`` bytes of buffer before ``policy-violation``; the prolog and stream header
  share one such bound; elements nest at most ``max_depth`` levels inside a stanza;
- expat keeps every distinct element and attribute name it has seen until the document
  ends, so a stream may use at most ``max_names`` of them;
- the root must be ``<stream>`` in the streams namespace with an accepted content namespace.

The parser keeps the input since expat's last event, so a stanza's exact size (from its
``<`` to its last ``>``) is known. Expat (before 2.6, or with reparse deferral off, as here)
re-scans an unfinished token from its start on every call, so a tag or comment dripped in
one byte at a time would cost quadratic time; a small scanner of our own finds where markup
tokens end, and expat sees only the first ``reparse_window`` bytes of an unfinished one.
Events, sizes and errors are the same however the input is split, including one byte per
``feed()`` and UTF-8 characters cut in two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Union
from xml.parsers import expat

from twisted.words.xish import domish

from unirtc.xmpp.errors import NS_STREAMS, StreamError

NS_XML = "http://www.w3.org/XML/1998/namespace"
CONTENT_NAMESPACES = frozenset({"jabber:client", "jabber:server", "jabber:component:accept"})
DEFAULT_MAX_STANZA = 262144
DEFAULT_MAX_DEPTH = 50
DEFAULT_REPARSE_WINDOW = 4096
DEFAULT_MAX_NAMES = 16384

# U+0001 cannot occur in an XML 1.0 document, so it can never be part of a name or a URI.
_SEP = "\x01"
# The end of a tag that starts at '<': '>' may appear inside quoted attribute values.
_TAG = re.compile(rb"""<(?:[^'">]++|'[^']*+'|"[^"]*+")*+>""")
_SPACE = re.compile(rb"[ \t\r\n]*+")
# Text and complete markup, skipped in one pass; it stops at the '<' of an unfinished token.
# Tags and other <!...> declarations end at a '>' outside quotes; the rest at their closer.
_COMPLETE = re.compile(
    rb"""(?:[^<]++|<(?!\?|!--|!\[CDATA\[)(?:[^'">]++|'[^']*+'|"[^"]*+")*+>"""
    rb"""|<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>)*+""",
    re.S,
)
_TAG_RUN = re.compile(rb"""[^'">]*+""")
# Scanner states inside an unfinished token, and what ends the bracketed kinds.
_IN_OPEN, _IN_TAG, _SQUOTE, _DQUOTE = "open", "tag", "'", '"'
_BRACKETED = ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>"), (b"<?", b"?>"))
_VERSION = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})")

_ERR = expat.errors
_EXPAT_CONDITIONS = {
    _ERR.codes[_ERR.XML_ERROR_UNDEFINED_ENTITY]: "restricted-xml",
    _ERR.codes[_ERR.XML_ERROR_UNBOUND_PREFIX]: "bad-namespace-prefix",
    _ERR.codes[_ERR.XML_ERROR_RESERVED_PREFIX_XML]: "bad-namespace-prefix",
    _ERR.codes[_ERR.XML_ERROR_RESERVED_PREFIX_XMLNS]: "bad-namespace-prefix",
    _ERR.codes[_ERR.XML_ERROR_RESERVED_NAMESPACE_URI]: "bad-namespace-prefix",
    _ERR.codes[_ERR.XML_ERROR_UNKNOWN_ENCODING]: "unsupported-encoding",
    _ERR.codes[_ERR.XML_ERROR_INCORRECT_ENCODING]: "unsupported-encoding",
}


@dataclass
class StreamOpened:
    """The stream header arrived.

    ``attrs`` holds the unqualified attributes (to, from, id, version...) and ``xml:lang``
    under that key; ``namespace`` is the content namespace; ``prefixes`` are the other
    namespace declarations on the header (s2s needs to see ``xmlns:db`` for dialback).
    """

    attrs: dict[str, str]
    namespace: str
    prefixes: dict[str, str] = field(default_factory=dict)


@dataclass
class Stanza:
    """A complete child of the stream root and the number of input bytes it took."""

    element: domish.Element
    size: int


@dataclass
class StreamClosed:
    """The peer sent ``</stream:stream>``."""


StreamEvent = Union[StreamOpened, Stanza, StreamClosed]


def element_to_bytes(element: domish.Element) -> bytes:
    """Serialise an element as UTF-8 XML (domish declares the namespaces it needs)."""
    return element.toXml().encode("utf-8")


def _split_name(name: str) -> tuple[str, str]:
    """Turn expat's ``uri SEP local [SEP prefix]`` into domish's ``(uri, local)``."""
    if _SEP not in name:
        return "", name
    uri, local = name.split(_SEP)[:2]
    return uri, local


def _attributes(attrs: dict[str, str]) -> dict[str | tuple[str, str], str]:
    """Key unqualified attributes by name and qualified ones by ``(uri, local)``, as domish does."""
    out: dict[str | tuple[str, str], str] = {}
    for key, value in attrs.items():
        out[_split_name(key) if _SEP in key else key] = value
    return out


class _RootClosed(Exception):
    """Raised from the end handler to stop expat at ``</stream:stream>``."""


class StreamParser:
    """Parse one direction of an XMPP stream; ``reset()`` after STARTTLS or SASL success.

    ``feed()`` returns the events completed by the data and raises ``StreamError`` on bad
    input. A stream error is final: every later ``feed()`` raises it again, even after
    ``reset()``, because RFC 6120 closes the stream on any stream error.
    """

    def __init__(
        self,
        max_stanza: int = DEFAULT_MAX_STANZA,
        default_namespace: str = "jabber:client",
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        reparse_window: int = DEFAULT_REPARSE_WINDOW,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        if default_namespace not in CONTENT_NAMESPACES:
            raise ValueError(f"unsupported content namespace {default_namespace!r}")
        if min(max_stanza, max_depth, reparse_window, max_names) < 1:
            raise ValueError("the limits must be positive")
        self.max_stanza = max_stanza
        self.max_depth = max_depth
        self.reparse_window = reparse_window
        self.max_names = max_names
        self.namespace = default_namespace
        self._error: StreamError | None = None
        self.reset()

    def reset(self) -> None:
        """Discard the current document and expect a new stream header (RFC 6120 §4.3.3)."""
        parser = expat.ParserCreate("UTF-8", _SEP, intern=None)  # no ever-growing intern dict
        parser.namespace_prefixes = True
        parser.buffer_text = False  # CurrentByteIndex must belong to the text being reported
        if hasattr(parser, "SetReparseDeferralEnabled"):
            # Expat >= 2.6 may hold back complete tokens until more data arrives; an
            # interactive protocol needs every stanza as soon as its last byte is in.
            parser.SetReparseDeferralEnabled(False)
        parser.XmlDeclHandler = self._on_xml_decl
        parser.StartDoctypeDeclHandler = self._on_restricted("a DOCTYPE")
        parser.EntityDeclHandler = self._on_restricted("an entity declaration")
        parser.CommentHandler = self._on_restricted("a comment")
        parser.ProcessingInstructionHandler = self._on_restricted("a processing instruction")
        parser.StartNamespaceDeclHandler = self._on_namespace
        parser.StartElementHandler = self._on_start
        parser.EndElementHandler = self._on_end
        parser.CharacterDataHandler = self._on_text
        self._parser = parser
        self._events: list[StreamEvent] = []
        self._buf = bytearray()  # input from absolute offset _buf_start up to _received
        self._buf_start = 0
        self._received = 0
        self._parsed = 0  # input up to here has been handed to expat
        self._last = 0  # offset of expat's latest event; no later event starts before it
        self._mark = 0  # between stanzas: no stanza can start before this offset
        self._opened = False
        self._closed = False
        self._default: list[str] = []  # default namespace in scope, root included
        self._pending_default: str | None = None
        self._pending_prefixes: dict[str, str] = {}
        self._stack: list[domish.Element] = []  # open elements of the current stanza
        self._texts: list[list[str]] = []  # text not yet added, per open element
        self._stanza_start = 0
        self._stanza_empty = False
        self._names: set[str] = set()  # distinct names expat holds on to for this document
        self._scanned = 0  # our own scanner has read the input up to here
        self._token: str | None = None  # the scanner's state inside an unfinished token
        self._token_start = 0
        self._token_body = 0  # where the closer of a comment, CDATA section or PI may start
        self._token_end = b""

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse more input and return the stream events it completed, in order."""
        if self._error is not None:
            raise StreamError(self._error.condition, self._error.text)
        try:
            self._buf += data
            self._received += len(data)
            self._parse_within_limits(data)
            if self._closed:
                self._check_epilogue()
            keep = self._last if self._token is None else min(self._last, self._token_start)
            if keep > self._buf_start:  # no later event, nor _mark, is before it
                del self._buf[: keep - self._buf_start]
                self._buf_start = keep
        except StreamError as e:
            self._fail(e)
            raise
        except expat.ExpatError as e:
            condition = _EXPAT_CONDITIONS.get(e.code, "not-well-formed")
            error = StreamError(condition, expat.ErrorString(e.code))
            self._fail(error)
            raise error from None
        events, self._events = self._events, []
        return events

    def _fail(self, error: StreamError) -> None:
        """Remember the error for later feeds and let go of everything the stream held."""
        error.events, self._events = self._events, []
        self._error = error
        self._buf = bytearray()
        self._stack = []
        self._texts = []

    def _parse_within_limits(self, data: bytes) -> None:
        """Hand expat the input, but no byte past ``max_stanza`` of the open unit.

        The unit is the prolog and header, then each stanza, or the partial tag that will
        become one. Neither expat nor our scanner looks past the limit, so what expat is
        given depends only on the input so far, never on how it was split, and the same
        prefix decides between policy-violation and any other error.
        """
        while not self._closed:
            limit = self._unit_start() + self.max_stanza
            end = min(self._received, limit)
            self._scan(end)
            if self._token is not None:
                end = min(end, self._token_start + self.reparse_window)
            if end <= self._parsed:
                if self._received > limit:
                    what = "stanza" if self._opened else "stream header"
                    raise StreamError("policy-violation", f"{what} exceeds {self.max_stanza} bytes")
                return
            if self._parsed == self._received - len(data) and end == self._received:
                chunk = data  # the usual case: no copy
            else:
                chunk = bytes(self._buf[self._parsed - self._buf_start : end - self._buf_start])
            self._parsed = end
            try:
                self._parser.Parse(chunk, False)
            except _RootClosed:
                pass

    def _scan(self, upto: int) -> None:
        """Follow markup boundaries over the input up to ``upto``, reading each byte once."""
        buf, base = self._buf, self._buf_start
        pos, size = self._scanned - base, upto - base
        while pos < size:
            token = self._token
            if token is None:
                match = _COMPLETE.match(buf, pos, size)
                assert match is not None
                pos = match.end()
                if pos < size:  # an unfinished token starts here
                    self._token, self._token_start = _IN_OPEN, base + pos
            elif token == _IN_OPEN:
                head = bytes(buf[pos : min(pos + 9, size)])
                for opener, closer in _BRACKETED:
                    if head.startswith(opener):
                        self._token, self._token_end = "bracketed", closer
                        pos += len(opener)
                        self._token_body = base + pos
                        break
                    if opener.startswith(head):
                        self._scanned = base + pos
                        return  # too few bytes to tell what this is yet
                else:
                    self._token = _IN_TAG  # a tag, or a <!DOCTYPE ...> that ends at '>'
                    pos += 1
            elif token == _IN_TAG:
                match = _TAG_RUN.match(buf, pos, size)
                assert match is not None
                pos = match.end()
                if pos < size:
                    quote = buf[pos : pos + 1].decode("ascii")
                    self._token = None if quote == ">" else quote
                    pos += 1
            elif token in (_SQUOTE, _DQUOTE):
                found = buf.find(token.encode("ascii"), pos, size)
                pos = size if found < 0 else found + 1
                self._token = token if found < 0 else _IN_TAG
            else:
                closer = self._token_end
                found = buf.find(closer, max(pos - len(closer) + 1, self._token_body - base), size)
                pos = size if found < 0 else found + len(closer)
                self._token = self._token if found < 0 else None
        self._scanned = base + pos

    def _check_epilogue(self) -> None:
        """After ``</stream:stream>`` only whitespace may follow; expat is not consulted,
        as what it reports past the document's end depends on how the input was split."""
        skipped = _SPACE.match(self._buf, self._mark - self._buf_start)
        assert skipped is not None
        if self._buf_start + skipped.end() != self._received:
            raise StreamError("not-well-formed", "data after the end of the stream")
        self._parsed = self._last = self._mark = self._received

    def _unit_start(self) -> int:
        """Where the input now bounded by ``max_stanza`` starts; it never moves backwards."""
        if self._stack:
            return self._stanza_start
        if not self._opened:
            return 0
        # Between stanzas: whitespace keepalives are free, a partial tag is counted.
        skipped = _SPACE.match(self._buf, self._mark - self._buf_start)
        assert skipped is not None
        self._mark = self._buf_start + skipped.end()
        return self._mark

    def _tag_end(self, offset: int) -> int:
        """Offset just past the tag expat reported at ``offset`` (complete by then)."""
        match = _TAG.match(self._buf, offset - self._buf_start)
        if match is None:  # pragma: no cover - expat only reports complete tags
            raise StreamError("internal-server-error", "lost track of the input")
        return self._buf_start + match.end()

    def _event_offset(self) -> int:
        """Record and return the offset of the event being handled."""
        self._last = offset = self._parser.CurrentByteIndex
        return offset

    def _on_restricted(self, what: str) -> Callable[..., None]:
        """Build a handler that rejects an XML construct RFC 6120 §11.1 forbids."""

        def handler(*args: object) -> None:
            raise StreamError("restricted-xml", f"{what} is not allowed in XMPP")

        return handler

    def _on_xml_decl(self, version: str, encoding: str | None, standalone: int) -> None:
        """Accept the XML declaration, but only for UTF-8 (RFC 6120 §11.6)."""
        if encoding is not None and encoding.lower() != "utf-8":
            raise StreamError("unsupported-encoding", "XMPP streams are UTF-8")

    def _on_namespace(self, prefix: str | None, uri: str | None) -> None:
        """Collect the declarations that expat reports just before their element starts."""
        if prefix is None:
            self._pending_default = uri or ""
        else:
            self._pending_prefixes[prefix] = uri or ""

    def _on_start(self, name: str, attrs: dict[str, str]) -> None:
        offset = self._event_offset()
        self._names.add(name)
        self._names.update(attrs)
        if len(self._names) > self.max_names:
            raise StreamError("policy-violation", f"over {self.max_names} distinct names")
        uri, local = _split_name(name)
        default = self._pending_default
        if default is None:
            default = self._default[-1] if self._default else ""
        prefixes, self._pending_prefixes, self._pending_default = self._pending_prefixes, {}, None
        if not self._opened:
            self._open_stream(offset, uri, local, attrs, default, prefixes)
            return
        depth = len(self._stack)
        if depth >= self.max_depth:
            raise StreamError("policy-violation", f"elements nested over {self.max_depth} deep")
        if depth == 0:
            self._stanza_start = self._mark = offset
            closer = self._tag_end(offset) - self._buf_start
            self._stanza_empty = self._buf[closer - 2 : closer] == b"/>"
        else:
            self._flush_text()
        element = domish.Element((uri, local), default, _attributes(attrs), prefixes)
        if self._stack:
            self._stack[-1].addChild(element)
        self._stack.append(element)
        self._texts.append([])
        self._default.append(default)

    def _open_stream(
        self,
        offset: int,
        uri: str,
        local: str,
        attrs: dict[str, str],
        default: str,
        prefixes: dict[str, str],
    ) -> None:
        """Check the stream header (RFC 6120 §4.7, §4.8) and report it."""
        if uri != NS_STREAMS or local != "stream":
            raise StreamError("invalid-namespace", f"the root must be <stream> in {NS_STREAMS}")
        if default != self.namespace:
            raise StreamError("invalid-namespace", f"the content namespace is {self.namespace}")
        header: dict[str, str] = {}
        for key, value in attrs.items():
            if _SEP not in key:
                header[key] = value
            elif _split_name(key) == (NS_XML, "lang"):
                header["xml:lang"] = value
        version = header.get("version")
        if version is not None:
            match = _VERSION.fullmatch(version)
            if match is None or int(match[1]) != 1:
                raise StreamError("unsupported-version", "this server speaks XMPP 1.x")
        self._opened = True
        self._mark = self._tag_end(offset)
        self._default.append(default)
        self._events.append(StreamOpened(header, default, prefixes))

    def _on_end(self, name: str) -> None:
        offset = self._event_offset()
        if not self._stack:
            self._mark = self._tag_end(offset)
            self._closed = True
            self._events.append(StreamClosed())
            raise _RootClosed
        self._flush_text()
        element = self._stack.pop()
        self._texts.pop()
        self._default.pop()
        if self._stack:
            return
        self._mark = end = self._tag_end(self._stanza_start if self._stanza_empty else offset)
        self._events.append(Stanza(element, end - self._stanza_start))

    def _on_text(self, text: str) -> None:
        offset = self._event_offset()
        if not self._stack:
            if text.strip(" \t\r\n"):
                raise StreamError("not-well-formed", "text outside stanzas")
            self._mark = max(self._mark, offset)
            return
        self._texts[-1].append(text)

    def _flush_text(self) -> None:
        """Join buffered text once, so many small pieces cost linear, not quadratic, time."""
        pieces = self._texts[-1]
        if pieces:
            self._stack[-1].addContent("".join(pieces))
            pieces.clear()

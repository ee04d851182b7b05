# -*- test-case-name: tests.unit.test_dialback -*-
"""Server Dialback (XEP-0220) with keys per XEP-0185: the key, and the two elements on the wire.

Dialback proves weakly that a server speaks for a domain: the originating server sends a key
the receiving server cannot check itself, and the receiving server asks the domain's
authoritative server (found through DNS) whether the key is its own. The key is an HMAC over
both domains and the stream id, so a key seen on one stream is worthless on any other.

Pure functions and one small value type: no sockets, no reactor. ``parse`` checks everything a
peer can get wrong (addressing, key syntax, sizes) and raises ``DialbackError``, whose
``condition`` is the stream error the session answers with.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from twisted.words.xish import domish

from unirtc.xmpp.jid import InvalidJID, normalize_domain

NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
KINDS = frozenset({"result", "verify"})
TYPES = frozenset({"valid", "invalid", "error"})
# XEP-0185 keys are 64 hex digits; other servers' keys (older SHA-1 schemes, opaque tokens)
# are accepted if they are short and printable, since only their owner ever interprets them.
MAX_KEY = 1024
MAX_ID = 1024
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "+/=-_.:")
# XEP-0220 §2.4 and §2.6: the conditions a type='error' reply may carry.
ERROR_TYPES = {
    "item-not-found": "cancel",
    "remote-connection-failed": "cancel",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "not-allowed": "cancel",
    "policy-violation": "cancel",
    "internal-server-error": "cancel",
    "undefined-condition": "cancel",
}


class DialbackError(ValueError):
    """A dialback element a peer should not have sent; ``condition`` is the stream error."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


def dialback_key(secret: bytes | str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §3: hex(HMAC-SHA256(key=hex(SHA256(secret)), "receiving originating id")).

    ``receiving`` is the server the key is sent to, ``originating`` the one that claims to be
    speaking; swapping them gives another key, so a key cannot be reflected back at its sender.
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    hashed = hashlib.sha256(raw).hexdigest().encode("ascii")
    message = f"{receiving} {originating} {stream_id}".encode("utf-8")
    return hmac.new(hashed, message, hashlib.sha256).hexdigest()


def keys_match(expected: str, offered: str) -> bool:
    """Exact, constant-time comparison (Prosody CVE-2021-32921 was a timing leak here)."""
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


@dataclass(frozen=True)
class Dialback:
    """A ``<db:result/>`` or ``<db:verify/>``: a request when ``type`` is None, else an answer.

    ``sender`` and ``target`` are the prepared ``from`` and ``to`` domains. ``stream_id`` is
    required on verify elements (it names the stream whose key is being checked).
    """

    kind: str
    sender: str
    target: str
    key: str = ""
    stream_id: str | None = None
    type: str | None = None
    error: str | None = None

    @property
    def is_request(self) -> bool:
        return self.type is None

    def answer(self, verdict: str, error: str | None = None) -> Dialback:
        """The reply to this request: addresses swapped, the key echoed on verify answers only."""
        if verdict not in TYPES or (verdict == "error") != (error is not None):
            raise ValueError(f"bad dialback verdict {verdict!r} / {error!r}")
        key = self.key if self.kind == "verify" else ""
        return Dialback(self.kind, self.target, self.sender, key, self.stream_id, verdict, error)


def parse(element: domish.Element) -> Dialback:
    """Validate a dialback element from a peer; raise DialbackError with the stream error."""
    if element.uri != NS_DIALBACK or element.name not in KINDS:
        raise DialbackError("unsupported-stanza-type", f"<{element.name}/> in {element.uri}")
    sender = _domain(element, "from")
    target = _domain(element, "to")
    kind_type = element.getAttribute("type")
    if kind_type is not None and kind_type not in TYPES:
        raise DialbackError("bad-format", f"unknown dialback type {kind_type!r}")
    stream_id = element.getAttribute("id")
    if stream_id is not None and (not stream_id or len(stream_id) > MAX_ID):
        raise DialbackError("bad-format", "the stream id is empty or too long")
    if element.name == "verify" and stream_id is None:
        raise DialbackError("bad-format", "<db:verify/> must name the stream it verifies")
    key = "".join(str(child) for child in element.children if isinstance(child, str)).strip()
    if kind_type is None:
        if not key:
            raise DialbackError("bad-format", "a dialback request needs a key")
        if len(key) > MAX_KEY or not _KEY_CHARS.issuperset(key):
            raise DialbackError("policy-violation", "the dialback key is too long or not printable")
    error = None
    if kind_type == "error":
        error = next((c.name for e in element.elements() if e.name == "error"
                      for c in e.elements() if c.uri == NS_STANZAS), "undefined-condition")
    return Dialback(element.name, sender, target, key if len(key) <= MAX_KEY else "", stream_id,
                    kind_type, error)


def to_bytes(dialback: Dialback, prefixed: bool = True) -> bytes:
    """Serialise with the ``db:`` prefix our stream header declares (XEP-0220 examples), or
    with a default namespace when the header did not declare it (dialback turned off)."""
    name = f"db:{dialback.kind}" if prefixed else dialback.kind
    attrs = [f"from={quoteattr(dialback.sender)}", f"to={quoteattr(dialback.target)}"]
    if not prefixed:
        attrs.insert(0, f"xmlns='{NS_DIALBACK}'")
    if dialback.stream_id is not None:
        attrs.append(f"id={quoteattr(dialback.stream_id)}")
    if dialback.type is not None:
        attrs.append(f"type={quoteattr(dialback.type)}")
    body = escape(dialback.key)
    if dialback.error is not None:
        kind = ERROR_TYPES.get(dialback.error, "cancel")
        body += f"<error type='{kind}'><{dialback.error} xmlns='{NS_STANZAS}'/></error>"
    if not body:
        return f"<{name} {' '.join(attrs)}/>".encode("utf-8")
    return f"<{name} {' '.join(attrs)}>{body}</{name}>".encode("utf-8")


def feature() -> domish.Element:
    """The XEP-0220 §2.1 stream feature; ``<errors/>`` says we send type='error' replies."""
    element = domish.Element((NS_DIALBACK_FEATURE, "dialback"))
    element.addElement("errors")
    return element


def _domain(element: domish.Element, attribute: str) -> str:
    value = element.getAttribute(attribute)
    if not value:
        raise DialbackError("improper-addressing", f"a dialback element needs '{attribute}'")
    try:
        return normalize_domain(value)
    except InvalidJID as e:
        condition = "invalid-from" if attribute == "from" else "improper-addressing"
        raise DialbackError(condition, f"bad '{attribute}' domain: {e}") from None

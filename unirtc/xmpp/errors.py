"""XMPP stream errors (RFC 6120 §4.9): the exception the stream parser raises and its wire form.

A stream error is unrecoverable: the server sends ``<stream:error>``, closes its stream and
drops the connection. Keeping the exception and its rendering together lets the parser stay
free of I/O while ``stream.py`` turns any ``StreamError`` into bytes with one call.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XMPP_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"

#: The defined conditions of RFC 6120 §4.9.3.
CONDITIONS = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)


class StreamError(Exception):
    """A fatal stream-level error with an RFC 6120 §4.9.3 condition and a human-readable text.

    ``events`` holds what the parser had already produced from the same ``feed()`` call before
    the error, so a caller may still act on stanzas that arrived intact before the bad input.
    """

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"not an RFC 6120 stream error condition: {condition!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.events: list[Any] = []


def _xml_safe(text: str) -> str:
    """Replace characters XML 1.0 cannot carry, since error texts may quote hostile input."""
    return "".join(
        c
        if c in "\t\n\r"
        or "\x20" <= c <= "\ud7ff"
        or "\ue000" <= c <= "\ufffd"
        or c >= "\U00010000"
        else "\ufffd"
        for c in text
    )


def stream_error_xml(condition: str, text: str | None = None) -> bytes:
    """Render ``<stream:error>`` for sending inside our own stream (``stream`` prefix bound)."""
    if condition not in CONDITIONS:
        raise ValueError(f"not an RFC 6120 stream error condition: {condition!r}")
    parts = [f"<stream:error><{condition} xmlns='{NS_XMPP_STREAMS}'/>"]
    if text:
        body = escape(_xml_safe(text), {"'": "&apos;", '"': "&quot;"})
        parts.append(f"<text xmlns='{NS_XMPP_STREAMS}' xml:lang='en'>{body}</text>")
    parts.append("</stream:error>")
    return "".join(parts).encode("utf-8")

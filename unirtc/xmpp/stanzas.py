# -*- test-case-name: tests.unit.test_xmpp_stanzas -*-
"""Stanza helpers (RFC 6120 §8): addressing accessors, IQ results and stanza error replies.

Every stanza the server handles is a ``domish.Element`` in the ``jabber:client`` namespace,
whatever stream it came from; streams serialise with that namespace as the default, so the
same element can be written to a client, a component or (later) a server stream unchanged.
Plugins raise ``StanzaError`` from their handlers and the router turns it into the reply.
"""

from __future__ import annotations

from twisted.words.xish import domish

from unirtc.xmpp.jid import JID, InvalidJID

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STANZA_NAMESPACES = frozenset({"jabber:client", "jabber:server", "jabber:component:accept"})
STANZA_KINDS = ("message", "presence", "iq")
NS_STREAMS = "http://etherx.jabber.org/streams"
_PREFIXES = {NS_STREAMS: "stream"}
_IN_SCOPE = [("stream",)]  # the stream header declares it

#: RFC 6120 §8.3.3: each defined condition with the error type it is usually sent with.
CONDITIONS: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}
ERROR_TYPES = frozenset({"auth", "cancel", "continue", "modify", "wait"})


class StanzaError(Exception):
    """A stanza-level error (RFC 6120 §8.3): raise it from a handler to bounce the stanza."""

    def __init__(self, condition: str, type: str | None = None, text: str | None = None) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"not an RFC 6120 stanza error condition: {condition!r}")
        if type is not None and type not in ERROR_TYPES:
            raise ValueError(f"not an RFC 6120 stanza error type: {type!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.type = type or CONDITIONS[condition]
        self.text = text

    def to_element(self) -> domish.Element:
        """The ``<error/>`` child for a reply."""
        error = domish.Element((NS_CLIENT, "error"))
        error["type"] = self.type
        error.addElement((NS_STANZAS, self.condition))
        if self.text:
            text = error.addElement((NS_STANZAS, "text"), content=self.text)
            text[("http://www.w3.org/XML/1998/namespace", "lang")] = "en"
        return error


def rebase(element: domish.Element, namespace: str = NS_CLIENT) -> domish.Element:
    """Move a stanza and the children that inherited its content namespace into ``namespace``.

    Component streams parse stanzas as ``jabber:component:accept``; the router and plugins only
    ever see ``jabber:client``. Children in their own namespace (``<body/>`` inherits, a
    ``<query xmlns='jabber:iq:roster'/>`` does not) keep it, and so do their descendants.
    """
    stack = [element]
    while stack:
        node = stack.pop()
        if node.uri in STANZA_NAMESPACES:
            node.uri = namespace
        if node.defaultUri in STANZA_NAMESPACES:
            node.defaultUri = namespace
        stack.extend(child for child in node.elements() if child.uri in STANZA_NAMESPACES)
    return element


def to_bytes(element: domish.Element) -> bytes:
    """Serialise a stanza for any stream: ``jabber:client`` is left implicit, so the stanza
    takes the namespace of the stream it is written to; stream-level elements use the
    ``stream:`` prefix our header declares (``<stream:features/>``, ``<stream:error/>``)."""
    return element.toXml(_PREFIXES, 1, NS_CLIENT, _IN_SCOPE).encode("utf-8")


def address(element: domish.Element, attribute: str) -> JID | None:
    """The prepared JID in ``to`` or ``from``; None if absent. Raises InvalidJID if malformed."""
    value = element.getAttribute(attribute)
    if value is None:
        return None
    return JID.parse(value)


def is_stanza(element: domish.Element) -> bool:
    return element.uri == NS_CLIENT and element.name in STANZA_KINDS


def stanza_type(element: domish.Element) -> str:
    """The ``type`` attribute with RFC 6121 defaults: message 'normal', presence 'available'."""
    kind = element.getAttribute("type")
    if kind is not None:
        return kind
    return {"message": "normal", "presence": "available"}.get(element.name, "")


def first_child(element: domish.Element) -> domish.Element | None:
    """The payload of an IQ: its first child element."""
    for child in element.elements():
        return child
    return None


def iq_result(request: domish.Element, payload: domish.Element | None = None) -> domish.Element:
    """A ``type='result'`` reply addressed back to the requester."""
    reply = domish.Element((NS_CLIENT, "iq"))
    reply["type"] = "result"
    _swap_addresses(request, reply)
    if payload is not None:
        reply.addChild(payload)
    return reply


def error_reply(request: domish.Element, error: StanzaError) -> domish.Element:
    """Bounce ``request`` with ``error`` (RFC 6120 §8.3.1): same kind and id, addresses swapped.

    The original payload is not echoed back: for a large message it would double the traffic an
    unknown recipient costs, and RFC 6120 makes including it optional.
    """
    reply = domish.Element((NS_CLIENT, request.name))
    reply["type"] = "error"
    _swap_addresses(request, reply)
    reply.addChild(error.to_element())
    return reply


def can_bounce(element: domish.Element) -> bool:
    """RFC 6120 §8.3.1: never answer an error with an error, nor an IQ result at all."""
    kind = element.getAttribute("type")
    return kind != "error" and not (element.name == "iq" and kind == "result")


def _swap_addresses(request: domish.Element, reply: domish.Element) -> None:
    stanza_id = request.getAttribute("id")
    if stanza_id is not None:
        reply["id"] = stanza_id
    sender = request.getAttribute("from")
    if sender is not None:
        reply["to"] = sender
    recipient = request.getAttribute("to")
    if recipient is not None:
        reply["from"] = recipient


def checked_address(element: domish.Element, attribute: str) -> JID | None:
    """Like ``address`` but a malformed JID is the stanza error ``jid-malformed``."""
    try:
        return address(element, attribute)
    except InvalidJID as e:
        raise StanzaError("jid-malformed", text=str(e)) from None

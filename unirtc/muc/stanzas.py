# -*- test-case-name: tests.unit.test_muc_room -*-
"""Builders for what a room sends: occupant presence with its muc#user payload, reflected
messages, delayed history, errors that MUC clients recognise, XEP-0082 time stamps.

A room fans one stanza out to many recipients. Copies share the sender's child elements
(Twisted's serialiser never looks at ``parent``), so a broadcast costs one small element per
recipient, not a deep copy of the payload; nothing here mutates a child once built.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from twisted.words.xish import domish

from unirtc.muc.model import NS_DELAY, NS_MUC, NS_SID, NS_USER, Affiliation, Role
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, error_reply

#: Payloads a client may not forge into what the room reflects (XEP-0045 §7.4, XEP-0359 §3.1).
_STRIPPED = frozenset({NS_MUC, NS_USER})


def clone(element: domish.Element, to: str | None = None, frm: str | None = None) -> domish.Element:
    """A new top-level stanza sharing ``element``'s children, readdressed."""
    copy = domish.Element((element.uri, element.name), defaultUri=element.defaultUri)
    copy.attributes = dict(element.attributes)
    copy.children = list(element.children)
    if to is not None:
        copy["to"] = to
    if frm is not None:
        copy["from"] = frm
    return copy


def reflectable(element: domish.Element, room: str) -> list[domish.Element]:
    """The children of a client's stanza worth passing on: no MUC payloads, no stanza-id or
    delay claiming to come from this room (only the room may say that)."""
    kept = []
    for child in element.elements():
        if child.uri in _STRIPPED:
            continue
        if child.uri in (NS_SID, NS_DELAY) and child.getAttribute("by", child.getAttribute("from")) == room:
            continue
        kept.append(child)
    return kept


def stanza(name: str, frm: str, to: str | None, children: Iterable[domish.Element] = (),
           type: str | None = None, id: str | None = None) -> domish.Element:
    element = domish.Element((NS_CLIENT, name))
    element["from"] = frm
    if to is not None:
        element["to"] = to
    if type is not None:
        element["type"] = type
    if id is not None:
        element["id"] = id
    for child in children:
        element.children.append(child)
    return element


def item(affiliation: Affiliation, role: Role, jid: str | None = None, nick: str | None = None,
         actor: str | None = None, reason: str | None = None) -> domish.Element:
    """``<item/>`` of muc#user (XEP-0045 §7.2.3): who an occupant is and what it may do."""
    element = domish.Element((NS_USER, "item"))
    element["affiliation"] = affiliation.wire
    element["role"] = role.wire
    if jid is not None:
        element["jid"] = jid
    if nick is not None:
        element["nick"] = nick
    if actor is not None:
        element.addElement("actor")["nick"] = actor
    if reason:
        element.addElement("reason", content=reason)
    return element


def user_x(children: Iterable[domish.Element] = (), codes: Iterable[int] = ()) -> domish.Element:
    """``<x xmlns='muc#user'/>`` with items and status codes (sorted, so output is stable)."""
    x = domish.Element((NS_USER, "x"))
    for child in children:
        x.addChild(child)
    for code in sorted(set(codes)):
        x.addElement("status")["code"] = str(code)
    return x


def muc_error(request: domish.Element, error: StanzaError) -> domish.Element:
    """The error reply; a presence error carries ``<x xmlns='muc'/>`` as XEP-0045 §7.2 shows,
    which is how clients (slixmpp among them) tell a failed join from other presence errors."""
    reply = error_reply(request, error)
    if request.name == "presence":
        reply.children.insert(0, domish.Element((NS_MUC, "x")))
    return reply


def status_message(frm: str, to: str, codes: Iterable[int]) -> domish.Element:
    """A groupchat message from the room carrying only status codes (config changes, §10.2.1)."""
    return stanza("message", frm, to, [user_x(codes=codes)], type="groupchat")


def delay(stamp: str, frm: str) -> domish.Element:
    element = domish.Element((NS_DELAY, "delay"))
    element["from"] = frm
    element["stamp"] = stamp
    return element


def format_stamp(now: float) -> str:
    """XEP-0082 DateTime in UTC."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond:06d}Z" if moment.microsecond else f"{text}Z"


def parse_stamp(text: str) -> float:
    """A XEP-0082 DateTime as seconds since the epoch; ValueError if it is not one."""
    if len(text) > 40 or "T" not in text:
        raise ValueError("not a XEP-0082 DateTime")
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError("a XEP-0082 DateTime needs a time zone")
    return moment.timestamp()


def text_of(parent: domish.Element, name: str, uri: str | None = None) -> str | None:
    """The text of the first child ``name`` (in ``uri``, default the parent's), or None."""
    for child in parent.elements(uri if uri is not None else parent.uri, name):
        return str(child)
    return None

"""XEP-0313 message archive management for accounts: one-to-one messages are archived (plugin
storage archive "mam") and clients page through them with XEP-0059 result set management.

- Archived: chat and normal messages with a body (or a XEP-0334 ``<store/>`` hint), sent by
  an account's clients or delivered to it (at once, or into offline storage); never errors,
  groupchat, or messages marked ``<no-store/>``/``<no-permanent-store/>``. Each side of a
  conversation between two local accounts has its own copy.
- Queries (``urn:xmpp:mam:2``) filter by ``with`` (bare JID), ``start`` and ``end``, and page
  with ``<max/>`` (at most ``MAX_PAGE``), ``<after/>`` and ``<before/>`` (empty: the last page).
  Results come as forwarded messages with their delay stamp, then ``<fin/>`` with first/last ids.
- Each account keeps its newest ``MAX_ARCHIVE`` messages. Preferences are not configurable:
  the default is "always".
Unknown form fields, bad dates and bad ids are stanza errors (XEP-0313 §5.1).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.serialize import StoredXmlError, from_text, to_text
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, stanza_type

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_HINTS = "urn:xmpp:hints"
DEFAULT_PAGE = 50
MAX_PAGE = 250
MAX_ARCHIVE = 10000
TRIM_EVERY = 100  # appends per account between trims
PRIORITY = 40  # after blocking (100) and carbons (50), before offline storage (0)


def load(module) -> None:
    archive = module.archive("mam")
    appended: dict[str, int] = {}
    module.add_item("account-feature", NS_MAM)
    module.hook(f"iq-set/bare/{NS_MAM}:query", lambda event: _query(module, archive, event))
    module.hook(f"iq-get/bare/{NS_MAM}:query", _form)
    module.hook(f"iq-get/bare/{NS_MAM}:prefs", _prefs)
    module.hook(f"iq-set/bare/{NS_MAM}:prefs", _prefs)

    def store(owner: JID, peer: JID | None, message: domish.Element) -> None:
        when = datetime.fromtimestamp(module.reactor.seconds(), timezone.utc)
        d = archive.append(owner.full, to_text(message), peer.bare.full if peer else None, when)
        d.addErrback(lambda f: module.log.failure("Archiving a message of {user} failed", f, user=owner.full))
        appended[owner.full] = appended.get(owner.full, 0) + 1
        if appended[owner.full] >= TRIM_EVERY:
            appended[owner.full] = 0
            archive.trim(owner.full, MAX_ARCHIVE).addErrback(lambda f: module.log.failure("Trimming failed", f))

    def outgoing(event) -> None:
        if event.origin is not None and event.origin.kind == "c2s" and archivable(event.stanza):
            store(event.origin.jid.bare, event.to, event.stanza)
        return None

    def incoming(event) -> None:
        if event.to.local is not None and archivable(event.stanza) and _delivered_now(event):
            store(event.to.bare, event.sender, event.stanza)
        return None

    def offline(event) -> None:
        if archivable(event.stanza):
            store(event.to.bare, event.sender, event.stanza)
        return None

    for target in ("host", "bare", "full"):
        module.hook(f"pre-message/{target}", outgoing, priority=PRIORITY)
    for target in ("bare", "full"):
        module.hook(f"message/{target}", incoming, priority=PRIORITY)
    module.hook("message/offline", offline, priority=PRIORITY)


def archivable(message: domish.Element) -> bool:
    if stanza_type(message) not in ("chat", "normal"):
        return False
    names = {(child.uri, child.name) for child in message.elements()}
    if (NS_HINTS, "no-store") in names or (NS_HINTS, "no-permanent-store") in names:
        return False
    return (NS_CLIENT, "body") in names or (NS_HINTS, "store") in names


def _delivered_now(event) -> bool:
    """True if RFC 6121 §8.5 delivery takes it now; otherwise ``message/offline`` archives it."""
    router, to = event.router, event.to
    if to.resource is not None and router.session(to) is not None:
        return True
    return any(s.available and s.priority >= 0 for s in router.sessions_of(to.bare))


def _own(event) -> Any:
    origin = event.origin
    if origin is None or origin.kind != "c2s" or origin.jid.bare != event.to:
        raise StanzaError("forbidden", text="an archive belongs to its account")
    return origin


def _form(event) -> domish.Element:
    """XEP-0313 §6.1: the fields a query may use."""
    _own(event)
    query = domish.Element((NS_MAM, "query"))
    form = query.addElement((NS_DATA, "x"))
    form["type"] = "form"
    for var, kind in (("FORM_TYPE", "hidden"), ("with", "jid-single"), ("start", "text-single"), ("end", "text-single")):
        field = form.addElement("field")
        field["var"], field["type"] = var, kind
        if var == "FORM_TYPE":
            field.addElement("value", content=NS_MAM)
    return event.result(query)


def _prefs(event) -> domish.Element:
    _own(event)
    if event.stanza.getAttribute("type") == "set":
        raise StanzaError("feature-not-implemented", text="this server archives every conversation")
    prefs = domish.Element((NS_MAM, "prefs"))
    prefs["default"] = "always"
    return event.result(prefs)


def _date(text: str) -> datetime:
    """XEP-0082 date-time; a value without a zone is refused (it would be ambiguous)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StanzaError("bad-request", text=f"not a XEP-0082 date-time: {text[:64]!r}") from None
    if value.tzinfo is None:
        raise StanzaError("bad-request", text="a date-time needs a time zone")
    return value


def _filters(query: domish.Element) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for form in query.elements(NS_DATA, "x"):
        for field in form.elements(NS_DATA, "field"):
            var = field.getAttribute("var")
            value = next((str(v) for v in field.elements(NS_DATA, "value")), "")
            if var == "FORM_TYPE":
                if value != NS_MAM:
                    raise StanzaError("bad-request", text="FORM_TYPE must be urn:xmpp:mam:2")
            elif var == "with":
                try:
                    filters["with_"] = JID.parse(value).bare.full
                except InvalidJID as e:
                    raise StanzaError("jid-malformed", text=str(e)) from None
            elif var in ("start", "end"):
                filters[var] = _date(value)
            else:
                raise StanzaError("bad-request", text=f"unknown field {var!r}")
    return filters


def _page(query: domish.Element) -> tuple[int, int | None, int | None, bool]:
    """XEP-0059: (max, after id, before id, last page?)."""
    size, after, before, last = DEFAULT_PAGE, None, None, False
    for rsm in query.elements(NS_RSM, "set"):
        for child in rsm.elements():
            text = str(child).strip()
            try:
                if child.name == "max":
                    size = int(text)
                    if not 0 <= size <= MAX_PAGE:
                        raise ValueError
                elif child.name == "after":
                    after = int(text)
                elif child.name == "before":
                    if text:
                        before = int(text)
                    last = True
            except ValueError:
                condition = "bad-request" if child.name == "max" else "item-not-found"
                raise StanzaError(condition, text=f"bad <{child.name}/>: {text[:32]!r}") from None
    return size, after, before, last


def _query(module, archive, event) -> Deferred[domish.Element]:
    origin = _own(event)
    query = next(iter(event.stanza.elements(NS_MAM, "query")))
    filters = _filters(query)
    size, after, before, last = _page(query)
    owner = event.to.bare.full
    query_id = query.getAttribute("queryid")

    def answer(items) -> domish.Element:
        complete = len(items) <= size
        items = (items[1:] if last else items[:size]) if not complete else items
        for item in items:
            origin.deliver(_result(event, query_id, item))
        fin = domish.Element((NS_MAM, "fin"))
        if complete:
            fin["complete"] = "true"
        rsm = fin.addElement((NS_RSM, "set"))
        if items:
            rsm.addElement("first", content=str(items[0].id))["index"] = "0"
            rsm.addElement("last", content=str(items[-1].id))
        return event.result(fin)

    d = archive.query(owner, filters.get("with_"), filters.get("start"), filters.get("end"),
                      after, before, size + 1, last)
    return d.addCallback(answer)


def _result(event, query_id: str | None, item) -> domish.Element:
    """XEP-0313 §5.1.2: one archived message, forwarded with its original time."""
    message = domish.Element((NS_CLIENT, "message"))
    message["to"], message["from"] = event.origin.jid.full, event.to.bare.full
    message["id"] = os.urandom(6).hex()
    result = message.addElement((NS_MAM, "result"))
    result["id"] = str(item.id)
    if query_id is not None:
        result["queryid"] = query_id
    forwarded = result.addElement((NS_FORWARD, "forwarded"))
    forwarded.addElement((NS_DELAY, "delay"))["stamp"] = item.when.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        forwarded.addChild(from_text(item.value))
    except StoredXmlError:
        forwarded.addElement((NS_CLIENT, "message"))
    return message

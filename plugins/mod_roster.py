"""RFC 6121 §2 rosters: get, set and remove items, pushes to interested resources, XEP-0237
versioning; rosters are stored with the plugin storage API (store "roster", one document per
account) and kept in memory while used.

The ``RosterManager`` is published as the ``roster-manager`` item: the presence plugin changes
subscription states through it (``load``, ``save``, ``push``), so both plugins share one copy
of each roster. The subscription rules themselves live in ``unirtc.xmpp.roster``.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.storage import DocumentCache, KeyValueStore
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.roster import Roster, RosterError, RosterItem
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError

NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
MAX_ITEMS = 1000


class RosterManager:
    """Every account's roster, loaded once, saved after each change, pushed to its resources."""

    def __init__(self, store: KeyValueStore, log: Any, max_items: int = MAX_ITEMS) -> None:
        self.cache: DocumentCache[Roster] = DocumentCache(store, "roster", Roster.from_json, Roster.to_json)
        self.log = log
        self.max_items = max_items

    def load(self, user: JID) -> Deferred[Roster]:
        return self.cache.load(user.bare.full)

    def save(self, user: JID, roster: Roster) -> Deferred[None]:
        d = self.cache.save(user.bare.full, roster)
        d.addErrback(lambda f: self.log.failure("Saving the roster of {user} failed", f, user=user.full))
        return d

    def push(self, router: Any, user: JID, roster: Roster, contact: str) -> None:
        """RFC 6121 §2.1.6: the changed item, to each resource that asked for the roster."""
        item = roster.get(contact)
        for session in router.sessions_of(user.bare):
            if not session.data.get("roster-requested"):
                continue
            push = domish.Element((NS_CLIENT, "iq"))
            push["type"], push["id"] = "set", f"push-{os.urandom(6).hex()}"
            push["from"], push["to"] = user.bare.full, session.jid.full
            query = push.addElement((NS_ROSTER, "query"))
            query["ver"] = str(roster.version)
            query.addChild(item_element(item) if item is not None else _removed(contact))
            session.deliver(push)


def item_element(item: RosterItem) -> domish.Element:
    element = domish.Element((NS_ROSTER, "item"))
    element["jid"] = item.jid
    element["subscription"] = item.subscription
    if item.name:
        element["name"] = item.name
    if item.ask:
        element["ask"] = "subscribe"
    if item.approved:
        element["approved"] = "true"
    for group in item.groups:
        element.addElement("group", content=group)
    return element


def _removed(contact: str) -> domish.Element:
    element = domish.Element((NS_ROSTER, "item"))
    element["jid"], element["subscription"] = contact, "remove"
    return element


def load(module) -> None:
    manager = RosterManager(module.storage("roster"), module.log)
    module.add_item("roster-manager", manager)
    module.add_item("stream-feature", domish.Element((NS_ROSTERVER, "ver")))
    module.add_item("stream-feature", domish.Element((NS_PREAPPROVAL, "sub")))
    module.hook(f"iq-get/bare/{NS_ROSTER}:query", lambda event: _get(manager, event))
    module.hook(f"iq-set/bare/{NS_ROSTER}:query", lambda event: _set(manager, event))


def _own(event) -> JID:
    """RFC 6121 §2.1.5: only the account's own resources see or change its roster."""
    origin = event.origin
    if origin is None or origin.kind != "c2s" or origin.jid.bare != event.to:
        raise StanzaError("forbidden", text="a roster belongs to its account")
    return origin.jid


def _query(event) -> domish.Element:
    return next(iter(event.stanza.elements(NS_ROSTER, "query")))


def _get(manager: RosterManager, event) -> Deferred[domish.Element]:
    """RFC 6121 §2.2, with XEP-0237: an unchanged ``ver`` gets an empty result."""
    user = _own(event)
    event.origin.data["roster-requested"] = True
    known = _query(event).getAttribute("ver")

    def answer(roster: Roster) -> domish.Element:
        if known is not None and known == str(roster.version):
            return event.result()  # RFC 6121 §2.6.3: pushes follow instead
        query = domish.Element((NS_ROSTER, "query"))
        query["ver"] = str(roster.version)
        for item in roster.items.values():
            query.addChild(item_element(item))
        return event.result(query)

    return manager.load(user).addCallback(answer)


def _set(manager: RosterManager, event) -> Deferred[domish.Element]:
    """RFC 6121 §2.3-§2.5: exactly one item; the subscription attribute may only be 'remove'."""
    user = _own(event)
    items = list(_query(event).elements())
    if len(items) != 1 or items[0].uri != NS_ROSTER or items[0].name != "item":
        raise StanzaError("bad-request", text="a roster set has exactly one item")
    element = items[0]
    try:
        contact = JID.parse(element.getAttribute("jid") or "").bare
    except InvalidJID as e:
        raise StanzaError("jid-malformed", text=str(e)) from None
    if contact == user.bare:
        raise StanzaError("not-allowed", text="your own address is not a contact")
    name = element.getAttribute("name")
    groups = [str(group) for group in element.elements(NS_ROSTER, "group")]
    remove = element.getAttribute("subscription") == "remove"

    def apply(roster: Roster) -> domish.Element:
        if remove:
            old, pending = roster.remove_item(contact.full)
            if old is None and not pending:
                raise StanzaError("item-not-found")
            _cancel(event.router, user, contact, old, pending)
        else:
            try:
                roster.set_item(contact.full, name, groups, manager.max_items)
            except RosterError as e:
                raise StanzaError(e.condition, text=str(e)) from None
        manager.push(event.router, user, roster, contact.full)
        manager.save(user, roster)
        return event.result()

    return manager.load(user).addCallback(apply)


def _cancel(router: Any, user: JID, contact: JID, old: RosterItem | None, pending: bool) -> None:
    """RFC 6121 §2.5.2: removing a contact cancels subscriptions in both directions."""
    kinds = []
    if old is not None and (old.has_to or old.ask):
        kinds.append("unsubscribe")
    if (old is not None and old.has_from) or pending:
        kinds.append("unsubscribed")
    for kind in kinds:
        router.route(_presence(kind, user.bare.full, contact.full))
    if old is not None and old.has_from:  # §3.2.2: the contact stops seeing us at once
        for session in router.sessions_of(user.bare):
            if session.available:
                router.route(_presence("unavailable", session.jid.full, contact.full))


def _presence(kind: str, sender: str, to: str) -> domish.Element:
    presence = domish.Element((NS_CLIENT, "presence"))
    presence["type"], presence["from"], presence["to"] = kind, sender, to
    return presence

"""RFC 6121 §3-§4 presence: subscriptions, probes, broadcasts and directed presence.

- A client's broadcast presence goes to its own resources and to every contact with a
  ``from``/``both`` subscription; its first available presence also probes the contacts it is
  subscribed to, shows it its other resources and redelivers subscription requests that
  arrived while it was offline (they stay pending until answered).
- Subscription stanzas a client sends are stamped with its bare JID, applied to its roster
  (``unirtc.xmpp.roster`` decides what happens) and routed; those that arrive are applied to
  the recipient's roster and delivered, answered or ignored as RFC 6121 §3 says.
- Probes are answered from the roster: the current presence of each available resource to a
  subscriber, ``unavailable`` when none is online, ``unsubscribed`` to anyone else.
- Directed presence is remembered per session, so the unavailable presence at its end (or
  the session's end) reaches those entities too (§4.6.3), MUC rooms included.

The rosters come from the roster plugin's ``roster-manager`` item; without it, presence is
only shared between a user's own resources.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.words.xish import domish

from unirtc.xmpp.jid import JID
from unirtc.xmpp.roster import IGNORE, Outcome, Roster
from unirtc.xmpp.router import SUBSCRIPTION_TYPES
from unirtc.xmpp.serialize import clone, from_text, to_text
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, stanza_type

NS_NICK = "http://jabber.org/protocol/nick"
MAX_PENDING = 1000  # subscription requests kept per account
MAX_REQUEST_TEXT = 1024  # characters of a request's <status/> and <nick/> that are kept


def load(module) -> None:
    module.hook("presence/broadcast", lambda event: _broadcast(module, event))
    for target in ("host", "bare", "full"):
        module.hook(f"pre-presence/{target}", lambda event: _outbound(module, event))
    for target in ("bare", "full"):
        module.hook(f"presence/{target}", lambda event: _inbound(module, event))


def _manager(module) -> Any | None:
    found = module.items("roster-manager")
    return found[0] if found else None


def _presence(kind: str | None, sender: str, to: str) -> domish.Element:
    presence = domish.Element((NS_CLIENT, "presence"))
    if kind is not None:
        presence["type"] = kind
    presence["from"], presence["to"] = sender, to
    return presence


def _addressed(stanza: domish.Element, sender: str, to: str) -> domish.Element:
    copy = clone(stanza)
    copy["from"], copy["to"] = sender, to
    return copy


def _logged(module, d: Deferred[Any], what: str) -> Deferred[Any]:
    d.addErrback(lambda f: module.log.failure("Presence: {what} failed", f, what=what))
    return d


# -- broadcast (RFC 6121 §4.2, §4.4, §4.5) ---------------------------------------------------------


def _broadcast(module, event) -> bool:
    session, presence, router = event.origin, event.stanza, event.router
    unavailable = stanza_type(presence) == "unavailable"
    for other in router.sessions_of(session.jid.bare):
        if other is session:
            if not getattr(session, "ended", False):
                session.deliver(presence)
        elif other.available:
            other.deliver(presence)
            if event.initial and other.presence is not None:  # §4.2.2: show it its siblings
                session.deliver(_addressed(other.presence, other.jid.full, session.jid.full))
    directed: set[str] = session.data.setdefault("directed", set())
    manager = _manager(module)
    if manager is None:
        if unavailable:
            for target in sorted(directed):
                router.route(_addressed(presence, session.jid.full, target))
            directed.clear()
        return True

    def fan_out(roster: Roster) -> None:
        subscribers = roster.subscribers()
        for contact in subscribers:
            router.route(_addressed(presence, session.jid.full, contact))
        if unavailable:
            for target in sorted(directed - set(subscribers)):
                router.route(_addressed(presence, session.jid.full, target))
            directed.clear()
        if event.initial:
            for contact in roster.subscriptions():  # §4.3.1
                router.route(_presence("probe", session.jid.full, contact))
            for request in list(roster.pending_in.values()):  # §3.1.3: requests wait for a client
                session.deliver(from_text(request))

    _logged(module, manager.load(session.jid), "broadcast").addCallback(fan_out)
    return True


# -- what a client sends (RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, §4.6) ---------------------------


def _outbound(module, event) -> Deferred[None] | bool | None:
    stanza, session = event.stanza, event.origin
    kind = stanza_type(stanza)
    if kind in ("available", "unavailable"):
        if event.to.bare == session.jid.bare:
            return None
        directed: set[str] = session.data.setdefault("directed", set())
        if kind == "available" and session.available:
            directed.add(event.to.full)
        else:
            directed.discard(event.to.full)
        return None
    manager = _manager(module)
    if kind not in SUBSCRIPTION_TYPES or manager is None:
        return None
    user, contact = session.jid.bare, event.to.bare
    if contact == user:
        return True  # a subscription to oneself has no meaning; drop it

    def apply(roster: Roster) -> None:
        if kind == "subscribe" and roster.get(contact.full) is None and len(roster.items) >= manager.max_items:
            raise StanzaError("resource-constraint", text="the roster is full")
        outcome: Outcome = getattr(roster, f"outbound_{kind}")(contact.full)
        manager.save(user, roster)
        _act(manager, event.router, user, contact, roster, outcome,
             lambda: event.router.route(_addressed(stanza, user.full, contact.full)))

    return manager.load(user).addCallback(apply)


# -- what arrives for an account (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, §4.3.2) -----------------


def _inbound(module, event) -> Deferred[None] | bool | None:
    stanza = event.stanza
    kind = stanza_type(stanza)
    if kind not in SUBSCRIPTION_TYPES and kind != "probe":
        return None
    manager = _manager(module)
    if manager is None:
        return None if kind != "probe" else True
    if event.to.local is None:
        return None  # a server's or component's own address: not an account
    if event.sender is None or event.sender.bare == event.to.bare:
        return True
    router, user, contact = event.router, event.to.bare, event.sender.bare
    if router.sessions_of(user):
        exists: Deferred[bool] = maybeDeferred(lambda: True)
    else:
        exists = maybeDeferred(router.account_exists, user.local, user.domain)

    def apply(found: bool) -> Deferred[None] | None:
        if not found:
            if kind in ("subscribe", "probe"):  # §3.1.3, §4.3.2: no such user
                router.route(_presence("unsubscribed", user.full, contact.full))
            return None
        return manager.load(user).addCallback(lambda roster: _apply_inbound(manager, event, roster))

    return _logged(module, exists.addCallback(apply), "inbound presence")


def _apply_inbound(manager, event, roster: Roster) -> None:
    stanza, router = event.stanza, event.router
    kind = stanza_type(stanza)
    user, contact = event.to.bare, event.sender.bare
    if kind == "probe":
        _answer_probe(router, user, event.sender, roster)
        return
    if kind == "subscribe":
        if contact.full not in roster.pending_in and len(roster.pending_in) >= MAX_PENDING:
            return
        outcome = roster.inbound_subscribe(contact.full, to_text(_request(stanza, contact, user)))
    else:
        outcome = getattr(roster, f"inbound_{kind}")(contact.full)
    if outcome is IGNORE:
        return
    manager.save(user, roster)

    def deliver() -> None:
        copy = _addressed(stanza, contact.full, user.full)
        for session in router.sessions_of(user):
            if session.available:
                session.deliver(copy)

    _act(manager, router, user, contact, roster, outcome, deliver)


def _act(manager, router, user: JID, contact: JID, roster: Roster, outcome: Outcome, route) -> None:
    """Do what the state machine decided, in RFC 6121's order: push, route or answer, presence."""
    if outcome.push:
        manager.push(router, user, roster, contact.full)
    if outcome.route:
        route()
    if outcome.reply is not None:
        router.route(_presence(outcome.reply, user.full, contact.full))
    if outcome.send_presence is not None:
        _send_presence_of(router, user, contact.full, outcome.send_presence == "unavailable")


def _send_presence_of(router, user: JID, to: str, unavailable: bool) -> None:
    """Each available resource's presence (or its unavailable presence) to ``to``."""
    for session in router.sessions_of(user):
        if not session.available or session.presence is None:
            continue
        if unavailable:
            router.route(_presence("unavailable", session.jid.full, to))
        else:
            router.route(_addressed(session.presence, session.jid.full, to))


def _answer_probe(router, user: JID, prober: JID, roster: Roster) -> None:
    """RFC 6121 §4.3.2."""
    item = roster.get(prober.bare.full)
    if item is None or not item.has_from:
        router.route(_presence("unsubscribed", user.full, prober.bare.full))
        return
    available = [s for s in router.sessions_of(user) if s.available and s.presence is not None]
    if not available:
        router.route(_presence("unavailable", user.full, prober.full))
    for session in available:
        router.route(_addressed(session.presence, session.jid.full, prober.full))


def _request(stanza: domish.Element, contact: JID, user: JID) -> domish.Element:
    """What is kept of a subscription request: its addresses, status and XEP-0172 nickname."""
    request = _presence("subscribe", contact.full, user.full)
    for uri, name in ((NS_CLIENT, "status"), (NS_NICK, "nick")):
        for child in stanza.elements(uri, name):
            request.addElement((uri, name), content=str(child)[:MAX_REQUEST_TEXT])
            break
    return request

"""XEP-0191 blocking command: an account's block list (plugin storage "blocking") and its enforcement.

Nothing passes between an account and an address it blocks, in either direction:
- stanzas from a blocked address are not delivered (messages and get/set IQs bounce with
  ``service-unavailable``, presence is dropped), whether the account is online or not;
- stanzas the account's clients send to a blocked address bounce with ``not-acceptable`` and
  ``<blocked xmlns='urn:xmpp:blocking:errors'/>``, and the server's own presence broadcasts and
  probe answers on the account's behalf are dropped.
Matching follows XEP-0191 §3.2 (XEP-0016's rules): a domain blocks everyone there, a bare JID
every resource. Blocking sends the blocked address unavailable presence from each available
resource; block and unblock are pushed to resources that fetched the list. IQs addressed to the
account's bare JID are answered by the server and are not filtered.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.storage import DocumentCache
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, error_reply, stanza_type

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
MAX_BLOCKED = 1000
PRIORITY = 100  # before carbons, offline storage and delivery
CHECKED = "blocking-checked"


def blocks(blocked: set[str], jid: JID) -> bool:
    """XEP-0016 §2.1 order of matching, for one address."""
    domain = jid.domain
    candidates = {jid.full, jid.bare.full, domain}
    if jid.resource is not None:
        candidates.add(f"{domain}/{jid.resource}")
    return not blocked.isdisjoint(candidates)


def load(module) -> None:
    cache: DocumentCache[set[str]] = DocumentCache(module.storage("blocking"), "list",
                                                   decode=lambda raw: set(raw or ()), encode=sorted)
    module.add_feature(NS_BLOCKING)
    module.hook(f"iq-get/bare/{NS_BLOCKING}:blocklist", lambda event: _list(cache, event))
    module.hook(f"iq-set/bare/{NS_BLOCKING}:block", lambda event: _change(cache, event, "block"))
    module.hook(f"iq-set/bare/{NS_BLOCKING}:unblock", lambda event: _change(cache, event, "unblock"))
    module.hook("resource-bound", lambda event: _preload(module, cache, event))
    for kind in ("message", "presence", "iq"):
        for target in ("bare", "full"):
            module.hook(f"{kind}/{target}", lambda event: _inbound(module, cache, event), priority=PRIORITY)
        for target in ("host", "bare", "full"):
            module.hook(f"pre-{kind}/{target}", lambda event: _outbound(cache, event), priority=PRIORITY)


def _preload(module, cache, event) -> None:
    """Online users' lists are in memory, so their own stanzas are checked without waiting."""
    d = cache.load(event.session.jid.bare.full)
    d.addErrback(lambda f: module.log.failure("Loading a block list failed", f))
    return None


def _own(event) -> JID:
    origin = event.origin
    if origin is None or origin.kind != "c2s" or origin.jid.bare != event.to:
        raise StanzaError("forbidden", text="a block list belongs to its account")
    return origin.jid.bare


def _items(jids: list[str], name: str) -> domish.Element:
    element = domish.Element((NS_BLOCKING, name))
    for jid in jids:
        element.addElement("item")["jid"] = jid
    return element


def _list(cache, event) -> Deferred[domish.Element]:
    user = _own(event)
    event.origin.data["blocklist-requested"] = True
    return cache.load(user.full).addCallback(lambda blocked: event.result(_items(sorted(blocked), "blocklist")))


def _change(cache, event, name: str) -> Deferred[domish.Element]:
    """XEP-0191 §3.3 and §3.4: block needs items; unblock without items empties the list."""
    user = _own(event)
    request = next(iter(event.stanza.elements(NS_BLOCKING, name)))
    try:
        jids = [JID.parse(item.getAttribute("jid") or "").full for item in request.elements(NS_BLOCKING, "item")]
    except InvalidJID as e:
        raise StanzaError("jid-malformed", text=str(e)) from None
    if name == "block" and not jids:
        raise StanzaError("bad-request", text="block at least one address")

    def apply(blocked: set[str]) -> domish.Element:
        if name == "block":
            added = [j for j in dict.fromkeys(jids) if j not in blocked]
            if len(blocked) + len(added) > MAX_BLOCKED:
                raise StanzaError("resource-constraint", text=f"at most {MAX_BLOCKED} blocked addresses")
            _unavailable_to(event.router, user, added)  # before the list stops it
            blocked.update(added)
        else:
            blocked.difference_update(jids if jids else set(blocked))
        cache.save(user.full, blocked)
        _push(event.router, user, _items(jids, name))
        return event.result()

    return cache.load(user.full).addCallback(apply)


def _unavailable_to(router: Any, user: JID, jids: list[str]) -> None:
    for session in router.sessions_of(user):
        if not session.available:
            continue
        for jid in jids:
            presence = domish.Element((NS_CLIENT, "presence"))
            presence["type"], presence["from"], presence["to"] = "unavailable", session.jid.full, jid
            router.route(presence)


def _push(router: Any, user: JID, payload: domish.Element) -> None:
    for session in router.sessions_of(user):
        if session.data.get("blocklist-requested"):
            push = domish.Element((NS_CLIENT, "iq"))
            push["type"], push["id"], push["to"] = "set", f"block-{os.urandom(6).hex()}", session.jid.full
            push.addChild(payload)
            session.deliver(push)


def _outbound(cache, event) -> bool | None:
    """A client writes to an address it blocks: the stanza comes back as an error."""
    blocked = cache.peek(event.origin.jid.bare.full) if event.origin is not None else None
    if not blocked or event.to is None or not blocks(blocked, event.to):
        return None
    if event.stanza.name == "presence" or stanza_type(event.stanza) in ("result", "error"):
        return True
    error = StanzaError("not-acceptable", text="you have blocked this address")
    reply = error_reply(event.stanza, error)
    next(reply.elements(NS_CLIENT, "error")).addElement((NS_BLOCKING_ERRORS, "blocked"))
    event.origin.deliver(reply)
    return True


def _inbound(module, cache, event) -> bool | Deferred[None] | None:
    """A stanza for a local account from an address it blocks, or presence the server sends for
    an account that blocks its recipient (broadcasts, probe answers; clients' own stanzas are
    checked on the way out, and bounces must still reach blocked senders)."""
    sender, to = event.sender, event.to
    if sender is None or to.local is None or event.data.get(CHECKED) or sender.bare == to.bare:
        return None
    if event.stanza.name == "presence" and sender.local is not None:
        by_sender = cache.peek(sender.bare.full)
        if by_sender and blocks(by_sender, to):
            return True
    by_recipient = cache.peek(to.bare.full)
    if by_recipient is not None:
        return _refuse(event) if blocks(by_recipient, sender) else None

    def check(blocked: set[str]) -> None:
        event.data[CHECKED] = True
        if blocks(blocked, sender):
            _refuse(event)
        else:
            event.router.forward(event)

    def failed(failure):
        if failure.check(StanzaError):
            return failure  # the bounce, done by the event dispatcher
        module.log.failure("Checking the block list of {user} failed", failure, user=to.bare.full)
        return None

    return cache.load(to.bare.full).addCallback(check).addErrback(failed)


def _refuse(event) -> bool:
    """XEP-0191 §3.5: messages and get/set IQs bounce as service-unavailable; the rest is dropped."""
    stanza = event.stanza
    if stanza.name == "message" or (stanza.name == "iq" and stanza_type(stanza) in ("get", "set")):
        raise StanzaError("service-unavailable")
    return True

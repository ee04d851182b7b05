"""XEP-0280 message carbons: every resource of an account that enabled carbons sees the
conversations its other resources have, whatever resource the contact writes to.

- A message a resource sends goes, wrapped in ``<sent/>``, to its other carbons-enabled
  resources (from the account's bare JID).
- A message arriving for the account goes, wrapped in ``<received/>``, to the carbons-enabled
  available resources that RFC 6121 §8.5 delivery does not already give it to.
Eligible messages (XEP-0280 §6): type chat, or type normal with a body; never groupchat, MUC
private messages, errors, messages marked ``<private/>`` or ``<no-copy/>``, or carbons
themselves. The ``<private/>`` marker is removed before the message goes on.
"""

from __future__ import annotations

from twisted.words.xish import domish

from unirtc.xmpp.serialize import clone
from unirtc.xmpp.stanzas import NS_CLIENT, StanzaError, stanza_type

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
PRIORITY = 50  # after blocking (which may drop the message), before delivery


def load(module) -> None:
    module.add_feature(NS_CARBONS)
    for target in ("host", "bare"):
        module.hook(f"iq-set/{target}/{NS_CARBONS}:enable", lambda event: _toggle(event, True))
        module.hook(f"iq-set/{target}/{NS_CARBONS}:disable", lambda event: _toggle(event, False))
    for target in ("host", "bare", "full"):
        module.hook(f"pre-message/{target}", _sent, priority=PRIORITY)
    for target in ("bare", "full"):
        module.hook(f"message/{target}", _received, priority=PRIORITY)


def _toggle(event, enabled: bool) -> domish.Element:
    """Carbons are per session: the request comes to the server or to the account's bare JID."""
    origin = event.origin
    if origin is None or origin.kind != "c2s" or (event.to.local is not None and event.to != origin.jid.bare):
        raise StanzaError("forbidden", text="carbons are a setting of your own session")
    origin.data["carbons"] = enabled
    return event.result()


def eligible(message: domish.Element) -> bool:
    kind = stanza_type(message)
    if kind not in ("chat", "normal"):
        return False
    children = [(child.uri, child.name) for child in message.elements()]
    if kind == "normal" and (NS_CLIENT, "body") not in children:
        return False
    excluded = {(NS_CARBONS, "private"), (NS_HINTS, "no-copy"), (NS_CARBONS, "sent"),
                (NS_CARBONS, "received"), (NS_MUC_USER, "x")}
    return excluded.isdisjoint(children)


def _strip_private(message: domish.Element) -> bool:
    """Remove ``<private xmlns='urn:xmpp:carbons:2'/>`` (XEP-0280 §8); True if there was one."""
    before = len(message.children)
    message.children = [c for c in message.children
                        if not (isinstance(c, domish.Element) and c.uri == NS_CARBONS and c.name == "private")]
    return len(message.children) != before


def _wrap(direction: str, message: domish.Element, account: str, to: str) -> domish.Element:
    carbon = domish.Element((NS_CLIENT, "message"))
    carbon["from"], carbon["to"], carbon["type"] = account, to, stanza_type(message)
    forwarded = carbon.addElement((NS_CARBONS, direction)).addElement((NS_FORWARD, "forwarded"))
    forwarded.addChild(clone(message))
    return carbon


def _sent(event) -> None:
    message, origin = event.stanza, event.origin
    if origin is None or origin.kind != "c2s":
        return None
    if _strip_private(message) or not eligible(message):
        return None
    account = origin.jid.bare
    for session in event.router.sessions_of(account):
        if session is not origin and session.available and session.data.get("carbons"):
            session.deliver(_wrap("sent", message, account.full, session.jid.full))
    return None


def _received(event) -> None:
    message, router, to = event.stanza, event.router, event.to
    if to.local is None or not eligible(message):
        return None
    sessions = [s for s in router.sessions_of(to.bare) if s.available]
    if not any(s.data.get("carbons") for s in sessions):
        return None
    target = router.session(to) if to.resource is not None else None
    if target is not None:
        recipients = {id(target)}
    else:  # RFC 6121 §8.5.2.1.1: the highest non-negative priority resources get it
        candidates = [s for s in sessions if s.priority >= 0]
        best = max((s.priority for s in candidates), default=None)
        recipients = {id(s) for s in candidates if s.priority == best}
    if not recipients:
        return None  # nobody online to take it: offline storage, not carbons
    for session in sessions:
        if id(session) not in recipients and session.data.get("carbons"):
            session.deliver(_wrap("received", message, to.bare.full, session.jid.full))
    return None

"""XEP-0160 offline messages: chat and normal messages to an account with no available resource
are stored (plugin storage archive "offline") and delivered at its next initial presence.

Each stored message gets a XEP-0203 ``<delay/>`` stamp. Storage is bounded per account: past
``[xmpp] offline_max_messages`` (default 500),
or for a message over ``MAX_MESSAGE_SIZE``, the oldest stored messages are kept and the sender
gets ``service-unavailable``, as XEP-0160 §3 says for a full store.
Messages are deleted only once delivered, and only to a resource with a non-negative priority.
Chat-state notifications alone are not worth storing and are dropped without an error.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet.defer import Deferred

from unirtc.xmpp.jid import JID
from unirtc.xmpp.serialize import StoredXmlError, clone, from_text, to_text
from unirtc.xmpp.stanzas import StanzaError

NS_DELAY = "urn:xmpp:delay"
NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
MAX_MESSAGE_SIZE = 65536


def _limit(module) -> int:
    return module.settings.xmpp.offline_max_messages


def load(module) -> None:
    archive = module.archive("offline")
    delivering: set[JID] = set()
    module.add_feature("msgoffline")
    module.hook("message/offline", lambda event: _store(module, archive, event))
    # Above the presence plugin's broadcast (priority 0), which answers the event.
    module.hook("presence/broadcast", lambda event: _deliver(module, archive, delivering, event), priority=10)


def stamp(seconds: float) -> str:
    """XEP-0082 date-time in UTC."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _worth_storing(message) -> bool:
    """A body, a store hint, or any payload beyond chat states and hints (invitations, files...)."""
    if any(True for _ in message.elements(NS_HINTS, "no-store")):
        return False
    for child in message.elements():
        if child.name == "body" or child.uri not in (NS_CHATSTATES, NS_HINTS) or child.name == "store":
            return True
    return False


def _store(module, archive, event) -> bool | Deferred[bool]:
    message, owner = event.stanza, event.to.bare
    if not _worth_storing(message):
        return True
    stored = clone(message)
    delay = stored.addElement((NS_DELAY, "delay"), content="Offline Storage")
    delay["from"], delay["stamp"] = owner.domain, stamp(module.reactor.seconds())
    text = to_text(stored)
    if len(text.encode("utf-8")) > MAX_MESSAGE_SIZE:
        raise StanzaError("service-unavailable", text="the message is too large to keep offline")
    sender = event.sender.bare.full if event.sender is not None else None
    when = datetime.fromtimestamp(module.reactor.seconds(), timezone.utc)

    def stored_as(item_id: int | None) -> bool:
        if item_id is None:
            raise StanzaError("service-unavailable", text=f"{owner.full} has too many messages waiting")
        module.log.debug("Stored an offline message for {user}", user=owner.full)
        return True

    return archive.append(owner.full, text, sender, when, _limit(module)).addCallback(stored_as)


def _deliver(module, archive, delivering: set[JID], event) -> None:
    """XEP-0160 §3: on initial presence with a non-negative priority, deliver, then delete."""
    session = event.origin
    user = session.jid.bare
    if not event.initial or session.priority < 0 or user in delivering:
        return None
    delivering.add(user)

    def send(items) -> Deferred[int] | None:
        if getattr(session, "ended", False):
            return None
        delivered = []
        for item in items:
            try:
                message = from_text(item.value)
            except StoredXmlError as e:
                module.log.warn("Dropping a corrupt offline message for {user}: {error}", user=user.full, error=str(e))
            else:
                message["to"] = session.jid.full
                session.deliver(message)
            delivered.append(item.id)
        return archive.delete(user.full, delivered) if delivered else None

    d = archive.query(user.full, limit=_limit(module)).addCallback(send)
    d.addErrback(lambda f: module.log.failure("Delivering offline messages to {user} failed", f, user=user.full))
    d.addBoth(lambda _: delivering.discard(user))
    return None

"""XEP-0352 client state indication: a client in the background (``<inactive/>``) is not woken
up for every contact's status change.

While a session is inactive, availability presence for it (available and unavailable, not
subscription requests or errors) is held back, keeping only the latest one per sender; messages
and IQs still go through at once. When the client says ``<active/>`` again, the held presence
is delivered, oldest change first, so it ends up with the same view it would have had.
"""

from __future__ import annotations

from twisted.words.xish import domish

from unirtc.xmpp.stanzas import stanza_type

NS_CSI = "urn:xmpp:csi:0"
QUEUE = "csi-held"
PRIORITY = 10  # after blocking (100); the default delivery is what is replaced


def load(module) -> None:
    module.add_item("stream-feature", domish.Element((NS_CSI, "csi")))
    module.hook(f"stanza/{NS_CSI}:inactive", lambda event: _set_state(event, False))
    module.hook(f"stanza/{NS_CSI}:active", lambda event: _set_state(event, True))
    module.hook("presence/bare", _to_account, priority=PRIORITY)
    module.hook("presence/full", _to_resource, priority=PRIORITY)


def _set_state(event, active: bool) -> bool:
    session = event.origin
    if active:
        held = session.data.pop(QUEUE, None)
        for presence in (held or {}).values():
            session.deliver(presence)
    else:
        session.data.setdefault(QUEUE, {})
    return True


def _holds(session) -> bool:
    return QUEUE in session.data


def _hold(session, presence: domish.Element) -> None:
    held = session.data[QUEUE]
    sender = presence.getAttribute("from", "")
    held.pop(sender, None)  # the latest change goes last
    held[sender] = presence


def _availability(event) -> bool:
    return event.stanza.name == "presence" and stanza_type(event.stanza) in ("available", "unavailable")


def _to_account(event) -> bool | None:
    """RFC 6121 §8.5.2.1.2 delivery (every available resource), holding it for inactive ones."""
    if not _availability(event):
        return None
    sessions = [s for s in event.router.sessions_of(event.to) if s.available]
    if not any(_holds(s) for s in sessions):
        return None
    for session in sessions:
        if _holds(session):
            _hold(session, event.stanza)
        else:
            session.deliver(event.stanza)
    return True


def _to_resource(event) -> bool | None:
    if not _availability(event):
        return None
    session = event.router.session(event.to)
    if session is None or not _holds(session):
        return None
    _hold(session, event.stanza)
    return True

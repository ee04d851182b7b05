"""XEP-0054 vcard-temp: each account stores one vCard (plugin storage "vcard"); anyone may read
it, only the account's own resources may replace it.

A vCard is bounded (``MAX_VCARD`` bytes as stored; avatars make them large) and is read back
through the restricted parser. A missing vCard reads as an empty ``<vCard/>`` (XEP-0054 §3.1
allows that or item-not-found; the empty one spares clients an error path). The server itself
has an empty vCard.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.xmpp.serialize import StoredXmlError, from_text, to_text
from unirtc.xmpp.stanzas import StanzaError

NS_VCARD = "vcard-temp"
MAX_VCARD = 131072


def load(module) -> None:
    store = module.storage("vcard")
    module.add_feature(NS_VCARD)
    module.hook(f"iq-get/bare/{NS_VCARD}:vCard", lambda event: _get(module, store, event))
    module.hook(f"iq-set/bare/{NS_VCARD}:vCard", lambda event: _set(store, event))
    module.hook(f"iq-get/host/{NS_VCARD}:vCard", lambda event: event.result(domish.Element((NS_VCARD, "vCard"))))


def _get(module, store, event) -> Deferred[domish.Element]:
    def answer(text: str | None) -> domish.Element:
        if text is not None:
            try:
                return event.result(from_text(text, MAX_VCARD))
            except StoredXmlError as e:
                module.log.warn("Ignoring the corrupt stored vCard of {user}: {error}", user=event.to.full, error=str(e))
        return event.result(domish.Element((NS_VCARD, "vCard")))

    return store.get(event.to.bare.full, "vcard").addCallback(answer)


def _set(store, event) -> Deferred[domish.Element]:
    origin = event.origin
    if origin is None or origin.kind != "c2s" or origin.jid.bare != event.to:
        raise StanzaError("forbidden", text="only the account itself may change its vCard")
    vcard = next(iter(event.stanza.elements(NS_VCARD, "vCard")))
    text = to_text(vcard)
    if len(text.encode("utf-8")) > MAX_VCARD:
        raise StanzaError("not-acceptable", text=f"a vCard is limited to {MAX_VCARD} bytes")
    empty = not any(True for _ in vcard.elements()) and not str(vcard).strip()
    d = store.set(event.to.full, "vcard", None if empty else text)
    return d.addCallback(lambda _: event.result())

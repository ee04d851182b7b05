"""XEP-0049 private XML storage: an account keeps small XML fragments for itself, one per
namespace (bookmarks of clients without PEP, client settings); plugin storage "private".

Only the account's own resources may read or write (``forbidden`` otherwise). A query holds
exactly one child in a namespace of its own (``not-acceptable`` otherwise, XEP-0049 §3).
Fragments are bounded in size and number per account.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.xmpp.serialize import StoredXmlError, from_text, to_text
from unirtc.xmpp.stanzas import StanzaError

NS_PRIVATE = "jabber:iq:private"
RESERVED = frozenset({"", "jabber:client", "jabber:server", "jabber:component:accept", NS_PRIVATE})
MAX_FRAGMENT = 65536
MAX_FRAGMENTS = 100


def load(module) -> None:
    store = module.storage("private")
    module.add_feature(NS_PRIVATE)
    module.hook(f"iq-get/bare/{NS_PRIVATE}:query", lambda event: _get(module, store, event))
    module.hook(f"iq-set/bare/{NS_PRIVATE}:query", lambda event: _set(store, event))


def _fragment(event) -> tuple[domish.Element, str]:
    """The one child of the query and its storage key, checked as XEP-0049 requires."""
    origin = event.origin
    if origin is None or origin.kind != "c2s" or origin.jid.bare != event.to:
        raise StanzaError("forbidden", text="private storage belongs to its account")
    query = next(iter(event.stanza.elements(NS_PRIVATE, "query")))
    children = list(query.elements())
    if len(children) != 1 or children[0].uri in RESERVED:
        raise StanzaError("not-acceptable", text="the query must hold one element in its own namespace")
    child = children[0]
    return child, f"{{{child.uri}}}{child.name}"


def _reply(event, child: domish.Element) -> domish.Element:
    query = domish.Element((NS_PRIVATE, "query"))
    query.addChild(child)
    return event.result(query)


def _get(module, store, event) -> Deferred[domish.Element]:
    requested, key = _fragment(event)

    def answer(text: str | None) -> domish.Element:
        if text is not None:
            try:
                return _reply(event, from_text(text, MAX_FRAGMENT))
            except StoredXmlError as e:
                module.log.warn("Ignoring corrupt private XML of {user}: {error}", user=event.to.full, error=str(e))
        return _reply(event, domish.Element((requested.uri, requested.name)))

    return store.get(event.to.full, key).addCallback(answer)


def _set(store, event) -> Deferred[domish.Element]:
    child, key = _fragment(event)
    text = to_text(child)
    if len(text.encode("utf-8")) > MAX_FRAGMENT:
        raise StanzaError("not-acceptable", text=f"a private XML fragment is limited to {MAX_FRAGMENT} bytes")
    owner = event.to.full

    def check(keys: list[str]) -> Deferred[None]:
        if key not in keys and len(keys) >= MAX_FRAGMENTS:
            raise StanzaError("resource-constraint", text=f"at most {MAX_FRAGMENTS} namespaces per account")
        return store.set(owner, key, text)

    return store.keys(owner).addCallback(check).addCallback(lambda _: event.result())

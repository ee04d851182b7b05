"""XEP-0030 Service Discovery: who the server and its accounts are, and what they support.

The server answers disco#info with the identity server/im and every feature plugins declared
with ``module.add_feature``; disco#items lists the items plugins add as ``disco-item``
(a JID string, or a ``(jid, name)`` pair) and the connected components. An account's bare JID
answers with the identity account/registered, as RFC 6121-era clients expect of their server,
and the features plugins declare as ``account-feature`` items (XEP-0313 archives are found there).
"""

from __future__ import annotations

from twisted.words.xish import domish

from unirtc.xmpp.stanzas import StanzaError

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"


def load(module) -> None:
    module.add_feature(NS_INFO)
    module.add_feature(NS_ITEMS)
    module.hook(f"iq-get/host/{NS_INFO}:query", lambda event: _server_info(module, event))
    module.hook(f"iq-get/host/{NS_ITEMS}:query", lambda event: _server_items(module, event))
    module.hook(f"iq-get/bare/{NS_INFO}:query", lambda event: _account_info(module, event))
    module.hook(f"iq-get/bare/{NS_ITEMS}:query", _account_items)


def _query(event, namespace: str) -> domish.Element:
    """The reply's ``<query/>``; nodes are not served yet, so any node is item-not-found."""
    request = next(iter(event.stanza.elements(namespace, "query")))
    if request.getAttribute("node"):
        raise StanzaError("item-not-found")
    return domish.Element((namespace, "query"))


def _identity(query: domish.Element, category: str, kind: str, name: str | None = None) -> None:
    identity = query.addElement("identity")
    identity["category"] = category
    identity["type"] = kind
    if name:
        identity["name"] = name


def _server_info(module, event) -> domish.Element:
    query = _query(event, NS_INFO)
    _identity(query, "server", "im", "unirtc")
    for feature in sorted(set(module.items("feature"))):
        query.addElement("feature")["var"] = feature
    return event.result(query)


def _server_items(module, event) -> domish.Element:
    query = _query(event, NS_ITEMS)
    seen = set()
    for item in [*module.items("disco-item"), *sorted(event.router.components)]:
        jid, name = item if isinstance(item, tuple) else (item, None)
        if jid in seen:
            continue
        seen.add(jid)
        element = query.addElement("item")
        element["jid"] = jid
        if name:
            element["name"] = name
    return event.result(query)


def _account_info(module, event) -> domish.Element:
    query = _query(event, NS_INFO)
    _identity(query, "account", "registered")
    for feature in sorted({NS_INFO, *module.items("account-feature")}):
        query.addElement("feature")["var"] = feature
    return event.result(query)


def _account_items(event) -> domish.Element:
    return event.result(_query(event, NS_ITEMS))

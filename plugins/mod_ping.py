"""XEP-0199 XMPP Ping: answer pings sent to the server or to a local user's bare JID."""

from __future__ import annotations

from twisted.words.xish import domish

NS_PING = "urn:xmpp:ping"


def load(module) -> None:
    module.add_feature(NS_PING)
    module.hook(f"iq-get/host/{NS_PING}:ping", _pong)
    module.hook(f"iq-get/bare/{NS_PING}:ping", _pong)


def _pong(event) -> domish.Element:
    return event.result()

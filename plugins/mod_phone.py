"""``/phone`` on the web listener: the built-in web phone (JsSIP over SIP WebSocket, TURN from the
issuer) and its login endpoint.  The resources live in ``unirtc.web.phone``; this plugin mounts
them.  The phone needs ``[sip] websocket`` (on by default) and, for calls through NATs, a
``[turn]`` secret; without them the page explains what is missing.
"""

from __future__ import annotations

from unirtc.web.phone import PhoneResource


def load(module) -> None:
    module.add_item("http-path", ("phone", PhoneResource(module.settings, module.directory, module.reactor)))
    if not module.settings.sip.websocket:
        module.log.info("[sip] websocket is empty: /phone can log in but cannot register or call")

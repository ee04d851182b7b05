"""XEP-0199 XMPP Ping: answer pings sent to the server or to a local user's bare JID, and ping
idle clients so that dead connections (a phone that left the network) are dropped.

Every ``PING_INTERVAL`` seconds, each client session that has sent nothing for that long gets
a ping from the server; one that answers neither result nor error within ``PING_TIMEOUT``
seconds is closed with ``connection-timeout``, which ends its session (unavailable presence
to its contacts) at once rather than when TCP gives up, minutes or hours later.
"""

from __future__ import annotations

import os

from twisted.internet.task import LoopingCall
from twisted.words.xish import domish

from unirtc.xmpp.stanzas import NS_CLIENT

NS_PING = "urn:xmpp:ping"
PING_INTERVAL = 300.0
PING_TIMEOUT = 60.0
ACTIVE = "ping-last-active"


def load(module) -> None:
    module.add_feature(NS_PING)
    module.hook(f"iq-get/host/{NS_PING}:ping", _pong)
    module.hook(f"iq-get/bare/{NS_PING}:ping", _pong)
    pinger = _Pinger(module)
    for kind in ("message", "presence", "iq"):
        for target in ("host", "bare", "full"):
            module.hook(f"pre-{kind}/{target}", pinger.seen, priority=1000)
    module.hook("presence/broadcast", pinger.seen, priority=1000)
    module.hook("iq/host", pinger.answered, priority=1000)
    module.hook("resource-bound", pinger.seen_session)
    loop = LoopingCall(pinger.tick)
    loop.clock = module.reactor
    loop.start(PING_INTERVAL, now=False)
    module.on_unload(lambda: loop.running and loop.stop())
    module.on_unload(pinger.cancel_all)


def _pong(event) -> domish.Element:
    return event.result()


class _Pinger:
    """Pings sent and not yet answered, by IQ id; activity is stamped on each session."""

    def __init__(self, module) -> None:
        self.module = module
        self.clock = module.reactor
        self.pending: dict[str, tuple[object, object]] = {}  # id -> (session, timeout call)

    def seen(self, event) -> None:
        if event.origin is not None:
            event.origin.data[ACTIVE] = self.clock.seconds()
        return None

    def seen_session(self, event) -> None:
        event.session.data[ACTIVE] = self.clock.seconds()
        return None

    def answered(self, event) -> bool | None:
        stanza_id = event.stanza.getAttribute("id")
        if event.stanza.getAttribute("type") not in ("result", "error") or stanza_id not in self.pending:
            return None
        session, call = self.pending.pop(stanza_id)
        if call.active():
            call.cancel()
        return True

    def tick(self) -> None:
        routers = self.module.items("xmpp-router")
        if not routers:
            return
        now = self.clock.seconds()
        waiting = {id(session) for session, _ in self.pending.values()}
        for session in routers[0].all_sessions():
            if session.kind != "c2s" or id(session) in waiting:
                continue
            if now - session.data.get(ACTIVE, now) >= PING_INTERVAL:
                self._ping(session)

    def _ping(self, session) -> None:
        stanza_id = f"ping-{os.urandom(6).hex()}"
        iq = domish.Element((NS_CLIENT, "iq"))
        iq["type"], iq["id"] = "get", stanza_id
        iq["from"], iq["to"] = session.jid.domain, session.jid.full
        iq.addElement((NS_PING, "ping"))
        call = self.clock.callLater(PING_TIMEOUT, self._timed_out, stanza_id)
        self.pending[stanza_id] = (session, call)
        session.deliver(iq)

    def _timed_out(self, stanza_id: str) -> None:
        session, _ = self.pending.pop(stanza_id, (None, None))
        if session is not None:
            self.module.log.info("{jid} did not answer a ping; closing", jid=session.jid.full)
            session.close("connection-timeout", "no answer to ping")

    def cancel_all(self) -> None:
        for _, call in self.pending.values():
            if call.active():
                call.cancel()
        self.pending.clear()

"""XEP-0045 multi-user chat on ``[muc] domain`` (conference.<domain>), as an in-process component.

The rooms are ``unirtc.muc``; this plugin wires them to the router, to the end of client
sessions (a client that disconnects leaves its rooms) and to plugin storage (persistent rooms
in the store "muc", one document per room, restored before the first stanza is served).
"""

from __future__ import annotations

from unirtc.muc.component import MucComponent, RoomStore
from unirtc.muc.model import MucOptions
from unirtc.muc.service import MucService
from unirtc.xmpp.stanzas import stanza_type


def load(module) -> None:
    routers = module.items("xmpp-router")
    muc = getattr(module.settings, "muc", None)
    if not routers or muc is None:
        module.log.info("No XMPP router or [muc] settings: multi-user chat is not served")
        return
    router = routers[0]
    settings = module.settings
    options = MucOptions(
        max_users=muc.max_occupants,
        max_history=muc.max_history,
        message_rate=muc.message_rate / 60.0,
        message_burst=muc.message_burst,
        server_admins=frozenset(settings.server.admins),
    )
    service = MucService(muc.domain, options, creation=muc.restrict_room_creation,
                         local_domains=[settings.server.domain])
    store = RoomStore(module.storage("muc"), service.domain) if module.directory is not None else None
    component = MucComponent(service, router, module.reactor, store)
    router.add_component(service.domain, component)
    module.on_unload(lambda: router.remove_component(service.domain, component))
    module.on_unload(component.shutdown)
    module.add_item("disco-item", (service.domain, service.name))
    module.hook("session-ended", lambda event: component.session_ended(event.session.jid))
    module.hook("presence/broadcast", lambda event: _went_unavailable(component, event), priority=1000)
    component.start()
    module.log.info("Multi-user chat on {domain} (room creation: {creation})", domain=service.domain,
                    creation=muc.restrict_room_creation)


def _went_unavailable(component: MucComponent, event) -> None:
    """RFC 6121 §4.6.3: a client that broadcasts unavailable leaves the rooms it was in."""
    if stanza_type(event.stanza) == "unavailable" and event.origin is not None:
        component.session_ended(event.origin.jid)
    return None

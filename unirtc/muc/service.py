# -*- test-case-name: tests.unit.test_muc_service -*-
"""The multi-user chat service of one domain (XEP-0045 §6): which rooms exist, who may create
one, discovery of the service, and what outlives a room's occupants.

``MucService.handle(stanza, now)`` takes any stanza addressed to the service domain and returns
the stanzas to send. Errors become the replies XEP-0045 describes (presence errors carry
``<x xmlns='muc'/>``). Temporary rooms vanish with their last occupant; persistent rooms stay,
and what must survive a restart (configuration, affiliations, subject) is handed out by
``take_changes()`` as JSON documents for the caller to store, and handed back with ``restore``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.words.xish import domish

from unirtc.muc import admin
from unirtc.muc.model import (
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_PING, Affiliation, MucOptions, RoomConfig, prepare_nick,
)
from unirtc.muc.room import Out, Room
from unirtc.muc.stanzas import muc_error
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.stanzas import StanzaError, can_bounce, first_child, iq_result, stanza_type

CREATION_POLICIES = ("anyone", "local", "admins")
DOCUMENT_VERSION = 1


class MucService:
    """Rooms of ``domain`` by bare JID; ``local_domains`` are the server's own account domains."""

    def __init__(self, domain: str, options: MucOptions | None = None, creation: str = "anyone",
                 local_domains: Iterable[str] = (), name: str = "Chatrooms") -> None:
        if creation not in CREATION_POLICIES:
            raise ValueError(f"room creation policy must be one of {', '.join(CREATION_POLICIES)}")
        self.jid = JID.make(None, domain)
        self.domain = self.jid.domain
        self.options = options if options is not None else MucOptions()
        self.creation = creation
        self.local_domains = frozenset(JID.make(None, d).domain for d in local_domains)
        self.name = name
        self.rooms: dict[JID, Room] = {}
        self._stored: set[JID] = set()
        self._changes: dict[str, dict[str, Any] | None] = {}

    # -- stanzas ------------------------------------------------------------------------------

    def handle(self, element: domish.Element, now: float) -> Out:
        """Everything the service sends in answer to ``element``."""
        try:
            sender = JID.parse(element.getAttribute("from", ""))
        except InvalidJID:
            return []  # the router stamps it; without a valid one there is nobody to answer
        room = None
        try:
            try:
                to = JID.parse(element.getAttribute("to", ""))
            except InvalidJID as e:
                raise StanzaError("jid-malformed", text=str(e)) from None
            if to.local is None:
                return self._to_service(element, sender)
            room = self.rooms.get(to.bare)
            if room is None:
                room = self._create(element, sender, to)
                if room is None:
                    return []
            if element.name == "presence":
                return room.presence(element, sender, to.resource, now)
            if element.name == "message":
                return room.message(element, sender, to.resource, now)
            return room.iq(element, sender, to.resource, now)
        except StanzaError as error:
            if can_bounce(element):
                return [muc_error(element, error)]
            return []
        finally:
            if room is not None:
                self._settle(room)

    def _create(self, element: domish.Element, sender: JID, to: JID) -> Room | None:
        """A room comes into being when someone allowed to create it enters it (§10.1.1)."""
        kind = stanza_type(element)
        if element.name == "presence":
            if kind != "available":
                return None
            prepare_nick(to.resource)
            if not self.may_create(sender):
                raise StanzaError("not-allowed", text="you may not create rooms here")
            room = Room(to.bare, self.options)
            room.locked = True  # §10.1.2: nobody else enters until the owner has configured it
            room.affiliations[sender.bare] = Affiliation.OWNER
            self.rooms[room.jid] = room
            return room
        if kind in ("error", "result"):
            return None
        raise StanzaError("item-not-found", text="no such room")

    def may_create(self, sender: JID) -> bool:
        if sender.bare in self.options.server_admins or self.creation == "anyone":
            return True
        return self.creation == "local" and sender.domain in self.local_domains

    def _to_service(self, element: domish.Element, sender: JID) -> Out:
        """The service's own address: discovery (§6.1, §6.3) and ping."""
        kind = stanza_type(element)
        if element.name != "iq" or kind not in ("get", "set"):
            if element.name == "message" and kind not in ("error", "groupchat"):
                raise StanzaError("service-unavailable")
            return []
        payload = first_child(element)
        plain_query = payload is not None and payload.name == "query" and not payload.getAttribute("node")
        if kind == "get" and plain_query:
            assert payload is not None
            if payload.uri == NS_DISCO_INFO:
                return [iq_result(element, self._info())]
            if payload.uri == NS_DISCO_ITEMS:
                return [iq_result(element, self._items())]
        if kind == "get" and payload is not None and (payload.uri, payload.name) == (NS_PING, "ping"):
            return [iq_result(element)]
        raise StanzaError("service-unavailable")

    def _info(self) -> domish.Element:
        query = domish.Element((NS_DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "conference", "text", self.name
        for feature in (NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING):
            query.addElement("feature")["var"] = feature
        return query

    def _items(self) -> domish.Element:
        """Public rooms only (hidden ones are not listed, §6.3); locked ones do not exist yet."""
        query = domish.Element((NS_DISCO_ITEMS, "query"))
        for jid, room in sorted(self.rooms.items(), key=lambda kv: kv[0].full):
            if room.config.public and not room.locked:
                entry = query.addElement("item")
                entry["jid"] = jid.full
                entry["name"] = room.config.name or (jid.local or jid.full)
        return query

    # -- sessions and lifetime ------------------------------------------------------------------

    def session_ended(self, session: JID) -> Out:
        """A client is gone (its server said so, or it went unavailable): it leaves every room."""
        out: Out = []
        for room in list(self.rooms.values()):
            if session in room.sessions:
                out += room.session_ended(session)
                self._settle(room)
        return out

    def shutdown(self) -> Out:
        """Tell every occupant the service is going away (status 332); rooms stay as they are."""
        out: Out = []
        for room in self.rooms.values():
            for occupant in room.occupants.values():
                out += [room.presence_of(occupant, occupant, session.full, codes={332}, unavailable=True)
                        for session in occupant.sessions]
            room.occupants.clear()
            room.sessions.clear()
        return out

    def _settle(self, room: Room) -> None:
        """After each stanza: drop rooms that end, and note what persistence must write."""
        name = room.jid.local or ""
        if room.destroyed or (room.is_empty and (room.locked or not room.config.persistent)):
            if self.rooms.get(room.jid) is room:
                del self.rooms[room.jid]
            if room.jid in self._stored:
                self._stored.discard(room.jid)
                self._changes[name] = None
            return
        if not room.changed:
            return
        room.changed = False
        if room.config.persistent and not room.locked:
            self._stored.add(room.jid)
            self._changes[name] = self.document(room)
        elif room.jid in self._stored:
            self._stored.discard(room.jid)
            self._changes[name] = None

    # -- persistence ------------------------------------------------------------------------------

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Room documents to store since the last call, by room localpart (None: delete it)."""
        changes, self._changes = self._changes, {}
        return changes

    @staticmethod
    def document(room: Room) -> dict[str, Any]:
        return {
            "version": DOCUMENT_VERSION,
            "config": room.config.as_json(),
            "affiliations": {jid.full: value.wire for jid, value in room.affiliations.items()},
            "subject": room.subject,
            "subject_nick": room.subject_nick,
        }

    def restore(self, name: str, document: dict[str, Any]) -> Room:
        """Bring back a persistent room from ``document``; ValueError if it is not one of ours."""
        if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
            raise ValueError(f"room {name!r}: not a room document")
        try:
            jid = JID.make(name, self.domain)
        except InvalidJID as e:
            raise ValueError(f"room {name!r}: {e}") from None
        config = RoomConfig.from_json(document["config"])
        config.persistent = True
        room = Room(jid, self.options, config)
        affiliations = document.get("affiliations")
        for who, value in (affiliations.items() if isinstance(affiliations, dict) else ()):
            try:
                room.affiliations[JID.parse(who).bare] = Affiliation.parse(value)
            except (InvalidJID, ValueError, TypeError):
                continue
        if isinstance(document.get("subject"), str):
            room.subject = document["subject"]
        if isinstance(document.get("subject_nick"), str):
            room.subject_nick = document["subject_nick"]
        self.rooms[jid] = room
        self._stored.add(jid)
        return room

    def destroy(self, jid: JID, reason: str | None = None) -> Out:
        """Destroy a room from outside the protocol (an administrator's tool)."""
        room = self.rooms.get(jid.bare)
        if room is None:
            return []
        notice = domish.Element((admin.NS_OWNER, "destroy"))
        if reason:
            notice.addElement("reason", content=reason)
        out = admin.destroy_room(room, notice)
        self._settle(room)
        return out

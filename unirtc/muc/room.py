# -*- test-case-name: tests.unit.test_muc_room -*-
"""One room's state machine (XEP-0045 §7): occupants entering, changing nick or presence and
leaving; groupchat messages, subject, private messages, invitations; errors that betray a
vanished occupant. Moderation and configuration live in ``admin.py``.

Every entry point takes the stanza as received, its sender's real JID and ``now``, and returns
the stanzas to send, addressed; nothing here does I/O, so the service can route them and
tests can read them. A request the room refuses raises ``StanzaError`` before any state
changes, and the service bounces it. Real JIDs are only ever addresses to route to: an
occupant on another server is handled exactly like a local one.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict

from twisted.words.xish import domish

from unirtc.muc import admin
from unirtc.muc.history import History, HistoryRequest, HistoryRequestError
from unirtc.muc.model import (
    NS_DATA, NS_MUC, NS_PING, NS_SID, NS_USER, Affiliation, MucOptions, Nick, Occupant, Role, RoomConfig,
    TokenBucket, default_role, prepare_nick,
)
from unirtc.muc.stanzas import clone, item, reflectable, stanza, text_of, user_x
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.stanzas import NS_CLIENT, NS_STANZAS, StanzaError, first_child, iq_result, stanza_type

Out = list[domish.Element]

#: Errors from an occupant's address meaning nobody is there any more: the occupant is a ghost,
#: removed with status 333 as XEP-0045 (1.32+) and XEP-0410 describe.
GHOST_CONDITIONS = frozenset({"gone", "item-not-found", "recipient-unavailable", "redirect",
                              "remote-server-not-found", "remote-server-timeout",
                              "service-unavailable"})
MAX_INVITES = 10
_PENDING_IQS = 256
_PENDING_INVITES = 256


class Room:
    """Occupants by nickname key and by real session JID, affiliations, subject and history."""

    def __init__(self, jid: JID, options: MucOptions, config: RoomConfig | None = None) -> None:
        self.jid = jid
        self.name = jid.full
        self.options = options
        self.config = config if config is not None else RoomConfig(max_history=options.max_history)
        self.affiliations: dict[JID, Affiliation] = {}
        self.occupants: dict[str, Occupant] = {}
        self.sessions: dict[JID, Occupant] = {}
        self.subject = ""
        self.subject_nick: str | None = None
        self.history = History(self.config.max_history)
        self.locked = False
        self.destroyed = False
        self.changed = False  # persistent state changed since the service last looked
        self._pending_iqs: OrderedDict[str, tuple[str | None, JID, str, JID]] = OrderedDict()
        self._invited: OrderedDict[JID, JID] = OrderedDict()
        self._iq_serial = 0

    # -- who is who -------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return not self.occupants

    @property
    def max_users(self) -> int:
        return min(self.config.max_users or self.options.max_users, self.options.max_users)

    def affiliation_of(self, jid: JID) -> Affiliation:
        """Stored affiliation of the bare JID, else of its domain; server admins own every room."""
        bare = jid.bare
        if bare in self.options.server_admins:
            return Affiliation.OWNER
        found = self.affiliations.get(bare)
        if found is None and bare.local is not None:
            found = self.affiliations.get(JID._trusted(None, bare.domain, None))
        return found if found is not None else Affiliation.NONE

    def occupant_jid(self, occupant: Occupant) -> str:
        return f"{self.name}/{occupant.nick.text}"

    def sees_jids(self, viewer: Occupant) -> bool:
        return self.config.non_anonymous or viewer.role == Role.MODERATOR

    # -- presence -----------------------------------------------------------------------------

    def presence(self, element: domish.Element, sender: JID, nick: str | None, now: float) -> Out:
        kind = stanza_type(element)
        if kind == "unavailable":
            occupant = self.sessions.get(sender)
            return self.leave(occupant, sender, reflectable(element, self.name)) if occupant else []
        if kind == "error":
            return self._error_from(element, sender)
        if kind != "available":
            return []  # probes and subscriptions mean nothing to a room
        wanted = prepare_nick(nick)
        join = next(element.elements(NS_MUC, "x"), None)
        occupant = self.sessions.get(sender)
        children = reflectable(element, self.name)
        if occupant is None:
            return self._enter(sender, nick or "", wanted, join, children, now)
        if wanted.key == occupant.nick.key and wanted.text == occupant.nick.text:
            if join is not None:  # the client lost track of the room: give it everything again
                request = _history_request(join)
                occupant.update(sender, children)
                return self._welcome(occupant, sender, request, now, codes=())
            occupant.update(sender, children)
            return self.broadcast(occupant)
        return self._change_nick(occupant, sender, wanted, children)

    def _enter(self, sender: JID, raw: str, nick: Nick, join: domish.Element | None,
               children: list[domish.Element], now: float) -> Out:
        affiliation = self.affiliation_of(sender)
        if affiliation == Affiliation.OUTCAST:
            raise StanzaError("forbidden", text="you are banned from this room")
        if self.locked and affiliation != Affiliation.OWNER:
            raise StanzaError("item-not-found", text="this room is still being configured")
        if self.config.members_only and affiliation < Affiliation.MEMBER:
            raise StanzaError("registration-required", text="this room is for members only")
        if self.config.locked_by_password and affiliation < Affiliation.OWNER:
            given = text_of(join, "password") if join is not None else None
            if given is None or not hmac.compare_digest(given.encode(), self.config.password.encode()):
                raise StanzaError("not-authorized", text="a password is required to enter")
        existing = self.occupants.get(nick.key)
        if existing is not None and existing.bare != sender.bare:
            raise StanzaError("conflict", text="that nickname is in use")
        if existing is None and len(self.occupants) >= self.max_users and affiliation < Affiliation.ADMIN:
            raise StanzaError("service-unavailable", text="the room is full")
        request = _history_request(join)
        codes = {210} if nick.text != raw else set()
        if existing is not None:  # another client of the same account joins the same occupant
            existing.update(sender, children)
            self.sessions[sender] = existing
            welcome = self._welcome(existing, sender, request, now, codes)
            return self.broadcast(existing, exclude=sender) + welcome
        occupant = Occupant(nick, sender.bare, default_role(affiliation, self.config.moderated), affiliation,
                            TokenBucket(self.options.message_rate, self.options.message_burst))
        occupant.update(sender, children)
        self.occupants[nick.key] = occupant
        self.sessions[sender] = occupant
        if self.locked:
            codes.add(201)
        return self.broadcast(occupant, exclude=sender) + self._welcome(occupant, sender, request, now, codes)

    def _welcome(self, occupant: Occupant, session: JID, request: HistoryRequest, now: float,
                 codes: set[int] | tuple[int, ...]) -> Out:
        """XEP-0045 §7.2.3 order: the others' presence, self-presence, history, then subject."""
        to = session.full
        out = [self.presence_of(other, occupant, to)
               for other in self.occupants.values() if other is not occupant]
        own = set(codes) | {110}
        if self.config.non_anonymous:
            own.add(100)
        if self.config.logging:
            own.add(170)
        out.append(self.presence_of(occupant, occupant, to, codes=own))
        out.extend(self.history.replay(request, self.name, to, now, self.config.max_history))
        frm = f"{self.name}/{self.subject_nick}" if self.subject_nick else self.name
        subject = stanza("message", frm, to, type="groupchat")
        subject.addElement("subject", content=self.subject)
        out.append(subject)
        return out

    def presence_of(self, occupant: Occupant, viewer: Occupant, to: str, codes: set[int] | None = None,
                    unavailable: bool = False, actor: str | None = None, reason: str | None = None,
                    new_nick: str | None = None, extra: list[domish.Element] | None = None) -> domish.Element:
        """``occupant``'s presence as ``viewer`` may see it (real JID only where allowed)."""
        primary = occupant.primary
        jid = primary.full if viewer is occupant or self.sees_jids(viewer) else None
        role = Role.NONE if unavailable else occupant.role
        entry = item(occupant.affiliation, role, jid, new_nick, actor, reason)
        codes = set(codes or ())
        if viewer is occupant:
            codes.add(110)
        children = [c for c in occupant.sessions[primary] if not unavailable or c.name == "status"]
        x = user_x([entry, *(extra or [])], codes)
        return stanza("presence", self.occupant_jid(occupant), to, [*children, x],
                      type="unavailable" if unavailable else None)

    def broadcast(self, occupant: Occupant, exclude: JID | None = None, **kwargs: object) -> Out:
        """``occupant``'s presence to every session in the room (but ``exclude``)."""
        out = []
        for viewer in list(self.occupants.values()):
            for session in viewer.sessions:
                if session != exclude:
                    out.append(self.presence_of(
                        occupant, viewer, session.full, **kwargs))  # type: ignore[arg-type]
        return out

    def _change_nick(self, occupant: Occupant, sender: JID, wanted: Nick,
                     children: list[domish.Element]) -> Out:
        """XEP-0045 §7.6: unavailable with 303 and the new nick, then available under it."""
        other = self.occupants.get(wanted.key)
        if other is not None and other is not occupant:
            raise StanzaError("conflict", text="that nickname is in use")
        if len(occupant.sessions) > 1:
            raise StanzaError("not-acceptable", text="leave from your other clients before changing nickname")
        out = self.broadcast(occupant, codes={303}, unavailable=True, new_nick=wanted.text)
        del self.occupants[occupant.nick.key]
        occupant.nick = wanted
        self.occupants[wanted.key] = occupant
        occupant.update(sender, children)
        return out + self.broadcast(occupant)

    def leave(self, occupant: Occupant, session: JID, status: list[domish.Element] | None = None,
              codes: set[int] | None = None) -> Out:
        """One session leaves; the occupant goes when its last session does (XEP-0045 §7.14)."""
        occupant.update(session, status if status is not None else occupant.sessions[session])
        out = [self.presence_of(occupant, occupant, session.full, codes=codes, unavailable=True)]
        # the leaving session's entry must go before others see the occupant's remaining state
        self.sessions.pop(session, None)
        if len(occupant.sessions) > 1:
            del occupant.sessions[session]
            return out + self.broadcast(occupant)
        del self.occupants[occupant.nick.key]
        return out + self.broadcast(occupant, unavailable=True, codes=codes)

    def remove(self, occupant: Occupant, codes: set[int], actor: str | None = None,
               reason: str | None = None, extra: list[domish.Element] | None = None) -> Out:
        """Take an occupant out with every session (kick, ban, membership, destruction)."""
        kwargs = {"codes": codes, "unavailable": True, "actor": actor, "reason": reason, "extra": extra}
        out = self.broadcast(occupant, **kwargs)  # type: ignore[arg-type]
        for session in occupant.sessions:
            self.sessions.pop(session, None)
        self.occupants.pop(occupant.nick.key, None)
        return out

    def _error_from(self, element: domish.Element, sender: JID) -> Out:
        """An error from an occupant's client saying it is gone: remove that session (333)."""
        occupant = self.sessions.get(sender)
        error = next((c for c in element.elements() if c.name == "error"), None) if occupant else None
        if occupant is None or error is None:
            return []
        condition = next((c.name for c in error.elements(NS_STANZAS)), None)
        if condition not in GHOST_CONDITIONS:
            return []
        out = self.leave(occupant, sender, codes={333})
        return out[1:]  # the vanished session itself gets nothing

    def session_ended(self, session: JID) -> Out:
        occupant = self.sessions.get(session)
        return self.leave(occupant, session)[1:] if occupant else []

    # -- messages -----------------------------------------------------------------------------

    def message(self, element: domish.Element, sender: JID, nick: str | None, now: float) -> Out:
        kind = stanza_type(element)
        if kind == "error":
            return self._error_from(element, sender)
        if nick is not None:
            if kind == "groupchat":
                raise StanzaError("bad-request", text="a groupchat message goes to the room, not an occupant")
            return self._private(element, sender, nick, now)
        if kind == "groupchat":
            return self._groupchat(element, sender, now)
        x = next(element.elements(NS_USER, "x"), None)
        if x is not None and next(x.elements(NS_USER, "invite"), None) is not None:
            return self._invite(x, sender, now)
        if x is not None and next(x.elements(NS_USER, "decline"), None) is not None:
            return self._decline(x, sender)
        form = next(element.elements(NS_DATA, "x"), None)
        if form is not None:
            return admin.voice_request(self, form, sender, now)
        raise StanzaError("bad-request",
                          text="send groupchat messages, invitations, declines or voice requests")

    def _speaker(self, sender: JID, now: float) -> Occupant:
        occupant = self.sessions.get(sender)
        if occupant is None:
            raise StanzaError("not-acceptable", text="you are not in this room")
        if not occupant.bucket.allow(now):
            raise StanzaError("resource-constraint", text="too many messages; slow down")
        return occupant

    def _groupchat(self, element: domish.Element, sender: JID, now: float) -> Out:
        occupant = self._speaker(sender, now)
        subject = text_of(element, "subject")
        body = text_of(element, "body")
        if subject is not None and body is None:
            if not (occupant.role == Role.MODERATOR
                    or (self.config.change_subject and occupant.role >= Role.PARTICIPANT)):
                raise StanzaError("forbidden", text="you may not change the subject")
            self.subject, self.subject_nick, self.changed = subject, occupant.nick.text, True
        elif occupant.role < Role.PARTICIPANT:
            raise StanzaError("forbidden", text="you have no voice in this room")
        children = reflectable(element, self.name)
        sid = domish.Element((NS_SID, "stanza-id"))
        sid["id"] = self.options.new_id()
        sid["by"] = self.name
        reflected = stanza("message", self.occupant_jid(occupant), None, [*children, sid], type="groupchat",
                           id=element.getAttribute("id"))
        if body is not None:
            self.history.add(reflected, now)
        return [clone(reflected, to=session.full)
                for viewer in self.occupants.values() for session in viewer.sessions]

    def _private(self, element: domish.Element, sender: JID, nick: str, now: float) -> Out:
        """XEP-0045 §7.5: to every client of the addressee, marked with an empty muc#user x."""
        occupant = self._speaker(sender, now)
        target = self.occupants.get(prepare_nick(nick).key)
        if target is None:
            raise StanzaError("item-not-found", text="nobody has that nickname here")
        needed = {"anyone": Role.VISITOR, "participants": Role.PARTICIPANT,
                  "moderators": Role.MODERATOR}.get(self.config.allow_pm)
        if needed is None or occupant.role < needed:
            raise StanzaError("forbidden", text="private messages are not allowed to you in this room")
        children = [*reflectable(element, self.name), domish.Element((NS_USER, "x"))]
        return [stanza("message", self.occupant_jid(occupant), session.full, children,
                       type=element.getAttribute("type"), id=element.getAttribute("id"))
                for session in target.sessions]

    def _invite(self, x: domish.Element, sender: JID, now: float) -> Out:
        """XEP-0045 §7.8.2 mediated invitations, from the room, with its password."""
        occupant = self._speaker(sender, now)
        if (self.config.members_only and not self.config.allow_invites
                and occupant.affiliation < Affiliation.ADMIN):
            raise StanzaError("forbidden", text="only admins may invite to this room")
        invites = list(x.elements(NS_USER, "invite"))
        if len(invites) > MAX_INVITES:
            raise StanzaError("policy-violation", text=f"at most {MAX_INVITES} invitations at once")
        targets = []
        for invite in invites:
            to = invite.getAttribute("to")
            if to is None:
                raise StanzaError("bad-request", text="an invitation needs a 'to'")
            try:
                targets.append((JID.parse(to), text_of(invite, "reason")))
            except InvalidJID as e:
                raise StanzaError("jid-malformed", text=str(e)) from None
        out = []
        for invitee, reason in targets:
            if self.config.members_only and self.affiliation_of(invitee) == Affiliation.NONE:
                self.affiliations[invitee.bare] = Affiliation.MEMBER
                self.changed = True
            self._invited[invitee.bare] = sender
            while len(self._invited) > _PENDING_INVITES:
                self._invited.popitem(last=False)
            invite = domish.Element((NS_USER, "invite"))
            invite["from"] = sender.bare.full
            if reason:
                invite.addElement("reason", content=reason)
            children = [invite]
            if self.config.locked_by_password:
                children.append(domish.Element((NS_USER, "password")))
                children[-1].addContent(self.config.password)
            body = domish.Element((NS_CLIENT, "body"))
            text = f"{sender.bare.full} invites you to the room {self.name}"
            body.addContent(f"{text}: {reason}" if reason else text)
            message = stanza("message", self.name, invitee.full, [user_x(children)])
            message.addChild(body)
            out.append(message)
        return out

    def _decline(self, x: domish.Element, sender: JID) -> Out:
        """Pass a decline to whoever invited the sender; a stranger's decline goes nowhere."""
        inviter = self._invited.pop(sender.bare, None)
        if inviter is None:
            return []
        decline = domish.Element((NS_USER, "decline"))
        decline["from"] = sender.bare.full
        reason = text_of(next(x.elements(NS_USER, "decline")), "reason")
        if reason:
            decline.addElement("reason", content=reason)
        return [stanza("message", self.name, inviter.full, [user_x([decline])])]

    # -- IQs ------------------------------------------------------------------------------------

    def iq(self, element: domish.Element, sender: JID, nick: str | None, now: float) -> Out:
        kind = stanza_type(element)
        if kind in ("result", "error"):
            return self._iq_response(element, sender, nick) if nick is not None else []
        payload = first_child(element)
        if kind not in ("get", "set") or payload is None:
            raise StanzaError("bad-request", text="an IQ needs type get or set and one payload")
        if nick is not None:
            return self._iq_to_occupant(element, payload, sender, nick)
        return admin.room_iq(self, element, payload, sender, now)

    def _iq_to_occupant(self, element: domish.Element, payload: domish.Element, sender: JID,
                        nick: str) -> Out:
        """XEP-0410 self-ping is answered here; other IQs go to the occupant's client, with
        our own id so the answer can find its way back without revealing the asker's JID."""
        occupant = self.sessions.get(sender)
        if occupant is None:
            if payload.uri == NS_PING:  # XEP-0410 §3.2: "you are not joined"
                raise StanzaError("not-acceptable", text="you are not in this room")
            raise StanzaError("bad-request", text="only occupants may query occupants")  # XEP-0045 §6.6
        target = self.occupants.get(prepare_nick(nick).key)
        if target is None:
            raise StanzaError("item-not-found", text="nobody has that nickname here")
        if target is occupant and payload.uri == NS_PING and payload.name == "ping":
            return [iq_result(element)]
        self._iq_serial += 1
        forwarded_id = f"muc-{self._iq_serial}"
        to = target.bare if payload.uri == "vcard-temp" else target.primary
        self._pending_iqs[forwarded_id] = (element.getAttribute("id"), sender, target.nick.key, to)
        while len(self._pending_iqs) > _PENDING_IQS:
            self._pending_iqs.popitem(last=False)
        return [stanza("iq", self.occupant_jid(occupant), to.full, [payload], type=stanza_type(element),
                       id=forwarded_id)]

    def _iq_response(self, element: domish.Element, sender: JID, nick: str) -> Out:
        pending = self._pending_iqs.get(element.getAttribute("id", ""))
        if pending is None or pending[3] != sender:
            return []
        del self._pending_iqs[element.getAttribute("id")]
        original_id, asker, target_key, _ = pending
        target = self.occupants.get(target_key)
        frm = self.occupant_jid(target) if target else self.name
        return [stanza("iq", frm, asker.full, list(element.elements()), type=stanza_type(element),
                       id=original_id)]


def _history_request(join: domish.Element | None) -> HistoryRequest:
    try:
        return HistoryRequest.parse(join)
    except HistoryRequestError as e:
        raise StanzaError("bad-request", text=str(e)) from None

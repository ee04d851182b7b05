# -*- test-case-name: tests.unit.test_muc_admin -*-
"""IQs to a room's bare JID: disco (XEP-0045 §6.4), moderation with muc#admin (roles §8,
affiliations §9) and ownership with muc#owner (configuration §10.2, destruction §10.9); and
voice requests (§7.13), which moderators answer with a form (§8.6).

A ``set`` is checked item by item before anything changes, so a list that is partly refused
changes nothing. Who may do what follows XEP-0045's tables: moderators change roles but not
of admins and owners, admins manage members and outcasts, owners manage everything except
leaving the room without an owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish import domish

from unirtc.muc.forms import (
    DataForm, Field, FormError, apply_config, boolean, config_form, roominfo_form, single,
)
from unirtc.muc.model import (
    NS_ADMIN, NS_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_OWNER, NS_PING, NS_REQUEST,
    NS_SELF_PING, NS_SID, NS_STABLE_ID, NS_USER, Affiliation, Occupant, Role, RoomConfig,
    default_role, prepare_nick,
)
from unirtc.muc.stanzas import stanza, status_message, text_of
from unirtc.xmpp.jid import JID, InvalidJID
from unirtc.xmpp.stanzas import StanzaError, iq_result, stanza_type

if TYPE_CHECKING:
    from unirtc.muc.room import Out, Room

MAX_ITEMS = 100
#: XEP-0045 §7.2.3's discovery node for a user's reserved nickname; we reserve none.
RESERVED_NICK_NODE = "x-roomuser-item"


def room_iq(room: Room, element: domish.Element, payload: domish.Element, sender: JID, now: float) -> Out:
    """Dispatch an IQ get/set addressed to the room itself."""
    kind = stanza_type(element)
    if payload.name == "query" and kind == "get" and payload.uri == NS_DISCO_INFO:
        return [iq_result(element, disco_info(room, payload))]
    if payload.name == "query" and kind == "get" and payload.uri == NS_DISCO_ITEMS:
        if payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        return [iq_result(element, domish.Element((NS_DISCO_ITEMS, "query")))]
    if payload.name == "query" and payload.uri == NS_ADMIN:
        return (_admin_get if kind == "get" else _admin_set)(room, element, payload, sender)
    if payload.name == "query" and payload.uri == NS_OWNER:
        return (_owner_get if kind == "get" else _owner_set)(room, element, payload, sender)
    if payload.name == "ping" and kind == "get" and payload.uri == NS_PING:
        return [iq_result(element)]
    raise StanzaError("service-unavailable")


def features(room: Room) -> list[str]:
    config = room.config
    return [
        NS_MUC, NS_STABLE_ID, NS_SELF_PING, NS_SID, NS_PING, NS_DISCO_INFO,
        "muc_persistent" if config.persistent else "muc_temporary",
        "muc_public" if config.public else "muc_hidden",
        "muc_membersonly" if config.members_only else "muc_open",
        "muc_moderated" if config.moderated else "muc_unmoderated",
        "muc_nonanonymous" if config.non_anonymous else "muc_semianonymous",
        "muc_passwordprotected" if config.locked_by_password else "muc_unsecured",
    ]


def disco_info(room: Room, request: domish.Element) -> domish.Element:
    node = request.getAttribute("node")
    query = domish.Element((NS_DISCO_INFO, "query"))
    if node == RESERVED_NICK_NODE:
        query["node"] = node
        return query
    if node:
        raise StanzaError("item-not-found")
    identity = query.addElement("identity")
    identity["category"], identity["type"] = "conference", "text"
    identity["name"] = room.config.name or (room.jid.local or room.name)
    for feature in features(room):
        query.addElement("feature")["var"] = feature
    query.addChild(roominfo_form(room.config, len(room.occupants), room.subject).to_element())
    return query


# -- muc#admin ---------------------------------------------------------------------------------

def _items(query: domish.Element) -> list[domish.Element]:
    items = list(query.elements(NS_ADMIN, "item"))
    if not items or len(items) > MAX_ITEMS:
        raise StanzaError("bad-request", text=f"expected 1 to {MAX_ITEMS} items")
    return items


def _admin_item(**attributes: str | None) -> domish.Element:
    element = domish.Element((NS_ADMIN, "item"))
    for name, value in attributes.items():
        if value is not None:
            element[name] = value
    return element


def _admin_get(room: Room, element: domish.Element, query: domish.Element, sender: JID) -> Out:
    """Affiliation lists for admins and owners; role lists for moderators (§9.5, §8.5)."""
    items = _items(query)
    if len(items) != 1:
        raise StanzaError("bad-request", text="ask for one list at a time")
    affiliation, role = items[0].getAttribute("affiliation"), items[0].getAttribute("role")
    result = domish.Element((NS_ADMIN, "query"))
    try:
        if affiliation is not None and role is None:
            wanted = Affiliation.parse(affiliation)
            if room.affiliation_of(sender) < Affiliation.ADMIN:
                raise StanzaError("forbidden", text="only admins and owners see affiliation lists")
            for jid, value in sorted(room.affiliations.items(), key=lambda kv: kv[0].full):
                if value == wanted:
                    result.addChild(_admin_item(affiliation=value.wire, jid=jid.full))
        elif role is not None and affiliation is None:
            wanted_role = Role.parse(role)
            asker = room.sessions.get(sender)
            if asker is None or asker.role != Role.MODERATOR:
                raise StanzaError("forbidden", text="only moderators see role lists")
            for occupant in room.occupants.values():
                if occupant.role == wanted_role:
                    result.addChild(_admin_item(
                        nick=occupant.nick.text, role=occupant.role.wire,
                        affiliation=occupant.affiliation.wire,
                        jid=occupant.primary.full if room.sees_jids(asker) else None))
        else:
            raise StanzaError("bad-request", text="an item names a role or an affiliation")
    except ValueError as e:
        raise StanzaError("bad-request", text=str(e)) from None
    return [iq_result(element, result)]


def _check_role(actor: Occupant | None, actor_affiliation: Affiliation, target: Occupant, role: Role) -> None:
    """XEP-0045 §8 and §9.6-9.7: moderators change roles, within their own rank."""
    if actor is None or actor.role != Role.MODERATOR:
        raise StanzaError("forbidden", text="only moderators change roles")
    if role == Role.MODERATOR or target.role == Role.MODERATOR:
        if actor_affiliation < Affiliation.ADMIN:
            raise StanzaError("forbidden", text="only admins and owners grant or revoke moderation")
        if target.affiliation >= Affiliation.ADMIN and role != Role.MODERATOR:
            raise StanzaError("not-allowed", text="admins and owners are always moderators")
    elif target.affiliation >= Affiliation.ADMIN or target.affiliation > actor_affiliation:
        raise StanzaError("not-allowed", text="you may not change the role of a higher affiliation")


def _check_affiliation(actor: Affiliation, current: Affiliation, new: Affiliation) -> None:
    """XEP-0045 §9-10: admins manage members and outcasts below them; owners manage all."""
    if actor == Affiliation.OWNER:
        return
    if actor != Affiliation.ADMIN or new >= Affiliation.ADMIN:
        raise StanzaError("forbidden", text="you may not grant that affiliation")
    if current >= Affiliation.ADMIN:
        raise StanzaError("not-allowed", text="admins may not change admins or owners")


def _admin_set(room: Room, element: domish.Element, query: domish.Element, sender: JID) -> Out:
    actor = room.sessions.get(sender)
    actor_affiliation = room.affiliation_of(sender)
    roles: list[tuple[Occupant, Role, str | None]] = []
    affiliations: list[tuple[JID, Affiliation, str | None]] = []
    for entry in _items(query):
        role, affiliation = entry.getAttribute("role"), entry.getAttribute("affiliation")
        nick, jid = entry.getAttribute("nick"), entry.getAttribute("jid")
        reason = text_of(entry, "reason")
        try:
            if role is not None and affiliation is None:
                if nick is None:
                    raise StanzaError("bad-request", text="a role change names an occupant by nick")
                target = room.occupants.get(prepare_nick(nick).key)
                if target is None:
                    raise StanzaError("item-not-found", text=f"nobody is called {nick[:40]!r} here")
                wanted_role = Role.parse(role)
                _check_role(actor, actor_affiliation, target, wanted_role)
                roles.append((target, wanted_role, reason))
            elif affiliation is not None and role is None:
                wanted = Affiliation.parse(affiliation)
                if jid is not None:
                    subject = JID.parse(jid).bare
                elif nick is not None and (found := room.occupants.get(prepare_nick(nick).key)) is not None:
                    subject = found.bare
                else:
                    raise StanzaError("bad-request",
                                      text="an affiliation change names a jid or a present nick")
                _check_affiliation(actor_affiliation, room.affiliation_of(subject), wanted)
                affiliations.append((subject, wanted, reason))
            else:
                raise StanzaError("bad-request", text="each item changes a role or an affiliation")
        except InvalidJID as e:
            raise StanzaError("jid-malformed", text=str(e)) from None
        except ValueError as e:
            raise StanzaError("bad-request", text=str(e)) from None
    owners = {jid for jid, value in room.affiliations.items() if value == Affiliation.OWNER}
    for subject, wanted, _ in affiliations:
        (owners.add if wanted == Affiliation.OWNER else owners.discard)(subject)
    if not owners and any(value == Affiliation.OWNER for value in room.affiliations.values()):
        raise StanzaError("conflict", text="a room must keep at least one owner")
    actor_nick = actor.nick.text if actor else None
    out: Out = []
    for target, wanted_role, reason in roles:
        if target.nick.key in room.occupants:
            out += _set_role(room, target, wanted_role, actor_nick, reason)
    for subject, wanted, reason in affiliations:
        out += set_affiliation(room, subject, wanted, actor_nick, reason)
    return out + [iq_result(element)]


def _set_role(room: Room, target: Occupant, role: Role, actor: str | None, reason: str | None) -> Out:
    if role == Role.NONE:
        return room.remove(target, {307}, actor, reason)
    promoted = role == Role.MODERATOR and target.role != Role.MODERATOR
    target.role = role
    out = room.broadcast(target, actor=actor, reason=reason)
    if promoted and not room.config.non_anonymous:
        # §9.6: a new moderator of a semi-anonymous room now sees everyone's real JID
        for other in room.occupants.values():
            if other is not target:
                out += [room.presence_of(other, target, session.full) for session in target.sessions]
    return out


def set_affiliation(room: Room, subject: JID, affiliation: Affiliation, actor: str | None = None,
                    reason: str | None = None) -> Out:
    """Store an affiliation and apply it to whoever it concerns in the room (§9.1, §9.3, §9.4)."""
    if affiliation == Affiliation.NONE:
        room.affiliations.pop(subject, None)
    else:
        room.affiliations[subject] = affiliation
    room.changed = True
    out: Out = []
    for occupant in list(room.occupants.values()):
        by_domain = subject.local is None and occupant.bare.domain == subject.domain
        if occupant.bare != subject and not by_domain:
            continue
        effective = room.affiliation_of(occupant.bare)
        occupant.affiliation = effective
        if effective == Affiliation.OUTCAST:
            out += room.remove(occupant, {301}, actor, reason)
        elif room.config.members_only and effective < Affiliation.MEMBER:
            out += room.remove(occupant, {321}, actor, reason)
        else:
            occupant.role = default_role(effective, room.config.moderated)
            out += room.broadcast(occupant, actor=actor, reason=reason)
    return out


def voice_request(room: Room, x: domish.Element, sender: JID, now: float) -> Out:
    """§7.13 and §8.6: a visitor asks for voice; moderators get an approval form, and a
    moderator's submitted form with muc#request_allow true grants it."""
    try:
        form = DataForm.parse(x)
    except FormError as e:
        raise StanzaError("bad-request", text=str(e)) from None
    if form.form_type != NS_REQUEST:
        raise StanzaError("bad-request", text=f"expected a {NS_REQUEST} form")
    occupant = room.sessions.get(sender)
    if occupant is None:
        raise StanzaError("not-acceptable", text="you are not in this room")
    if form.values("muc#request_allow") is None:
        if occupant.role != Role.VISITOR or not occupant.bucket.allow(now):
            return []  # nothing to ask for, or asking too often: moderators are not pestered
        approval = DataForm("form", title="Voice request", fields=[
            Field("FORM_TYPE", "hidden", values=[NS_REQUEST]),
            Field("muc#role", "list-single", "Requested role", ["participant"]),
            Field("muc#jid", "jid-single", "User ID", [occupant.primary.full]),
            Field("muc#roomnick", "text-single", "Room nickname", [occupant.nick.text]),
            Field("muc#request_allow", "boolean", "Grant voice to this person?", ["false"]),
        ]).to_element()
        return [stanza("message", room.name, session.full, [approval])
                for moderator in room.occupants.values() if moderator.role == Role.MODERATOR
                for session in moderator.sessions]
    if occupant.role != Role.MODERATOR:
        raise StanzaError("forbidden", text="only moderators grant voice")
    try:
        allowed = boolean("muc#request_allow", form.values("muc#request_allow") or [])
        nick = single("muc#roomnick", form.values("muc#roomnick") or [])
    except FormError as e:
        raise StanzaError("bad-request", text=str(e)) from None
    target = room.occupants.get(prepare_nick(nick).key)
    if not allowed or target is None or target.role != Role.VISITOR:
        return []
    return _set_role(room, target, Role.PARTICIPANT, occupant.nick.text, None)


# -- muc#owner ---------------------------------------------------------------------------------

def _require_owner(room: Room, sender: JID) -> None:
    if room.affiliation_of(sender) != Affiliation.OWNER:
        raise StanzaError("forbidden", text="only owners configure or destroy a room")


def _owner_get(room: Room, element: domish.Element, query: domish.Element, sender: JID) -> Out:
    _require_owner(room, sender)
    result = domish.Element((NS_OWNER, "query"))
    form = config_form(room.config, room.options.max_users, room.options.max_history)
    result.addChild(form.to_element())
    return [iq_result(element, result)]


def _owner_set(room: Room, element: domish.Element, query: domish.Element, sender: JID) -> Out:
    _require_owner(room, sender)
    destroy = next(query.elements(NS_OWNER, "destroy"), None)
    if destroy is not None:
        return destroy_room(room, destroy) + [iq_result(element)]
    x = next(query.elements(NS_DATA, "x"), None)
    if x is None:
        raise StanzaError("bad-request", text="expected a data form or <destroy/>")
    try:
        form = DataForm.parse(x)
        if form.type == "cancel":
            # §10.1.2: cancelling the first configuration of a new room destroys it
            return (destroy_room(room, None) if room.locked else []) + [iq_result(element)]
        config = apply_config(room.config, form, room.options.max_users, room.options.max_history)
    except FormError as e:
        raise StanzaError("bad-request", text=str(e)) from None
    return _reconfigure(room, config) + [iq_result(element)]


def _reconfigure(room: Room, config: RoomConfig) -> Out:
    old, room.config = room.config, config
    room.history.resize(config.max_history)
    room.changed = True
    was_locked, room.locked = room.locked, False
    out: Out = []
    if not was_locked and old != config:
        codes = {104}
        if old.non_anonymous != config.non_anonymous:
            codes.add(172 if config.non_anonymous else 173)
        if old.logging != config.logging:
            codes.add(170 if config.logging else 171)
        for occupant in room.occupants.values():
            out += [status_message(room.name, session.full, codes) for session in occupant.sessions]
    if config.members_only and not old.members_only:
        for occupant in list(room.occupants.values()):
            if occupant.affiliation < Affiliation.MEMBER:
                out += room.remove(occupant, {322})
    return out


def destroy_room(room: Room, request: domish.Element | None) -> Out:
    """§10.9: every occupant gets its own unavailable presence naming the alternate venue."""
    notice = domish.Element((NS_USER, "destroy"))
    if request is not None:
        venue = request.getAttribute("jid")
        if venue is not None:
            try:
                notice["jid"] = JID.parse(venue).full
            except InvalidJID as e:
                raise StanzaError("jid-malformed", text=str(e)) from None
        reason = text_of(request, "reason")
        if reason:
            notice.addElement("reason", content=reason)
    out: Out = []
    for occupant in room.occupants.values():
        out += [room.presence_of(occupant, occupant, session.full, unavailable=True, extra=[notice])
                for session in occupant.sessions]
    room.occupants.clear()
    room.sessions.clear()
    room.destroyed = room.changed = True
    return out

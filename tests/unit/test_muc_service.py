"""The MUC service: creation policy, discovery, room lifetime, persistence documents, shutdown."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tests.unit.muc_helpers import ROOM, SERVICE, Muc, codes, condition, muc_item, to, xml
from unirtc.muc.model import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_USER, Affiliation
from unirtc.muc.service import MucService
from unirtc.xmpp.jid import JID

JOE, ROLAND = "joe@falcot.com/laptop", "roland@falcot.com/desk"


class CreationTests(SynchronousTestCase):
    def test_policies(self) -> None:
        """
        If room creation is limited to local users, a remote user gets not-allowed and a local
        one creates the room; limited to admins, only a server admin may.
        """
        muc = Muc(creation="local")
        self.assertEqual(condition(muc.join("eve@example.org/x", "Eve")[0]), "not-allowed")
        self.assertEqual(codes(muc.join(JOE, "Joe")[0]), {110, 201})
        muc = Muc(creation="admins")
        self.assertEqual(condition(muc.join(JOE, "Joe")[0]), "not-allowed")
        self.assertEqual(codes(muc.join("admin@falcot.com/x", "Boss")[0]), {110, 201})

    def test_remoteUsersMayJoinExistingRooms(self) -> None:
        """
        If a remote user enters a room a local user created, it joins like anyone else: only
        creation is restricted, and the remote occupant is addressed by its own JID.
        """
        muc = Muc(creation="local")
        muc.instant_room(JOE, "Joe")
        out = muc.join("eve@example.org/x", "Eve")
        self.assertEqual(muc_item(to(out, JOE)[0])["jid"], "eve@example.org/x")
        self.assertEqual(len(muc.say("eve@example.org/x", "hi from afar")), 2)

    def test_unknownPolicyRefused(self) -> None:
        """
        If the service is built with an unknown creation policy, it raises ValueError.
        """
        self.assertRaises(ValueError, MucService, SERVICE, creation="everybody")

    def test_stanzasToMissingRooms(self) -> None:
        """
        If a message or IQ goes to a room that does not exist, it is item-not-found; an
        unavailable presence or an error is dropped, and no room is created by them.
        """
        muc = Muc()
        self.assertEqual(condition(muc.say(JOE, "anyone?")[0]), "item-not-found")
        self.assertEqual(condition(muc.iq(JOE, f"<query xmlns='{NS_DISCO_INFO}'/>")[0]), "item-not-found")
        self.assertEqual(muc.leave(JOE, "Joe"), [])
        self.assertEqual(muc.send(f"<message type='error' from='{JOE}' to='{ROOM}'/>"), [])
        self.assertEqual(muc.service.rooms, {})

    def test_addressesTheRouterWouldNotPass(self) -> None:
        """
        If a stanza has no valid 'from', nothing is sent back; if its 'to' is malformed, it is
        jid-malformed.
        """
        muc = Muc()
        self.assertEqual(muc.send(f"<presence to='{ROOM}/Joe'/>"), [])
        self.assertEqual(muc.send(f"<presence from='@@' to='{ROOM}/Joe'/>"), [])
        (error,) = muc.send(f"<message from='{JOE}' to='a@@b'><body>x</body></message>")
        self.assertEqual(condition(error), "jid-malformed")


class DiscoTests(SynchronousTestCase):
    def test_serviceInfoAndItems(self) -> None:
        """
        If a user asks the service for disco#info it gets the conference identity and the MUC
        feature; disco#items lists public, configured rooms and not hidden or locked ones.
        """
        muc = Muc()
        (info,) = muc.iq(JOE, f"<query xmlns='{NS_DISCO_INFO}'/>", to=SERVICE)
        query = next(info.elements(NS_DISCO_INFO, "query"))
        self.assertEqual(next(query.elements(NS_DISCO_INFO, "identity"))["category"], "conference")
        self.assertIn("http://jabber.org/protocol/muc", {f["var"] for f in query.elements(NS_DISCO_INFO, "feature")})
        muc.instant_room(JOE, "Joe")
        muc.configure(JOE, {"muc#roomconfig_roomname": "Operations"})
        muc.instant_room(JOE, "Joe", room=f"secret@{SERVICE}")
        muc.configure(JOE, {"muc#roomconfig_publicroom": "0"}, room=f"secret@{SERVICE}")
        muc.join(ROLAND, "R", room=f"locked@{SERVICE}")
        (items,) = muc.iq(JOE, f"<query xmlns='{NS_DISCO_ITEMS}'/>", to=SERVICE)
        listed = [(i["jid"], i["name"]) for i in next(items.elements(NS_DISCO_ITEMS, "query")).elements()]
        self.assertEqual(listed, [(ROOM, "Operations")])

    def test_otherServiceStanzas(self) -> None:
        """
        If the service gets a ping it answers; an unknown IQ or a chat message is
        service-unavailable; presence to the service is ignored.
        """
        muc = Muc()
        self.assertEqual(muc.iq(JOE, "<ping xmlns='urn:xmpp:ping'/>", to=SERVICE)[0]["type"], "result")
        self.assertEqual(condition(muc.iq(JOE, "<query xmlns='jabber:iq:register'/>", to=SERVICE)[0]),
                         "service-unavailable")
        self.assertEqual(condition(muc.send(f"<message from='{JOE}' to='{SERVICE}'><body>x</body></message>")[0]),
                         "service-unavailable")
        self.assertEqual(muc.send(f"<presence from='{JOE}' to='{SERVICE}'/>"), [])


class LifetimeTests(SynchronousTestCase):
    def test_temporaryRoomGoesWhenEmpty(self) -> None:
        """
        If the last occupant leaves a temporary room, the room is gone: entering again creates
        a new, locked room.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.say(JOE, "remember me")
        muc.leave(JOE, "Joe")
        self.assertEqual(muc.service.rooms, {})
        self.assertIn(201, codes(muc.join(ROLAND, "Roland")[0]))

    def test_persistentRoomStaysWithHistory(self) -> None:
        """
        If the last occupant leaves a persistent room, the room stays, with its history.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.configure(JOE, {"muc#roomconfig_persistentroom": "1"})
        muc.say(JOE, "remember me")
        muc.leave(JOE, "Joe")
        out = to(muc.join(ROLAND, "Roland"), ROLAND)
        self.assertNotIn(201, codes(out[0]))
        self.assertEqual(str(next(out[1].elements(out[1].uri, "body"))), "remember me")

    def test_unconfiguredRoomGoesWhenOwnerLeaves(self) -> None:
        """
        If the creator leaves a room it never configured, the room goes.
        """
        muc = Muc()
        muc.join(JOE, "Joe")
        muc.leave(JOE, "Joe")
        self.assertEqual(muc.service.rooms, {})

    def test_shutdownSays332(self) -> None:
        """
        If the service shuts down, every occupant gets unavailable with 332 (and 110).
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.join(ROLAND, "Roland")
        out = muc.service.shutdown()
        self.assertEqual(sorted((e["to"], frozenset(codes(e))) for e in out),
                         sorted([(JOE, frozenset({110, 332})), (ROLAND, frozenset({110, 332}))]))

    def test_sessionEndedInEveryRoom(self) -> None:
        """
        If a session ends, it leaves every room it was in, and empty temporary rooms go.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.instant_room(JOE, "Joe", room=f"two@{SERVICE}")
        muc.join(ROLAND, "Roland")
        out = muc.service.session_ended(JID.parse(JOE))
        self.assertEqual([(e["to"], e["type"]) for e in out], [(ROLAND, "unavailable")])
        self.assertEqual(list(muc.service.rooms), [JID.parse(ROOM)])


class PersistenceTests(SynchronousTestCase):
    def test_changesOfPersistentRooms(self) -> None:
        """
        If a room is made persistent, its document (config, affiliations, subject) is handed
        out; later changes hand out a new one; making it temporary and leaving deletes it.
        Temporary rooms never produce documents.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        self.assertEqual(muc.service.take_changes(), {})
        muc.configure(JOE, {"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Ops"})
        document = muc.service.take_changes()["ops"]
        self.assertEqual((document["config"]["name"], document["affiliations"]), ("Ops", {"joe@falcot.com": "owner"}))
        json.dumps(document)  # storable as JSON
        muc.send(f"<message type='groupchat' from='{JOE}' to='{ROOM}'><subject>Status</subject></message>")
        self.assertEqual(muc.service.take_changes()["ops"]["subject"], "Status")
        muc.say(JOE, "plain messages do not touch storage")
        self.assertEqual(muc.service.take_changes(), {})
        muc.configure(JOE, {"muc#roomconfig_persistentroom": "0"})
        self.assertEqual(muc.service.take_changes(), {"ops": None})

    def test_destroyDeletes(self) -> None:
        """
        If a stored room is destroyed, its document is deleted.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.configure(JOE, {"muc#roomconfig_persistentroom": "1"})
        muc.service.take_changes()
        muc.iq(JOE, "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>", "set")
        self.assertEqual(muc.service.take_changes(), {"ops": None})

    def test_restoreRoundTrip(self) -> None:
        """
        If a document is restored into a new service (a restart), the room exists with its
        configuration, affiliations and subject, unlocked, and its owner is recognised.
        """
        muc = Muc()
        muc.instant_room(JOE, "Joe")
        muc.configure(JOE, {"muc#roomconfig_persistentroom": "1", "muc#roomconfig_membersonly": "1"})
        muc.iq(JOE, "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                    "<item jid='roland@falcot.com' affiliation='member'/></query>", "set")
        muc.send(f"<message type='groupchat' from='{JOE}' to='{ROOM}'><subject>Kept</subject></message>")
        document = json.loads(json.dumps(muc.service.take_changes()["ops"]))
        restarted = Muc()
        room = restarted.service.restore("ops", document)
        self.assertFalse(room.locked)
        self.assertEqual(room.affiliations[JID.parse("roland@falcot.com")], Affiliation.MEMBER)
        self.assertEqual(condition(restarted.join("eve@falcot.com/1", "Eve")[0]), "registration-required")
        out = to(restarted.join(ROLAND, "Roland"), ROLAND)
        self.assertEqual(str(next(out[-1].elements(out[-1].uri, "subject"))), "Kept")
        self.assertEqual(muc_item(to(restarted.join(JOE, "Joe"), JOE)[-2])["affiliation"], "owner")

    def test_restoreRejectsGarbage(self) -> None:
        """
        If a stored document is not a room document or the name is not a valid localpart,
        restore raises ValueError; bad affiliations and mistyped config values are skipped.
        """
        service = Muc().service
        for name, document in (("ops", None), ("ops", {"config": 3}), ("a@b", {"config": {}})):
            self.assertRaises(ValueError, service.restore, name, document)
        room = service.restore("ok", {"config": {"max_users": "many", "name": "Fine"},
                                      "affiliations": {"@@": "owner", "x@y": "pope", "z@y": "member"},
                                      "subject": 7})
        self.assertEqual((room.config.max_users, room.config.name, room.subject), (0, "Fine", ""))
        self.assertEqual(room.affiliations, {JID.parse("z@y"): Affiliation.MEMBER})


_names = st.sampled_from(["presence", "message", "iq"])
_types = st.sampled_from([None, "get", "set", "result", "error", "groupchat", "chat", "unavailable", "probe"])
_children = st.lists(st.sampled_from([
    ("http://jabber.org/protocol/muc", "x"), (NS_USER, "x"), ("http://jabber.org/protocol/muc#admin", "query"),
    ("http://jabber.org/protocol/muc#owner", "query"), ("jabber:client", "body"), ("jabber:client", "subject"),
    ("urn:xmpp:ping", "ping"), (NS_DISCO_INFO, "query"), ("jabber:x:data", "x")]), max_size=3)
_grandchildren = st.lists(st.sampled_from(["item", "invite", "decline", "destroy", "history", "password",
                                            "field", "value", "reason"]), max_size=3)
_attrs = st.dictionaries(st.sampled_from(["nick", "role", "affiliation", "jid", "to", "type", "maxstanzas",
                                          "since", "var"]),
                         st.sampled_from(["", "none", "owner", "moderator", "x@y", "@@", "Joe", "1", "-1", "submit"]),
                         max_size=3)


@settings(max_examples=120, deadline=None)
@given(_names, _types, st.sampled_from(["", "/Joe", "/Roland", "/"]), _children, _grandchildren, _attrs)
def test_handleNeverRaisesAndRoomSurvives(name, kind, nick, children, grandchildren, attrs) -> None:
    """
    Whatever MUC-shaped stanza an occupant sends, the service answers with stanzas (never an
    exception) and the room still reflects a normal message afterwards.
    """
    muc = Muc()
    muc.instant_room(JOE, "Joe")
    muc.join(ROLAND, "Roland")
    element = domish.Element(("jabber:client", name))
    element["from"], element["to"], element["id"] = ROLAND, ROOM + nick if nick != "/" else ROOM, "h"
    if kind:
        element["type"] = kind
    for uri, child_name in children:
        child = element.addElement((uri, child_name))
        for grandchild in grandchildren:
            node = child.addElement(grandchild)
            for key, value in attrs.items():
                node[key] = value
    out = muc.service.handle(element, muc.now)
    assert all(isinstance(e, domish.Element) for e in out)
    sent = muc.service.handle(xml(f"<message type='groupchat' from='{JOE}' to='{ROOM}'><body>ok</body></message>"),
                              muc.now)
    assert len(sent) >= 1 and all(e.getAttribute("type") != "error" for e in sent)


_kinds = st.sampled_from([("http://jabber.org/protocol/muc#admin", "query", "item"),
                          ("http://jabber.org/protocol/muc#owner", "query", "destroy"),
                          ("http://jabber.org/protocol/muc#owner", "query", "x"),
                          ("http://jabber.org/protocol/muc", "x", "history"),
                          (NS_USER, "x", "invite"), (NS_USER, "x", "decline"),
                          ("jabber:x:data", "x", "field")])


@settings(max_examples=120, deadline=None)
@given(_names, _types, _kinds, st.dictionaries(st.sampled_from(["nick", "role", "affiliation", "jid", "to",
                                                                "type", "var", "maxchars", "since", "seconds"]),
                                               st.text(max_size=12), max_size=4),
       st.text(max_size=20), st.booleans())
def test_ownerStanzasWithAnyTextNeverRaise(name, kind, shape, attrs, text, to_occupant) -> None:
    """
    Whatever text an owner's MUC payload carries in its attributes and content, the service
    answers with stanzas and raises nothing.
    """
    muc = Muc()
    muc.instant_room(JOE, "Joe")
    muc.join(ROLAND, "Roland")
    uri, outer, inner = shape
    element = domish.Element(("jabber:client", name))
    element["from"], element["to"], element["id"] = JOE, f"{ROOM}/Roland" if to_occupant else ROOM, "h"
    if kind:
        element["type"] = kind
    child = element.addElement((uri, outer)).addElement(inner)
    if inner == "x":
        child["type"] = attrs.get("type", "submit")
        child = child.addElement("field")
    for key, value in attrs.items():
        child[key] = value
    child.addElement("value", content=text)
    child.addElement("reason", content=text)
    out = muc.service.handle(element, muc.now)
    assert all(isinstance(e, domish.Element) for e in out)

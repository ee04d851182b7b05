"""Moderation (muc#admin), configuration and destruction (muc#owner), room disco."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.muc_helpers import ROOM, Muc, codes, condition, muc_item, to
from unirtc.muc.model import NS_ADMIN, NS_DATA, NS_DISCO_INFO, NS_OWNER, NS_USER
from unirtc.xmpp.jid import JID

JOE, ROLAND, ANN, KEITH = ("joe@falcot.com/laptop", "roland@falcot.com/desk", "ann@falcot.com/phone",
                           "keith@falcot.com/pc")


def admin(items: str) -> str:
    return f"<query xmlns='{NS_ADMIN}'>{items}</query>"


class ModerationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")
        self.muc.join(ROLAND, "Roland")
        self.muc.join(ANN, "Ann")
        self.room = self.muc.service.rooms[JID.parse(ROOM)]

    def set(self, who: str, items: str):
        return self.muc.iq(who, admin(items), "set")

    def test_kick(self) -> None:
        """
        If a moderator kicks an occupant, the occupant gets unavailable with 307, 110, the actor
        and the reason; the others get it with 307; the moderator gets a result.
        """
        out = self.set(JOE, "<item nick='Roland' role='none'><reason>spam</reason></item>")
        (own,) = to(out, ROLAND)
        self.assertEqual((own["type"], codes(own)), ("unavailable", {110, 307}))
        entry = muc_item(own)
        self.assertEqual((next(entry.elements(NS_USER, "actor"))["nick"], str(next(entry.elements(NS_USER, "reason")))),
                         ("Joe", "spam"))
        self.assertEqual(codes(to(out, ANN)[0]), {307})
        self.assertEqual(to(out, JOE)[-1]["type"], "result")
        self.assertNotIn("roland", self.room.occupants)

    def test_participantsCannotKickAndNobodyKicksTheOwner(self) -> None:
        """
        If a participant tries to kick, it is forbidden; if a moderator who is not an owner
        tries to kick an owner, it is not-allowed; an unknown nick is item-not-found.
        """
        self.assertEqual(condition(self.set(ROLAND, "<item nick='Ann' role='none'/>")[0]), "forbidden")
        self.set(JOE, "<item jid='ann@falcot.com' affiliation='admin'/>")
        self.assertEqual(condition(self.set(ANN, "<item nick='Joe' role='none'/>")[0]), "not-allowed")
        self.assertEqual(condition(self.set(JOE, "<item nick='Nobody' role='none'/>")[0]), "item-not-found")

    def test_ban(self) -> None:
        """
        If an admin bans a present user by JID, the user is removed with 301 and cannot come
        back; the outcast list shows the JID.
        """
        out = self.set(JOE, "<item jid='roland@falcot.com' affiliation='outcast'><reason>bye</reason></item>")
        self.assertEqual(codes(to(out, ROLAND)[0]), {110, 301})
        self.assertEqual(codes(to(out, ANN)[0]), {301})
        self.assertEqual(condition(self.muc.join(ROLAND, "Roland")[0]), "forbidden")
        (result,) = self.muc.iq(JOE, admin("<item affiliation='outcast'/>"))
        items = list(next(result.elements(NS_ADMIN, "query")).elements(NS_ADMIN, "item"))
        self.assertEqual([(i["jid"], i["affiliation"]) for i in items], [("roland@falcot.com", "outcast")])

    def test_voiceAndModerator(self) -> None:
        """
        If a moderator revokes a participant's voice it becomes a visitor; only an admin or
        owner grants moderator, and a new moderator of a semi-anonymous room then receives
        every occupant's presence with real JIDs.
        """
        out = self.set(JOE, "<item nick='Ann' role='visitor'/>")
        self.assertEqual(muc_item(to(out, ROLAND)[0])["role"], "visitor")
        out = self.set(JOE, "<item nick='Roland' role='moderator'/>")
        jids = {muc_item(e).getAttribute("jid") for e in to(out, ROLAND)[1:] if e.name == "presence"}
        self.assertEqual(jids, {JOE, ANN})
        self.assertEqual(condition(self.set(ROLAND, "<item nick='Ann' role='moderator'/>")[0]), "forbidden")

    def test_roleListsForModeratorsOnly(self) -> None:
        """
        If a moderator asks for the participant list it gets the nicks; a participant asking
        gets forbidden.
        """
        (result,) = self.muc.iq(JOE, admin("<item role='participant'/>"))
        nicks = sorted(i["nick"] for i in next(result.elements(NS_ADMIN, "query")).elements(NS_ADMIN, "item"))
        self.assertEqual(nicks, ["Ann", "Roland"])
        self.assertEqual(condition(self.muc.iq(ROLAND, admin("<item role='participant'/>"))[0]), "forbidden")

    def test_affiliationRules(self) -> None:
        """
        If an admin tries to make someone an owner it is forbidden, and to demote an owner it is
        not-allowed; a member cannot change affiliations at all.
        """
        self.set(JOE, "<item jid='ann@falcot.com' affiliation='admin'/>")
        self.assertEqual(condition(self.set(ANN, "<item jid='x@falcot.com' affiliation='owner'/>")[0]), "forbidden")
        self.assertEqual(condition(self.set(ANN, "<item jid='joe@falcot.com' affiliation='none'/>")[0]), "not-allowed")
        self.set(JOE, "<item jid='roland@falcot.com' affiliation='member'/>")
        self.assertEqual(condition(self.set(ROLAND, "<item jid='x@falcot.com' affiliation='member'/>")[0]), "forbidden")

    def test_lastOwnerStays(self) -> None:
        """
        If the only owner would lose ownership, the change is a conflict and nothing changes;
        with a second owner it goes through.
        """
        self.assertEqual(condition(self.set(JOE, "<item jid='joe@falcot.com' affiliation='admin'/>")[0]), "conflict")
        self.set(JOE, "<item jid='ann@falcot.com' affiliation='owner'/>")
        out = self.set(JOE, "<item jid='joe@falcot.com' affiliation='admin'/>")
        self.assertEqual(out[-1]["type"], "result")

    def test_partlyRefusedListChangesNothing(self) -> None:
        """
        If one item of a list is refused, the other items are not applied either.
        """
        out = self.set(JOE, "<item jid='keith@falcot.com' affiliation='member'/><item nick='Nobody' role='none'/>")
        self.assertEqual(condition(out[0]), "item-not-found")
        self.assertNotIn(JID.parse("keith@falcot.com"), self.room.affiliations)

    def test_malformedAdminItems(self) -> None:
        """
        If admin items are missing, carry both or neither of role and affiliation, name unknown
        values or malformed JIDs, the answer is bad-request or jid-malformed; the room works on.
        """
        cases = [("", "bad-request"), ("<item nick='Ann'/>", "bad-request"),
                 ("<item nick='Ann' role='none' affiliation='none'/>", "bad-request"),
                 ("<item nick='Ann' role='king'/>", "bad-request"),
                 ("<item jid='a@b' affiliation='emperor'/>", "bad-request"),
                 ("<item role='none'/>", "bad-request"),
                 ("<item jid='@@' affiliation='member'/>", "jid-malformed"),
                 ("<item affiliation='member'/>", "bad-request"),
                 ("<item jid='a@b' affiliation='member'/>" * 101, "bad-request")]
        for items, expected in cases:
            self.assertEqual(condition(self.set(JOE, items)[0]), expected, items)
        self.assertEqual(condition(self.muc.iq(JOE, admin("<item/>"))[0]), "bad-request")
        self.assertEqual(len(self.muc.say(ROLAND, "still works")), 3)

    def test_memberRemovedFromMembersOnlyRoom(self) -> None:
        """
        If a members-only room's admin takes a present member's membership away, the member is
        removed with 321.
        """
        self.set(JOE, "<item jid='roland@falcot.com' affiliation='member'/><item jid='ann@falcot.com' affiliation='member'/>")
        self.muc.configure(JOE, {"muc#roomconfig_membersonly": "1"})
        out = self.set(JOE, "<item jid='roland@falcot.com' affiliation='none'/>")
        self.assertEqual(codes(to(out, ROLAND)[0]), {110, 321})

    def test_becomingMembersOnlyRemovesNonMembers(self) -> None:
        """
        If a room becomes members-only, present non-members are removed with 322.
        """
        self.set(JOE, "<item jid='ann@falcot.com' affiliation='member'/>")
        out = self.muc.configure(JOE, {"muc#roomconfig_membersonly": "1"})
        self.assertEqual(codes([e for e in to(out, ROLAND) if e.name == "presence"][0]), {110, 322})
        self.assertEqual(sorted(self.room.occupants), ["ann", "joe"])


class OwnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.join(JOE, "Joe")
        self.room = self.muc.service.rooms[JID.parse(ROOM)]

    def test_configFormAndReservedRoom(self) -> None:
        """
        If the owner of a new room asks for the configuration form, it gets muc#roomconfig
        fields; submitting it unlocks the room with the values applied.
        """
        (result,) = self.muc.iq(JOE, f"<query xmlns='{NS_OWNER}'/>")
        x = next(next(result.elements(NS_OWNER, "query")).elements(NS_DATA, "x"))
        variables = [f["var"] for f in x.elements(NS_DATA, "field")]
        self.assertIn("muc#roomconfig_roomname", variables)
        self.assertIn("muc#roomconfig_whois", variables)
        self.assertTrue(self.room.locked)
        self.muc.configure(JOE, {"muc#roomconfig_roomname": "Operations", "muc#roomconfig_persistentroom": "1"})
        self.assertFalse(self.room.locked)
        self.assertEqual((self.room.config.name, self.room.config.persistent), ("Operations", True))

    def test_onlyOwnersConfigure(self) -> None:
        """
        If a non-owner asks for or submits the configuration, it is forbidden.
        """
        self.muc.configure(JOE, {})
        self.muc.join(ROLAND, "Roland")
        self.assertEqual(condition(self.muc.iq(ROLAND, f"<query xmlns='{NS_OWNER}'/>")[0]), "forbidden")
        self.assertEqual(condition(self.muc.configure(ROLAND, {"muc#roomconfig_roomname": "mine"})[0]), "forbidden")

    def test_badValuesLeaveConfigUnchanged(self) -> None:
        """
        If a submission has a bad value, the answer is bad-request and nothing changes.
        """
        self.muc.configure(JOE, {})
        for fields in ({"muc#roomconfig_persistentroom": "maybe"}, {"muc#roomconfig_maxusers": "100000"},
                       {"muc#roomconfig_whois": "everyone"}, {"FORM_TYPE": "urn:other"},
                       {"muc#roomconfig_roomname": "x" * 2000}):
            out = self.muc.configure(JOE, {"muc#roomconfig_roomname": "changed", **fields})
            self.assertEqual(condition(out[0]), "bad-request", fields)
            self.assertEqual(self.room.config.name, "")
        self.assertEqual(condition(self.muc.iq(JOE, f"<query xmlns='{NS_OWNER}'/>", "set")[0]), "bad-request")

    def test_configChangeStatusCodes(self) -> None:
        """
        If the configuration of an unlocked room changes, occupants get 104, plus 172 when it
        becomes non-anonymous and 170 when it is logged.
        """
        self.muc.configure(JOE, {})
        out = self.muc.configure(JOE, {"muc#roomconfig_whois": "anyone", "muc#roomconfig_enablelogging": "1"})
        self.assertEqual(codes(out[0]), {104, 170, 172})
        self.assertIn(170, codes(to(self.muc.join(ROLAND, "R"), ROLAND)[-2]))

    def test_cancelNewRoomDestroysIt(self) -> None:
        """
        If the owner cancels the first configuration, the room is destroyed.
        """
        out = self.muc.iq(JOE, f"<query xmlns='{NS_OWNER}'><x xmlns='{NS_DATA}' type='cancel'/></query>", "set")
        self.assertEqual([e.getAttribute("type") for e in out], ["unavailable", "result"])
        self.assertNotIn(JID.parse(ROOM), self.muc.service.rooms)

    def test_destroyWithAlternateVenue(self) -> None:
        """
        If the owner destroys the room, each occupant gets unavailable with the destroy notice
        naming the alternate venue and reason, and the room is gone.
        """
        self.muc.configure(JOE, {})
        self.muc.join(ROLAND, "Roland")
        out = self.muc.iq(JOE, f"<query xmlns='{NS_OWNER}'><destroy jid='new@conference.falcot.com'>"
                               "<reason>moved</reason></destroy></query>", "set")
        (notice,) = to(out, ROLAND)
        destroy = next(next(notice.elements(NS_USER, "x")).elements(NS_USER, "destroy"))
        self.assertEqual((notice["type"], destroy["jid"]), ("unavailable", "new@conference.falcot.com"))
        self.assertEqual(str(next(destroy.elements(NS_USER, "reason"))), "moved")
        self.assertNotIn(JID.parse(ROOM), self.muc.service.rooms)
        self.assertEqual(condition(self.muc.say(ROLAND, "hello?")[0]), "item-not-found")

    def test_roomDisco(self) -> None:
        """
        If anyone asks the room for disco#info, it gets the conference identity, the features
        describing its configuration and the roominfo form with the occupant count.
        """
        self.muc.configure(JOE, {"muc#roomconfig_roomname": "Ops", "muc#roomconfig_membersonly": "1",
                                 "muc#roomconfig_persistentroom": "1"})
        (result,) = self.muc.iq(KEITH, f"<query xmlns='{NS_DISCO_INFO}'/>")
        query = next(result.elements(NS_DISCO_INFO, "query"))
        identity = next(query.elements(NS_DISCO_INFO, "identity"))
        self.assertEqual((identity["category"], identity["type"], identity["name"]), ("conference", "text", "Ops"))
        found = {f["var"] for f in query.elements(NS_DISCO_INFO, "feature")}
        self.assertTrue({"muc_membersonly", "muc_persistent", "muc_semianonymous", "muc_unsecured",
                         "http://jabber.org/protocol/muc"} <= found)
        form = next(query.elements(NS_DATA, "x"))
        values = {f["var"]: str(next(f.elements(NS_DATA, "value"))) for f in form.elements(NS_DATA, "field")}
        self.assertEqual(values["muc#roominfo_occupants"], "1")
        (result,) = self.muc.iq(KEITH, f"<query xmlns='{NS_DISCO_INFO}' node='x-roomuser-item'/>")
        self.assertEqual(list(next(result.elements(NS_DISCO_INFO, "query")).elements()), [])
        self.assertEqual(condition(self.muc.iq(KEITH, f"<query xmlns='{NS_DISCO_INFO}' node='other'/>")[0]),
                         "item-not-found")


class VoiceRequestTests(SynchronousTestCase):
    REQUEST = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
               "<value>http://jabber.org/protocol/muc#request</value></field>"
               "<field var='muc#role'><value>participant</value></field></x>")

    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")
        self.muc.configure(JOE, {"muc#roomconfig_moderatedroom": "1"})
        self.muc.join(ROLAND, "Roland")

    def test_requestReachesModeratorsAndApprovalGrantsVoice(self) -> None:
        """
        If a visitor asks for voice, each moderator gets an approval form naming it; when a
        moderator submits the form allowing it, the visitor becomes a participant.
        """
        (request,) = self.muc.send(f"<message from='{ROLAND}' to='{ROOM}'>{self.REQUEST}</message>")
        self.assertEqual(request["to"], JOE)
        form = next(request.elements(NS_DATA, "x"))
        values = {f["var"]: str(next(f.elements(NS_DATA, "value"))) for f in form.elements(NS_DATA, "field")}
        self.assertEqual((values["muc#roomnick"], values["muc#jid"], values["muc#request_allow"]),
                         ("Roland", ROLAND, "false"))
        approval = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                    "<value>http://jabber.org/protocol/muc#request</value></field>"
                    "<field var='muc#roomnick'><value>Roland</value></field>"
                    "<field var='muc#request_allow'><value>true</value></field></x>")
        out = self.muc.send(f"<message from='{JOE}' to='{ROOM}'>{approval}</message>")
        self.assertEqual(muc_item(to(out, ROLAND)[0])["role"], "participant")
        self.assertEqual(len(self.muc.say(ROLAND, "thanks")), 2)

    def test_refusedAndMalformedRequests(self) -> None:
        """
        If a participant (not a visitor) approves, it is forbidden; a request with another
        FORM_TYPE, or an approval naming two nicks, is bad-request; a participant asking for
        voice it has reaches nobody.
        """
        (request,) = self.muc.send(f"<message from='{ROLAND}' to='{ROOM}'>{self.REQUEST}</message>")
        allow = self.REQUEST.replace("muc#role'><value>participant", "muc#request_allow'><value>1")
        self.assertEqual(condition(self.muc.send(f"<message from='{ROLAND}' to='{ROOM}'>{allow}</message>")[0]),
                         "forbidden")
        other = self.REQUEST.replace("muc#request", "muc#other")
        self.assertEqual(condition(self.muc.send(f"<message from='{ROLAND}' to='{ROOM}'>{other}</message>")[0]),
                         "bad-request")
        self.assertEqual(self.muc.send(f"<message from='{JOE}' to='{ROOM}'>{self.REQUEST}</message>"), [])
        twice = allow.replace("</x>", "<field var='muc#roomnick'><value>a</value><value>b</value></field></x>")
        self.assertEqual(condition(self.muc.send(f"<message from='{JOE}' to='{ROOM}'>{twice}</message>")[0]),
                         "bad-request")

"""A room's state machine (XEP-0045 §7): entering, presence, nick changes, leaving, messages."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.muc_helpers import ROOM, Muc, codes, condition, muc_item, to
from unirtc.muc.model import NS_DELAY, NS_MUC, NS_SID, NS_USER, Affiliation, Role, default_role
from unirtc.xmpp.jid import JID

JOE, ROLAND, ANN = "joe@falcot.com/laptop", "roland@falcot.com/desk", "ann@falcot.com/phone"


class EnterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")

    def test_newRoomIsLockedWithStatus201(self) -> None:
        """
        If someone enters a room that does not exist, it is created with them as owner and
        moderator, the self-presence carries 110 and 201, a subject follows, and nobody else
        can enter (item-not-found) until the owner configures it.
        """
        out = self.muc.join(ANN, "Ann", room=f"new@{ROOM.split('@')[1]}")
        presence, subject = out
        self.assertEqual(codes(presence), {110, 201})
        self.assertEqual((muc_item(presence)["affiliation"], muc_item(presence)["role"]), ("owner", "moderator"))
        self.assertEqual((subject.name, subject["type"], str(next(subject.elements(subject.uri, "subject")))),
                         ("message", "groupchat", ""))
        refused = self.muc.join(ROLAND, "Roland", room=f"new@{ROOM.split('@')[1]}")
        self.assertEqual(condition(refused[0]), "item-not-found")
        self.assertIsNotNone(next(refused[0].elements(NS_MUC, "x"), None))

    def test_enterSendsOthersSelfHistoryAndSubjectInOrder(self) -> None:
        """
        If a user enters an existing room, they get the present occupants' presence, then their
        own (110, from the occupant JID), then history with a delay, then the subject; the
        others get the newcomer's presence.
        """
        self.muc.say(JOE, "before you came")
        out = self.muc.join(ROLAND, "Roland")
        mine = to(out, ROLAND)
        self.assertEqual([e.name for e in mine], ["presence", "presence", "message", "message"])
        self.assertEqual(mine[0]["from"], f"{ROOM}/Joe")
        self.assertEqual((mine[1]["from"], codes(mine[1])), (f"{ROOM}/Roland", {110}))
        self.assertIsNotNone(next(mine[2].elements(NS_DELAY, "delay"), None))
        self.assertIsNotNone(next(mine[3].elements(mine[3].uri, "subject"), None))
        (seen,) = to(out, JOE)
        self.assertEqual((seen["from"], muc_item(seen)["role"]), (f"{ROOM}/Roland", "participant"))

    def test_semiAnonymousShowsRealJidsToModeratorsOnly(self) -> None:
        """
        If a room is semi-anonymous (the default), moderators see a newcomer's real JID and
        participants do not; the newcomer's own presence has no status 100.
        """
        self.muc.join(ROLAND, "Roland")
        out = self.muc.join(ANN, "Ann")
        self.assertEqual(muc_item(to(out, JOE)[0]).getAttribute("jid"), ANN)
        self.assertIsNone(muc_item(to(out, ROLAND)[0]).getAttribute("jid"))
        self.assertNotIn(100, codes(to(out, ANN)[-2]))

    def test_nonAnonymousShowsJidsToAllWithStatus100(self) -> None:
        """
        If the owner makes the room non-anonymous, everyone sees real JIDs and newcomers get
        status 100 in their self-presence.
        """
        self.muc.configure(JOE, {"muc#roomconfig_whois": "anyone"})
        self.muc.join(ROLAND, "Roland")
        out = self.muc.join(ANN, "Ann")
        self.assertEqual(muc_item(to(out, ROLAND)[0])["jid"], ANN)
        self.assertIn(100, codes(to(out, ANN)[-2]))

    def test_nickConflict(self) -> None:
        """
        If a second user asks for a nickname in use (compared per RFC 8266: case and width
        folded), the answer is a conflict error from that occupant JID, with <x xmlns='muc'/>.
        """
        self.muc.join(ROLAND, "Roland")
        for nick in ("roland", "ＲＯＬＡＮＤ"):
            (error,) = self.muc.join(ANN, nick)
            self.assertEqual((error.name, condition(error)), ("presence", "conflict"))
            self.assertIsNotNone(next(error.elements(NS_MUC, "x"), None))

    def test_nickModifiedGetsStatus210(self) -> None:
        """
        If a nickname changes under the Nickname profile (a Roman numeral becomes letters),
        the occupant is shown under the enforced form and told so with status 210.
        """
        out = self.muc.join(ROLAND, "Henry Ⅸ")
        own = to(out, ROLAND)[-2]
        self.assertEqual((own["from"], codes(own)), (f"{ROOM}/Henry IX", {110, 210}))

    def test_invalidNicknamesAreJidMalformed(self) -> None:
        """
        If the occupant JID has no nickname, or one RFC 8266 forbids, the room answers
        jid-malformed and keeps working.
        """
        (error,) = self.muc.send(f"<presence from='{ANN}' to='{ROOM}'><x xmlns='{NS_MUC}'/></presence>")
        self.assertEqual(condition(error), "jid-malformed")
        (error,) = self.muc.join(ANN, "B\u200bob")
        self.assertEqual(condition(error), "jid-malformed")
        self.assertEqual(codes(to(self.muc.join(ANN, "Bob"), ANN)[-2]), {110})

    def test_passwordProtected(self) -> None:
        """
        If a room has a password, entering without it or with a wrong one is not-authorized;
        with it, the user enters.
        """
        self.muc.configure(JOE, {"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3"})
        self.assertEqual(condition(self.muc.join(ANN, "Ann")[0]), "not-authorized")
        self.assertEqual(condition(self.muc.join(ANN, "Ann", x="<password>nope</password>")[0]), "not-authorized")
        out = self.muc.join(ANN, "Ann", x="<password>s3</password>")
        self.assertIn(110, codes(to(out, ANN)[-2]))

    def test_membersOnlyRefusesNonMembers(self) -> None:
        """
        If a room is members-only, a non-member gets registration-required and a member enters.
        """
        self.muc.configure(JOE, {"muc#roomconfig_membersonly": "1"})
        self.assertEqual(condition(self.muc.join(ANN, "Ann")[0]), "registration-required")
        self.muc.iq(JOE, "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                         "<item jid='ann@falcot.com' affiliation='member'/></query>", "set")
        out = self.muc.join(ANN, "Ann")
        self.assertEqual(muc_item(to(out, ANN)[-2])["affiliation"], "member")

    def test_bannedIsForbidden(self) -> None:
        """
        If a user's bare JID (or its whole domain) is an outcast, entering is forbidden.
        """
        room = self.muc.service.rooms[JID.parse(ROOM)]
        room.affiliations[JID.parse("ann@falcot.com")] = Affiliation.OUTCAST
        self.assertEqual(condition(self.muc.join(ANN, "Ann")[0]), "forbidden")
        room.affiliations[JID.parse("evil.example")] = Affiliation.OUTCAST
        self.assertEqual(condition(self.muc.join("mallory@evil.example/x", "M")[0]), "forbidden")

    def test_maxOccupantsButOwnersGetIn(self) -> None:
        """
        If the room is full, a newcomer gets service-unavailable, but an owner still enters.
        """
        self.muc.configure(JOE, {"muc#roomconfig_maxusers": "2"})
        self.muc.join(ROLAND, "Roland")
        self.assertEqual(condition(self.muc.join(ANN, "Ann")[0]), "service-unavailable")
        self.assertIn(110, codes(to(self.muc.join("admin@falcot.com/x", "Admin"), "admin@falcot.com/x")[-2]))

    def test_historyLimits(self) -> None:
        """
        If a newcomer asks for maxstanzas, seconds or since, only the matching messages are sent;
        maxchars='0' means none; a malformed value is bad-request.
        """
        for n in range(5):
            self.muc.say(JOE, f"message {n}", id=f"m{n}")
            self.muc.now += 10
        bodies = lambda out, who: [str(next(e.elements(e.uri, "body"))) for e in to(out, who)  # noqa: E731
                                   if next(e.elements(NS_DELAY, "delay"), None) is not None]
        self.assertEqual(bodies(self.muc.join(ROLAND, "R1", x="<history maxstanzas='2'/>"), ROLAND),
                         ["message 3", "message 4"])
        self.assertEqual(bodies(self.muc.join(ANN, "A1", x="<history seconds='25'/>"), ANN),
                         ["message 3", "message 4"])
        since = "2023-11-14T22:13:35Z"  # between message 1 (…20) and message 2 (…40)
        self.assertEqual(bodies(self.muc.join("c@falcot.com/1", "C", x=f"<history since='{since}'/>"), "c@falcot.com/1"),
                         ["message 2", "message 3", "message 4"])
        self.assertEqual(bodies(self.muc.join("d@falcot.com/1", "D", x="<history maxchars='0'/>"), "d@falcot.com/1"), [])
        (error,) = self.muc.join("e@falcot.com/1", "E", x="<history maxstanzas='lots'/>")
        self.assertEqual(condition(error), "bad-request")

    def test_multipleClientsShareOneOccupant(self) -> None:
        """
        If a second client of the same account enters with the same nick, it joins the same
        occupant (no conflict); when one client leaves it alone gets unavailable and the others
        see the remaining client; the occupant leaves only when both clients have left.
        """
        self.muc.join(ROLAND, "Roland")
        out = self.muc.join("roland@falcot.com/phone", "Roland")
        self.assertIn(110, codes(to(out, "roland@falcot.com/phone")[-2]))
        out = self.muc.leave(ROLAND, "Roland")
        self.assertNotIn("unavailable", [e.getAttribute("type") for e in to(out, JOE)])
        (own,) = to(out, ROLAND)
        self.assertEqual((own["type"], muc_item(own)["jid"]), ("unavailable", ROLAND))
        self.assertEqual(muc_item(to(out, JOE)[0])["jid"], "roland@falcot.com/phone")
        out = self.muc.leave("roland@falcot.com/phone", "Roland")
        self.assertEqual([e.getAttribute("type") for e in to(out, JOE)], ["unavailable"])


class PresenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")
        self.muc.join(ROLAND, "Roland")

    def test_statusChangeIsBroadcast(self) -> None:
        """
        If an occupant changes its presence, everyone gets it with the item, and MUC payloads
        it tried to add are not passed on.
        """
        out = self.muc.send(f"<presence from='{ROLAND}' to='{ROOM}/Roland'><show>away</show>"
                            f"<x xmlns='{NS_USER}'><item affiliation='owner'/></x></presence>")
        (seen,) = to(out, JOE)
        self.assertEqual(str(next(seen.elements(seen.uri, "show"))), "away")
        self.assertEqual(muc_item(seen)["affiliation"], "none")

    def test_nickChange(self) -> None:
        """
        If an occupant asks for a new nick, everyone gets unavailable from the old nick with 303
        and the new nick, then presence from the new one; the occupant's copies carry 110.
        """
        out = self.muc.send(f"<presence from='{ROLAND}' to='{ROOM}/Rolly'/>")
        old, new = to(out, JOE)
        self.assertEqual((old["from"], old["type"], codes(old), muc_item(old)["nick"]),
                         (f"{ROOM}/Roland", "unavailable", {303}, "Rolly"))
        self.assertEqual(new["from"], f"{ROOM}/Rolly")
        self.assertEqual([codes(e) for e in to(out, ROLAND)], [{110, 303}, {110}])
        (error,) = self.muc.send(f"<presence from='{ROLAND}' to='{ROOM}/joe'/>")
        self.assertEqual((error["from"], condition(error)), (f"{ROOM}/joe", "conflict"))

    def test_leave(self) -> None:
        """
        If an occupant sends unavailable, it gets its own unavailable (110) and the others one
        without; a second unavailable or one from a stranger changes nothing.
        """
        out = self.muc.send(f"<presence type='unavailable' from='{ROLAND}' to='{ROOM}/Roland'>"
                            "<status>bye</status></presence>")
        self.assertEqual(codes(to(out, ROLAND)[0]), {110})
        (seen,) = to(out, JOE)
        self.assertEqual((seen["type"], muc_item(seen)["role"], str(next(seen.elements(seen.uri, "status")))),
                         ("unavailable", "none", "bye"))
        self.assertEqual(self.muc.leave(ROLAND, "Roland"), [])
        self.assertEqual(self.muc.leave(ANN, "Ann"), [])

    def test_rejoinResendsState(self) -> None:
        """
        If an occupant's client sends the join presence again (it lost track), it gets the
        occupant list, its self-presence and the subject again, and nobody else hears of it; a
        malformed history request on a rejoin is bad-request.
        """
        out = self.muc.join(ROLAND, "Roland")
        self.assertEqual(to(out, JOE), [])
        self.assertEqual([e.name for e in to(out, ROLAND)], ["presence", "presence", "message"])
        (error,) = self.muc.join(ROLAND, "Roland", x="<history seconds='soon'/>")
        self.assertEqual(condition(error), "bad-request")

    def test_errorFromGhostRemovesIt(self) -> None:
        """
        If an occupant's address bounces a room stanza with a condition meaning it is gone,
        the occupant is removed with status 333; an unrelated error changes nothing.
        """
        out = self.muc.send(f"<message type='error' from='{ROLAND}' to='{ROOM}/Joe'>"
                            "<error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        self.assertEqual(out, [])
        out = self.muc.send(f"<message type='error' from='{ROLAND}' to='{ROOM}/Joe'>"
                            "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        (seen,) = out
        self.assertEqual((seen["to"], seen["type"], codes(seen)), (JOE, "unavailable", {333}))

    def test_sessionEndedLeaves(self) -> None:
        """
        If a client's session ends, its occupant leaves and the others are told.
        """
        out = self.muc.service.session_ended(JID.parse(ROLAND))
        self.assertEqual([(e["to"], e["type"]) for e in out], [(JOE, "unavailable")])


class MessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")
        self.muc.join(ROLAND, "Roland")
        self.muc.join(ANN, "Ann")

    def test_groupchatReachesEveryoneWithStanzaId(self) -> None:
        """
        If an occupant sends a groupchat message, every occupant including the sender gets it
        from the sender's occupant JID with the same id and a room stanza-id; a forged
        stanza-id claiming to be the room's is removed.
        """
        out = self.muc.send(f"<message type='groupchat' id='x1' from='{ROLAND}' to='{ROOM}'><body>hi</body>"
                            f"<stanza-id xmlns='{NS_SID}' id='forged' by='{ROOM}'/></message>")
        self.assertEqual(sorted(e["to"] for e in out), sorted([JOE, ROLAND, ANN]))
        for e in out:
            self.assertEqual((e["from"], e["id"]), (f"{ROOM}/Roland", "x1"))
            self.assertEqual([s["id"] for s in e.elements(NS_SID, "stanza-id")], ["sid-1"])

    def test_nonOccupantCannotSpeak(self) -> None:
        """
        If someone not in the room sends a groupchat message, it is not-acceptable.
        """
        (error,) = self.muc.say("stranger@falcot.com/x", "hello")
        self.assertEqual(condition(error), "not-acceptable")

    def test_subjectChangeRules(self) -> None:
        """
        If a participant changes the subject while the room does not allow it, it is forbidden;
        a moderator may, everyone sees it, and newcomers get it from the setter's nick.
        """
        (error,) = self.muc.send(f"<message type='groupchat' from='{ROLAND}' to='{ROOM}'><subject>mine</subject></message>")
        self.assertEqual(condition(error), "forbidden")
        out = self.muc.send(f"<message type='groupchat' from='{JOE}' to='{ROOM}'><subject>Outage</subject></message>")
        self.assertEqual(len(out), 3)
        subject = to(self.muc.join("c@falcot.com/1", "C"), "c@falcot.com/1")[-1]
        self.assertEqual((subject["from"], str(next(subject.elements(subject.uri, "subject")))), (f"{ROOM}/Joe", "Outage"))

    def test_visitorsHaveNoVoice(self) -> None:
        """
        If the room is moderated, a newcomer without affiliation is a visitor and its messages
        are forbidden; granted voice, it can speak.
        """
        self.muc.configure(JOE, {"muc#roomconfig_moderatedroom": "1"})
        out = self.muc.join("v@falcot.com/1", "V")
        self.assertEqual(muc_item(to(out, "v@falcot.com/1")[-2])["role"], "visitor")
        self.assertEqual(condition(self.muc.say("v@falcot.com/1", "hi")[0]), "forbidden")
        self.muc.iq(JOE, "<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='V' role='participant'/></query>", "set")
        self.assertEqual(len(self.muc.say("v@falcot.com/1", "hi")), 4)

    def test_privateMessages(self) -> None:
        """
        If an occupant sends a chat message to another's occupant JID, it arrives from the
        sender's occupant JID with an empty muc#user x; to an absent nick it is item-not-found;
        as groupchat it is bad-request; when the room forbids them it is forbidden.
        """
        (pm,) = self.muc.send(f"<message type='chat' from='{ROLAND}' to='{ROOM}/Ann'><body>psst</body></message>")
        self.assertEqual((pm["to"], pm["from"], pm["type"]), (ANN, f"{ROOM}/Roland", "chat"))
        self.assertIsNotNone(next(pm.elements(NS_USER, "x"), None))
        self.assertEqual(condition(self.muc.send(f"<message type='chat' from='{ROLAND}' to='{ROOM}/Nobody'><body>x</body></message>")[0]),
                         "item-not-found")
        self.assertEqual(condition(self.muc.send(f"<message type='groupchat' from='{ROLAND}' to='{ROOM}/Ann'><body>x</body></message>")[0]),
                         "bad-request")
        self.muc.configure(JOE, {"muc#roomconfig_allowpm": "moderators"})
        self.assertEqual(condition(self.muc.send(f"<message type='chat' from='{ROLAND}' to='{ROOM}/Ann'><body>x</body></message>")[0]),
                         "forbidden")
        self.assertEqual(len(self.muc.send(f"<message type='chat' from='{JOE}' to='{ROOM}/Ann'><body>x</body></message>")), 1)

    def test_rateLimit(self) -> None:
        """
        If an occupant sends more than its burst at once, the excess is resource-constraint;
        after waiting, it may speak again.
        """
        results = [self.muc.say(ROLAND, f"n{i}") for i in range(12)]
        self.assertEqual([condition(r[0]) for r in results[10:]], ["resource-constraint"] * 2)
        self.assertTrue(all(len(r) == 3 for r in results[:10]))
        self.muc.now += 2
        self.assertEqual(len(self.muc.say(ROLAND, "later")), 3)

    def test_mediatedInvitationAndDecline(self) -> None:
        """
        If an occupant invites someone through the room, the invitee gets a message from the
        room naming the inviter and carrying the password; the invitee's decline goes back to
        the inviter; a stranger's decline goes nowhere.
        """
        self.muc.configure(JOE, {"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "pw"})
        (invite,) = self.muc.send(f"<message from='{ROLAND}' to='{ROOM}'><x xmlns='{NS_USER}'>"
                                  "<invite to='keith@example.org'><reason>join us</reason></invite></x></message>")
        x = next(invite.elements(NS_USER, "x"))
        self.assertEqual((invite["to"], invite["from"]), ("keith@example.org", ROOM))
        self.assertEqual(next(x.elements(NS_USER, "invite"))["from"], "roland@falcot.com")
        self.assertEqual(str(next(x.elements(NS_USER, "password"))), "pw")
        (decline,) = self.muc.send(f"<message from='keith@example.org/pc' to='{ROOM}'><x xmlns='{NS_USER}'>"
                                   "<decline to='roland@falcot.com'><reason>busy</reason></decline></x></message>")
        self.assertEqual((decline["to"], next(next(decline.elements(NS_USER, "x")).elements(NS_USER, "decline"))["from"]),
                         (ROLAND, "keith@example.org"))
        self.assertEqual(self.muc.send(f"<message from='x@example.org/pc' to='{ROOM}'><x xmlns='{NS_USER}'>"
                                       "<decline to='roland@falcot.com'/></x></message>"), [])

    def test_malformedInvitations(self) -> None:
        """
        If an invitation has no 'to' or a malformed one, or comes from a stranger, it gets a
        stanza error and nobody is invited.
        """
        send = lambda who, inner: self.muc.send(  # noqa: E731
            f"<message from='{who}' to='{ROOM}'><x xmlns='{NS_USER}'>{inner}</x></message>")
        self.assertEqual(condition(send(ROLAND, "<invite/>")[0]), "bad-request")
        self.assertEqual(condition(send(ROLAND, "<invite to='@@'/>")[0]), "jid-malformed")
        self.assertEqual(condition(send("x@falcot.com/1", "<invite to='a@b'/>")[0]), "not-acceptable")
        self.assertEqual(condition(send(ROLAND, "<invite to='a@b'/>" * 11)[0]), "policy-violation")

    def test_membersOnlyInvitationMakesMember(self) -> None:
        """
        If an admin invites someone into a members-only room, the invitee becomes a member and
        can enter.
        """
        self.muc.configure(JOE, {"muc#roomconfig_membersonly": "1"})
        self.muc.send(f"<message from='{JOE}' to='{ROOM}'><x xmlns='{NS_USER}'><invite to='keith@example.org'/></x></message>")
        out = self.muc.join("keith@example.org/pc", "Keith")
        self.assertEqual(muc_item(to(out, "keith@example.org/pc")[-2])["affiliation"], "member")

    def test_normalMessageToRoomIsBadRequest(self) -> None:
        """
        If a plain chat message is sent to the room's bare JID, it is bad-request.
        """
        (error,) = self.muc.send(f"<message type='chat' from='{ROLAND}' to='{ROOM}'><body>?</body></message>")
        self.assertEqual(condition(error), "bad-request")


class OccupantIqTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.muc = Muc()
        self.muc.instant_room(JOE, "Joe")
        self.muc.join(ROLAND, "Roland")

    def test_selfPing(self) -> None:
        """
        If an occupant pings its own occupant JID (XEP-0410), the room answers; a non-occupant
        gets not-acceptable for a ping and bad-request for any other query (XEP-0045 §6.6).
        """
        (pong,) = self.muc.iq(ROLAND, "<ping xmlns='urn:xmpp:ping'/>", to=f"{ROOM}/Roland")
        self.assertEqual((pong["type"], pong["to"], pong["from"]), ("result", ROLAND, f"{ROOM}/Roland"))
        (error,) = self.muc.iq(ANN, "<ping xmlns='urn:xmpp:ping'/>", to=f"{ROOM}/Roland")
        self.assertEqual(condition(error), "not-acceptable")
        (error,) = self.muc.iq(ANN, "<query xmlns='http://jabber.org/protocol/disco#info'/>", to=f"{ROOM}/Roland")
        self.assertEqual(condition(error), "bad-request")

    def test_iqForwardedAndAnswered(self) -> None:
        """
        If an occupant sends an IQ to another occupant, it goes to that client from the asker's
        occupant JID under a new id, and the answer comes back with the original id, from the
        other's occupant JID; a forged answer from elsewhere is dropped.
        """
        (forwarded,) = self.muc.iq(ROLAND, "<query xmlns='jabber:iq:version'/>", to=f"{ROOM}/Joe")
        self.assertEqual((forwarded["to"], forwarded["from"]), (JOE, f"{ROOM}/Roland"))
        self.assertNotEqual(forwarded["id"], "q1")
        self.assertEqual(self.muc.send(f"<iq type='result' id='{forwarded['id']}' from='{ANN}' to='{ROOM}/Roland'/>"), [])
        (answer,) = self.muc.send(f"<iq type='result' id='{forwarded['id']}' from='{JOE}' to='{ROOM}/Roland'>"
                                  "<query xmlns='jabber:iq:version'><name>x</name></query></iq>")
        self.assertEqual((answer["to"], answer["from"], answer["id"]), (ROLAND, f"{ROOM}/Joe", "q1"))

    def test_malformedIqs(self) -> None:
        """
        If an IQ to the room has no payload or an unknown one, the answers are bad-request and
        service-unavailable, and the room still answers disco afterwards.
        """
        (error,) = self.muc.send(f"<iq type='get' id='e' from='{ROLAND}' to='{ROOM}'/>")
        self.assertEqual(condition(error), "bad-request")
        (error,) = self.muc.iq(ROLAND, "<query xmlns='urn:example:nothing'/>")
        self.assertEqual(condition(error), "service-unavailable")
        (info,) = self.muc.iq(ROLAND, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        self.assertEqual(info["type"], "result")


class RoleDefaultsTests(SynchronousTestCase):
    def test_defaultRoles(self) -> None:
        """
        If occupants enter, owners and admins are moderators, members participants, and others
        participants or (moderated rooms) visitors.
        """
        self.assertEqual(default_role(Affiliation.OWNER, False), Role.MODERATOR)
        self.assertEqual(default_role(Affiliation.ADMIN, True), Role.MODERATOR)
        self.assertEqual(default_role(Affiliation.MEMBER, True), Role.PARTICIPANT)
        self.assertEqual(default_role(Affiliation.NONE, True), Role.VISITOR)
        self.assertEqual(default_role(Affiliation.NONE, False), Role.PARTICIPANT)
        self.assertEqual(default_role(Affiliation.OUTCAST, False), Role.NONE)

"""The roster and presence plugins on the fake server: RFC 6121 roster management, the subscription
handshake in both directions, probes, broadcasts, directed presence and persistence."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.plugin_helpers import PluginServer, error_condition, roster_pushes, sqlite_engine, stanzas

PLUGINS = ["presence", "roster"]
NS_ROSTER = "jabber:iq:roster"


class RosterTestCase(SynchronousTestCase):
    plugins = PLUGINS

    def setUp(self) -> None:
        self.engine = sqlite_engine(self.mktemp())
        self.addCleanup(self.engine.dispose)
        self.server = PluginServer(self.engine, self.plugins)
        self.addCleanup(self.server.stop)

    def iq(self, client, kind: str, payload: str, to: str | None = None):
        target = f" to='{to}'" if to else ""
        client.clear()
        client.send(f"<iq type='{kind}' id='q'{target}>{payload}</iq>")
        replies = [e for e in client.elements() if e.name == "iq" and e.getAttribute("id") == "q"]
        self.assertEqual(len(replies), 1, client.elements())
        return replies[0]

    def roster(self, client) -> dict[str, dict[str, str]]:
        reply = self.iq(client, "get", f"<query xmlns='{NS_ROSTER}'/>")
        query = next(reply.elements(NS_ROSTER, "query"))
        return {item["jid"]: dict(item.attributes) for item in query.elements(NS_ROSTER, "item")}

    def add(self, client, jid: str, name: str = "", groups: tuple[str, ...] = ()) -> None:
        inner = "".join(f"<group>{g}</group>" for g in groups)
        named = f" name='{name}'" if name else ""
        reply = self.iq(client, "set", f"<query xmlns='{NS_ROSTER}'><item jid='{jid}'{named}>{inner}</item></query>")
        self.assertEqual(reply["type"], "result", reply.toXml())

    def subscribe_both_ways(self, joe, roland) -> None:
        joe.send("<presence type='subscribe' to='roland@falcot.com'/>")
        roland.send("<presence type='subscribed' to='joe@falcot.com'/>")
        roland.send("<presence type='subscribe' to='joe@falcot.com'/>")
        joe.send("<presence type='subscribed' to='roland@falcot.com'/>")
        joe.clear()
        roland.clear()


class RosterManagementTests(RosterTestCase):
    def test_setPushesAndVersions(self) -> None:
        """
        If a client adds a contact, every resource that requested the roster gets a push with the
        new version (a resource that never asked gets none), a get returns the item, and a get
        with the current version returns an empty result.
        """
        laptop = self.server.login("joe", "laptop")
        phone = self.server.login("joe", "phone")
        quiet = self.server.login("joe", "quiet", roster=False)
        before = self.iq(laptop, "get", f"<query xmlns='{NS_ROSTER}'/>")
        version = next(before.elements(NS_ROSTER, "query"))["ver"]
        phone.clear()
        quiet.clear()
        self.add(laptop, "roland@falcot.com", "Roland", ("Friends", "Work"))
        self.assertEqual(roster_pushes(phone), [{"jid": "roland@falcot.com", "subscription": "none",
                                                 "name": "Roland"}])
        self.assertEqual(roster_pushes(quiet), [])
        push = stanzas(phone, "iq", "set")[0]
        self.assertEqual(push["from"], "joe@falcot.com")
        new_version = next(push.elements(NS_ROSTER, "query"))["ver"]
        self.assertNotEqual(new_version, version)
        item = self.roster(laptop)["roland@falcot.com"]
        self.assertEqual((item["name"], item["subscription"]), ("Roland", "none"))
        unchanged = self.iq(laptop, "get", f"<query xmlns='{NS_ROSTER}' ver='{new_version}'/>")
        self.assertEqual((unchanged["type"], list(unchanged.elements())), ("result", []))

    def test_badRosterSetsAreStanzaErrors(self) -> None:
        """
        If a roster set has two items, a malformed JID, the user's own JID, a repeated or empty
        group, an oversized name, or removes an unknown contact, or a client reads another
        account's roster, it gets the RFC 6121 stanza error and the session keeps working.
        """
        joe = self.server.login("joe")
        cases = [
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@falcot.com'/><item jid='b@falcot.com'/></query>", "bad-request"),
            (f"<query xmlns='{NS_ROSTER}'/>", "bad-request"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@@b'/></query>", "jid-malformed"),
            (f"<query xmlns='{NS_ROSTER}'><item/></query>", "jid-malformed"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='joe@falcot.com'/></query>", "not-allowed"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@falcot.com'><group>G</group><group>G</group></item></query>",
             "bad-request"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@falcot.com'><group/></item></query>", "not-acceptable"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@falcot.com' name='{'n' * 1100}'/></query>", "not-acceptable"),
            (f"<query xmlns='{NS_ROSTER}'><item jid='a@falcot.com' subscription='remove'/></query>", "item-not-found"),
        ]
        for payload, condition in cases:
            reply = self.iq(joe, "set", payload)
            self.assertEqual((reply["type"], error_condition(reply)), ("error", condition), payload)
        reply = self.iq(joe, "get", f"<query xmlns='{NS_ROSTER}'/>", to="roland@falcot.com")
        self.assertEqual(error_condition(reply), "forbidden")
        self.assertEqual(self.roster(joe), {})
        self.assertFalse(joe.disconnected)

    def test_rosterSurvivesRestart(self) -> None:
        """
        If the server restarts (plugins reloaded on the same database), the roster, with names,
        groups and subscription states, is still there.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        self.add(joe, "roland@falcot.com", "Roland", ("Friends",))
        self.subscribe_both_ways(joe, roland)
        self.server.stop()
        restarted = PluginServer(self.engine, PLUGINS)
        self.addCleanup(restarted.stop)
        restarted.fake.directory.add("roland", "secret")
        item = self.roster(restarted.login("joe", "again"))["roland@falcot.com"]
        self.assertEqual((item["name"], item["subscription"]), ("Roland", "both"))

    def test_removeCancelsBothWays(self) -> None:
        """
        If joe removes roland (subscription both), joe's resources get a remove push, roland's
        item goes to none with a push, and roland sees joe go unavailable.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        self.subscribe_both_ways(joe, roland)
        reply = self.iq(joe, "set", f"<query xmlns='{NS_ROSTER}'><item jid='roland@falcot.com' subscription='remove'/></query>")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(roster_pushes(joe), [{"jid": "roland@falcot.com", "subscription": "remove"}])
        self.assertEqual(roster_pushes(roland)[-1], {"jid": "joe@falcot.com", "subscription": "none"})
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "unavailable")], ["joe@falcot.com/laptop"])
        self.assertEqual(self.roster(roland)["joe@falcot.com"]["subscription"], "none")


class SubscriptionTests(RosterTestCase):
    def test_handshakeBothWays(self) -> None:
        """
        If joe subscribes to roland and roland approves, and then the other way round, each
        step pushes the RFC 6121 state (ask, to, from, both), requests and approvals arrive from
        bare JIDs, and each sees the other's presence once approved.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        joe.send("<presence type='subscribe' to='roland@falcot.com/desk'><status>hi</status></presence>")
        self.assertEqual(roster_pushes(joe), [{"jid": "roland@falcot.com", "subscription": "none", "ask": "subscribe"}])
        [request] = stanzas(roland, "presence", "subscribe")
        self.assertEqual((request["from"], request["to"], str(next(request.elements("jabber:client", "status")))),
                         ("joe@falcot.com", "roland@falcot.com", "hi"))
        joe.clear()
        roland.clear()
        roland.send("<presence type='subscribed' to='joe@falcot.com'/>")
        self.assertEqual(roster_pushes(roland), [{"jid": "joe@falcot.com", "subscription": "from"}])
        self.assertEqual(roster_pushes(joe), [{"jid": "roland@falcot.com", "subscription": "to"}])
        self.assertEqual([p["from"] for p in stanzas(joe, "presence", "subscribed")], ["roland@falcot.com"])
        self.assertEqual([p["from"] for p in stanzas(joe, "presence", "available")], ["roland@falcot.com/laptop"])
        roland.clear()
        roland.send("<presence type='subscribe' to='joe@falcot.com'/>")
        joe.send("<presence type='subscribed' to='roland@falcot.com'/>")
        self.assertEqual(roster_pushes(joe)[-1], {"jid": "roland@falcot.com", "subscription": "both"})
        self.assertEqual(roster_pushes(roland)[-1], {"jid": "joe@falcot.com", "subscription": "both"})
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "available")], ["joe@falcot.com/laptop"])

    def test_requestWaitsForOfflineContact(self) -> None:
        """
        If roland is offline when joe subscribes, the request is delivered at roland's next
        initial presence, again at each login until answered, and no more after.
        """
        joe = self.server.login("joe")
        self.server.fake.directory.add("roland", "secret")
        joe.send("<presence type='subscribe' to='roland@falcot.com'/>")
        roland = self.server.login("roland", "desk", available=False)
        roland.send("<presence/>")
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "subscribe")], ["joe@falcot.com"])
        roland.lose()
        roland = self.server.login("roland", "desk", available=False)
        roland.send("<presence/>")
        self.assertEqual(len(stanzas(roland, "presence", "subscribe")), 1)
        roland.send("<presence type='subscribed' to='joe@falcot.com'/>")
        roland.lose()
        roland = self.server.login("roland", "desk", available=False)
        roland.send("<presence/>")
        self.assertEqual(stanzas(roland, "presence", "subscribe"), [])

    def test_cancelAndDeny(self) -> None:
        """
        If roland cancels joe's subscription (unsubscribed), joe's item loses 'to' and joe sees
        roland go unavailable; if joe then unsubscribes from roland's presence, roland's item loses 'from'
        (both -> to); a denied request leaves the requester's item without ask.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        self.subscribe_both_ways(joe, roland)
        roland.send("<presence type='unsubscribed' to='joe@falcot.com'/>")
        self.assertEqual(roster_pushes(joe), [{"jid": "roland@falcot.com", "subscription": "from"}])
        self.assertEqual(roster_pushes(roland), [{"jid": "joe@falcot.com", "subscription": "to"}])
        self.assertEqual([p["from"] for p in stanzas(joe, "presence", "unavailable")], ["roland@falcot.com/laptop"])
        joe.clear()
        roland.clear()
        roland.send("<presence type='unsubscribe' to='joe@falcot.com'/>")
        self.assertEqual(roster_pushes(roland), [{"jid": "joe@falcot.com", "subscription": "none"}])
        self.assertEqual(roster_pushes(joe), [{"jid": "roland@falcot.com", "subscription": "none"}])
        ann = self.server.login("ann")
        ann.send("<presence type='subscribe' to='joe@falcot.com'/>")
        joe.send("<presence type='unsubscribed' to='ann@falcot.com'/>")
        self.assertEqual(self.roster(ann)["joe@falcot.com"]["subscription"], "none")
        self.assertNotIn("ask", self.roster(ann)["joe@falcot.com"])
        self.assertNotIn("ann@falcot.com", self.roster(joe))

    def test_preApproval(self) -> None:
        """
        If roland pre-approves ann (subscribed with no request), his item shows approved='true'
        and ann's later request is approved at once without reaching roland's clients.
        """
        roland, ann = self.server.login("roland"), self.server.login("ann")
        roland.send("<presence type='subscribed' to='ann@falcot.com'/>")
        self.assertEqual(roster_pushes(roland), [{"jid": "ann@falcot.com", "subscription": "none", "approved": "true"}])
        self.assertEqual(stanzas(ann, "presence"), [])
        roland.clear()
        ann.send("<presence type='subscribe' to='roland@falcot.com'/>")
        self.assertEqual(stanzas(roland, "presence", "subscribe"), [])
        self.assertEqual(roster_pushes(roland), [{"jid": "ann@falcot.com", "subscription": "from"}])
        self.assertEqual([(p.getAttribute("type"), p["from"]) for p in stanzas(ann, "presence")],
                         [("subscribed", "roland@falcot.com"), (None, "roland@falcot.com/laptop")])
        self.assertEqual(self.roster(ann)["roland@falcot.com"]["subscription"], "to")

    def test_unknownContactAnswersUnsubscribed(self) -> None:
        """
        If joe subscribes to an account that does not exist, his pending request is cancelled by
        an unsubscribed on the contact's behalf.
        """
        joe = self.server.login("joe")
        joe.send("<presence type='subscribe' to='nobody@falcot.com'/>")
        self.assertEqual([p["from"] for p in stanzas(joe, "presence", "unsubscribed")], ["nobody@falcot.com"])
        self.assertEqual(self.roster(joe)["nobody@falcot.com"]["subscription"], "none")
        self.assertNotIn("ask", self.roster(joe)["nobody@falcot.com"])


class PresenceTests(RosterTestCase):
    def test_broadcastProbeAndUnavailable(self) -> None:
        """
        If joe and roland are subscribed both ways and joe logs out and in again, roland sees
        joe's unavailable and then available presence, and joe's new session learns roland's
        presence from the probe; a user's own other resources see it too.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        self.subscribe_both_ways(joe, roland)
        phone = self.server.login("joe", "phone", available=False)
        joe.send("<presence type='unavailable'/>")
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "unavailable")], ["joe@falcot.com/laptop"])
        roland.clear()
        phone.send("<presence><show>away</show></presence>")
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "available")], ["joe@falcot.com/phone"])
        self.assertEqual([p["from"] for p in stanzas(phone, "presence", "available")],
                         ["joe@falcot.com/phone", "roland@falcot.com/laptop"])
        roland.clear()
        phone.lose()
        self.assertEqual([p["from"] for p in stanzas(roland, "presence", "unavailable")], ["joe@falcot.com/phone"])

    def test_noPresenceForStrangers(self) -> None:
        """
        If someone without a subscription probes joe, they learn nothing, and joe's broadcasts
        do not reach them.
        """
        joe = self.server.login("joe")
        ann = self.server.login("ann")
        ann.send("<presence type='probe' to='joe@falcot.com'/>")
        joe.send("<presence><show>dnd</show></presence>")
        self.assertEqual([p for p in stanzas(ann, "presence") if p["from"].startswith("joe")], [])

    def test_directedPresenceEndsWithSession(self) -> None:
        """
        If joe sends directed presence to ann (not a contact), ann receives it and later receives
        joe's unavailable presence when joe's session ends.
        """
        joe, ann = self.server.login("joe"), self.server.login("ann")
        joe.send("<presence to='ann@falcot.com'/>")
        self.assertEqual([p["from"] for p in stanzas(ann, "presence", "available")], ["joe@falcot.com/laptop"])
        joe.lose()
        self.assertEqual([p["from"] for p in stanzas(ann, "presence", "unavailable")], ["joe@falcot.com/laptop"])

    def test_streamFeatures(self) -> None:
        """
        If a client authenticates, the stream features offer roster versioning and pre-approval.
        """
        client = self.server.fake.login("joe")
        self.assertTrue(client.raw.count(b"urn:xmpp:features:rosterver") == 1)
        self.assertIn(b"urn:xmpp:features:pre-approval", client.raw)

    def test_presenceToServerResourceIgnored(self) -> None:
        """
        If a client sends a subscription request or probe to the server's own address with a
        resource, nothing breaks: no account is looked up and the session keeps working.
        """
        joe = self.server.login("joe")
        joe.send("<presence type='subscribe' to='falcot.com/x'/>")
        joe.send("<presence type='probe' to='falcot.com/x'/>")
        self.assertIsNone(joe.stream_error())
        self.assertEqual(self.roster(joe)["falcot.com"]["ask"], "subscribe")

"""The IM plugins on the fake server with real storage: offline messages, version, time, vCard,
private XML, blocking and carbons, including their stanza errors."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.plugin_helpers import PluginServer, error_condition, sqlite_engine, stanzas

PLUGINS = ["blocking", "carbons", "disco", "offline", "ping", "presence", "private", "roster", "time",
           "vcard", "version"]
NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
NS_BLOCKING = "urn:xmpp:blocking"
NS_CARBONS = "urn:xmpp:carbons:2"


class PluginTestCase(SynchronousTestCase):
    settings = None

    def setUp(self) -> None:
        self.engine = sqlite_engine(self.mktemp())
        self.addCleanup(self.engine.dispose)
        self.server = PluginServer(self.engine, PLUGINS, self.settings)
        self.addCleanup(self.server.stop)

    def iq(self, client, kind: str, payload: str, to: str | None = None):
        target = f" to='{to}'" if to else ""
        client.clear()
        client.send(f"<iq type='{kind}' id='q'{target}>{payload}</iq>")
        replies = [e for e in client.elements() if e.name == "iq" and e.getAttribute("id") == "q"]
        self.assertEqual(len(replies), 1, [e.toXml() for e in client.elements()])
        return replies[0]

    def bodies(self, client) -> list[str]:
        return [str(m.body) for m in stanzas(client, "message") if m.body is not None]


class OfflineTests(PluginTestCase):
    settings = SimpleNamespace(xmpp=SimpleNamespace(offline_max_messages=3))

    def test_storedThenDeliveredOnce(self) -> None:
        """
        If joe writes to roland while roland is offline, the sender gets no error, and roland's
        next initial presence delivers the message with a delay stamp from the server; the
        login after that delivers nothing again.
        """
        joe = self.server.login("joe")
        self.server.fake.directory.add("roland", "secret")
        joe.send("<message to='roland@falcot.com' type='chat' id='m1'><body>while you were out</body></message>")
        joe.send("<message to='roland@falcot.com' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        self.assertEqual(stanzas(joe, "message"), [])
        roland = self.server.login("roland", available=False)
        roland.send("<presence/>")
        [message] = stanzas(roland, "message")
        self.assertEqual((str(message.body), message["from"], message["to"]),
                         ("while you were out", "joe@falcot.com/laptop", "roland@falcot.com/laptop"))
        delay = next(message.elements("urn:xmpp:delay", "delay"))
        self.assertEqual(delay["from"], "falcot.com")
        self.assertTrue(delay["stamp"].endswith("Z"))
        roland.lose()
        again = self.server.login("roland", available=False)
        again.send("<presence/>")
        self.assertEqual(stanzas(again, "message"), [])

    def test_quotaKeepsOldestAndBouncesNew(self) -> None:
        """
        If more messages arrive than the offline quota holds, the first ones are kept and the
        sender gets service-unavailable for the others; a negative-priority resource does not
        take the stored messages.
        """
        joe = self.server.login("joe")
        self.server.fake.directory.add("roland", "secret")
        for n in range(5):
            joe.send(f"<message to='roland@falcot.com' id='m{n}'><body>{n}</body></message>")
        errors = [m["id"] for m in stanzas(joe, "message", "error")]
        self.assertEqual(errors, ["m3", "m4"])
        self.assertEqual(error_condition(stanzas(joe, "message", "error")[0]), "service-unavailable")
        shy = self.server.login("roland", "shy", priority=-1)
        self.assertEqual(stanzas(shy, "message"), [])
        roland = self.server.login("roland", available=False)
        roland.send("<presence/>")
        self.assertEqual(self.bodies(roland), ["0", "1", "2"])

    def test_unknownUserStillBounces(self) -> None:
        """
        If a message is sent to an account that does not exist, nothing is stored and the
        sender gets service-unavailable.
        """
        joe = self.server.login("joe")
        joe.send("<message to='nobody@falcot.com' id='x'><body>hello?</body></message>")
        self.assertEqual(error_condition(stanzas(joe, "message", "error")[0]), "service-unavailable")


class InfoTests(PluginTestCase):
    def test_versionAndTime(self) -> None:
        """
        If a client asks the server for its version and time, it gets name unirtc with a version,
        and a UTC time with a zero offset; disco lists both features.
        """
        joe = self.server.login("joe")
        query = next(self.iq(joe, "get", "<query xmlns='jabber:iq:version'/>", "falcot.com").elements())
        self.assertEqual(str(next(query.elements("jabber:iq:version", "name"))), "unirtc")
        self.assertTrue(str(next(query.elements("jabber:iq:version", "version"))))
        self.server.fake.clock.advance(1_800_000_000.25)
        time = next(self.iq(joe, "get", "<time xmlns='urn:xmpp:time'/>", "falcot.com").elements())
        self.assertEqual((str(time.tzo), str(time.utc)), ("+00:00", "2027-01-15T08:00:00.250Z"))
        info = next(self.iq(joe, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", "falcot.com").elements())
        features = {f["var"] for f in info.elements(None, "feature")} | {
            f["var"] for f in info.elements("http://jabber.org/protocol/disco#info", "feature")}
        self.assertTrue({"jabber:iq:version", "urn:xmpp:time", NS_CARBONS, NS_BLOCKING, NS_VCARD, NS_PRIVATE,
                         "msgoffline"} <= features, features)


class VcardAndPrivateTests(PluginTestCase):
    def test_vcardSetGet(self) -> None:
        """
        If joe sets his vCard, he and roland read it back; before that it is empty; roland cannot
        set it (forbidden); an oversized one is not-acceptable and changes nothing.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        empty = next(self.iq(roland, "get", f"<vCard xmlns='{NS_VCARD}'/>", "joe@falcot.com").elements())
        self.assertEqual((empty.name, list(empty.elements())), ("vCard", []))
        reply = self.iq(joe, "set", f"<vCard xmlns='{NS_VCARD}'><FN>Joe Falcot</FN><NICKNAME>joe</NICKNAME></vCard>")
        self.assertEqual(reply["type"], "result")
        for client in (joe, roland):
            vcard = next(self.iq(client, "get", f"<vCard xmlns='{NS_VCARD}'/>", "joe@falcot.com").elements())
            self.assertEqual(str(vcard.FN), "Joe Falcot")
        reply = self.iq(roland, "set", f"<vCard xmlns='{NS_VCARD}'><FN>Evil</FN></vCard>", "joe@falcot.com")
        self.assertEqual(error_condition(reply), "forbidden")
        big = "A" * 140_000
        reply = self.iq(joe, "set", f"<vCard xmlns='{NS_VCARD}'><PHOTO><BINVAL>{big}</BINVAL></PHOTO></vCard>")
        self.assertEqual(error_condition(reply), "not-acceptable")
        vcard = next(self.iq(joe, "get", f"<vCard xmlns='{NS_VCARD}'/>").elements())
        self.assertEqual(str(vcard.FN), "Joe Falcot")

    def test_privateStorage(self) -> None:
        """
        If joe stores bookmarks in private storage, he reads them back and an unknown namespace
        reads as empty; roland may not read them, and a reserved namespace, two children or none
        are not-acceptable.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='team@conference.falcot.com'/></storage>"
        self.assertEqual(self.iq(joe, "set", f"<query xmlns='{NS_PRIVATE}'>{bookmarks}</query>")["type"], "result")
        stored = next(next(self.iq(joe, "get", f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>").elements()).elements())
        self.assertEqual(next(stored.elements())["jid"], "team@conference.falcot.com")
        other = next(next(self.iq(joe, "get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:example'/></query>").elements()).elements())
        self.assertEqual((other.uri, other.name, list(other.elements())), ("urn:example", "prefs", []))
        reply = self.iq(roland, "get", f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>", "joe@falcot.com")
        self.assertEqual(error_condition(reply), "forbidden")
        for payload in ("<x xmlns='jabber:iq:private'/>", "<a xmlns='urn:a'/><b xmlns='urn:b'/>", "", "<body/>"):
            reply = self.iq(joe, "set", f"<query xmlns='{NS_PRIVATE}'>{payload}</query>")
            self.assertEqual(error_condition(reply), "not-acceptable", payload)


class BlockingTests(PluginTestCase):
    def test_blockStopsBothDirections(self) -> None:
        """
        If joe blocks roland, roland's messages to joe bounce with service-unavailable, joe's to
        roland bounce with not-acceptable and a <blocked/> error, roland sees joe go unavailable
        and joe's list shows roland (pushed to his other resource); after unblocking, messages flow.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        phone = self.server.login("joe", "phone")
        self.iq(phone, "get", f"<blocklist xmlns='{NS_BLOCKING}'/>")
        roland.clear()
        reply = self.iq(joe, "set", f"<block xmlns='{NS_BLOCKING}'><item jid='roland@falcot.com'/></block>")
        self.assertEqual(reply["type"], "result")
        pushes = [next(iq.elements(NS_BLOCKING, "block")) for iq in stanzas(phone, "iq", "set")]
        self.assertEqual([item["jid"] for item in pushes[0].elements(NS_BLOCKING, "item")], ["roland@falcot.com"])
        self.assertEqual({p["from"] for p in stanzas(roland, "presence", "unavailable")},
                         {"joe@falcot.com/laptop", "joe@falcot.com/phone"})
        roland.clear()
        joe.clear()
        roland.send("<message to='joe@falcot.com' type='chat' id='r1'><body>hello?</body></message>")
        self.assertEqual(self.bodies(joe), [])
        self.assertEqual(error_condition(stanzas(roland, "message", "error")[0]), "service-unavailable")
        joe.send("<message to='roland@falcot.com/laptop' type='chat' id='j1'><body>psst</body></message>")
        self.assertEqual(self.bodies(roland), [])
        [error] = stanzas(joe, "message", "error")
        self.assertEqual(error_condition(error), "not-acceptable")
        self.assertIsNotNone(next(error.error.elements("urn:xmpp:blocking:errors", "blocked"), None))
        listed = next(self.iq(joe, "get", f"<blocklist xmlns='{NS_BLOCKING}'/>").elements())
        self.assertEqual([i["jid"] for i in listed.elements(NS_BLOCKING, "item")], ["roland@falcot.com"])
        self.assertEqual(self.iq(joe, "set", f"<unblock xmlns='{NS_BLOCKING}'/>")["type"], "result")
        roland.send("<message to='joe@falcot.com/laptop' type='chat'><body>again</body></message>")
        self.assertEqual(self.bodies(joe), ["again"])

    def test_blockedWhileOfflineIsNotStored(self) -> None:
        """
        If joe has blocked a whole domain and is offline (his list not in memory), a message from
        that domain bounces instead of being stored, and one from elsewhere is stored.
        """
        joe = self.server.login("joe")
        self.iq(joe, "set", f"<block xmlns='{NS_BLOCKING}'><item jid='falcot.com'/></block>")
        joe.lose()
        self.server.stop()
        restarted = PluginServer(self.engine, PLUGINS)
        self.addCleanup(restarted.stop)
        restarted.fake.directory.add("joe", "secret")
        roland = restarted.login("roland")
        roland.send("<message to='joe@falcot.com' id='r1'><body>stored?</body></message>")
        self.assertEqual(error_condition(stanzas(roland, "message", "error")[0]), "service-unavailable")

    def test_badBlockRequests(self) -> None:
        """
        If a block has no items or a malformed JID, or someone edits another account's list, the
        answer is bad-request, jid-malformed or forbidden, and the list is unchanged.
        """
        joe, roland = self.server.login("joe"), self.server.login("roland")
        cases = [(joe, f"<block xmlns='{NS_BLOCKING}'/>", None, "bad-request"),
                 (joe, f"<block xmlns='{NS_BLOCKING}'><item jid='a@@b'/></block>", None, "jid-malformed"),
                 (joe, f"<block xmlns='{NS_BLOCKING}'><item/></block>", None, "jid-malformed"),
                 (roland, f"<block xmlns='{NS_BLOCKING}'><item jid='x@y'/></block>", "joe@falcot.com", "forbidden")]
        for client, payload, to, condition in cases:
            self.assertEqual(error_condition(self.iq(client, "set", payload, to)), condition, payload)
        listed = next(self.iq(joe, "get", f"<blocklist xmlns='{NS_BLOCKING}'/>").elements())
        self.assertEqual(list(listed.elements()), [])


class CarbonsTests(PluginTestCase):
    def test_sentAndReceivedCopies(self) -> None:
        """
        If joe's laptop and phone enabled carbons, a message the laptop sends reaches the phone
        as a <sent/> carbon, a message roland sends to the laptop reaches the phone as a
        <received/> carbon, and a <private/> message makes no copy (and loses the marker); a
        resource without carbons gets nothing.
        """
        laptop, phone = self.server.login("joe", "laptop"), self.server.login("joe", "phone")
        plain = self.server.login("joe", "plain")
        roland = self.server.login("roland")
        for client in (laptop, phone):
            self.assertEqual(self.iq(client, "set", f"<enable xmlns='{NS_CARBONS}'/>")["type"], "result")
        phone.clear()
        laptop.send("<message to='roland@falcot.com' type='chat'><body>from laptop</body></message>")
        [carbon] = stanzas(phone, "message")
        self.assertEqual((carbon["from"], carbon["to"]), ("joe@falcot.com", "joe@falcot.com/phone"))
        inner = next(next(next(carbon.elements(NS_CARBONS, "sent")).elements()).elements())
        self.assertEqual((str(inner.body), inner["to"]), ("from laptop", "roland@falcot.com"))
        phone.clear()
        roland.send("<message to='joe@falcot.com/laptop' type='chat'><body>to laptop</body></message>")
        [carbon] = stanzas(phone, "message")
        inner = next(next(next(carbon.elements(NS_CARBONS, "received")).elements()).elements())
        self.assertEqual((str(inner.body), inner["from"]), ("to laptop", "roland@falcot.com/laptop"))
        phone.clear()
        roland.clear()
        laptop.send(f"<message to='roland@falcot.com' type='chat'><body>secret</body><private xmlns='{NS_CARBONS}'/></message>")
        self.assertEqual(stanzas(phone, "message"), [])
        [delivered] = stanzas(roland, "message")
        self.assertIsNone(next(delivered.elements(NS_CARBONS, "private"), None))
        self.assertEqual([m for m in stanzas(plain, "message") if m.getAttribute("from") == "joe@falcot.com"], [])

    def test_enableForOthersForbidden(self) -> None:
        """
        If a client tries to enable carbons on another account, it gets forbidden.
        """
        roland = self.server.login("roland")
        reply = self.iq(roland, "set", f"<enable xmlns='{NS_CARBONS}'/>", "joe@falcot.com")
        self.assertEqual(error_condition(reply), "forbidden")

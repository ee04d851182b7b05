"""Message archives (XEP-0313), password change (XEP-0077), server pings (XEP-0199) and client
state indication (XEP-0352) on the fake server with real storage."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.plugin_helpers import PluginServer, error_condition, sqlite_engine, stanzas

PLUGINS = ["blocking", "carbons", "csi", "disco", "mam", "offline", "ping", "presence", "register", "roster"]
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"


class PluginTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = sqlite_engine(self.mktemp())
        self.addCleanup(self.engine.dispose)
        self.server = PluginServer(self.engine, PLUGINS)
        self.addCleanup(self.server.stop)

    def iq(self, client, kind: str, payload: str, to: str | None = None):
        target = f" to='{to}'" if to else ""
        client.clear()
        client.send(f"<iq type='{kind}' id='q'{target}>{payload}</iq>")
        replies = [e for e in client.elements() if e.name == "iq" and e.getAttribute("id") == "q"]
        self.assertEqual(len(replies), 1, [e.toXml() for e in client.elements()])
        return replies[0]


def form(**fields: str) -> str:
    inner = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>{inner}</x>"


class ArchiveTests(PluginTestCase):
    def mam(self, client, inner: str = ""):
        reply = self.iq(client, "set", f"<query xmlns='{NS_MAM}' queryid='f1'>{inner}</query>")
        results = []
        for message in stanzas(client, "message"):
            for result in message.elements(NS_MAM, "result"):
                self.assertEqual(result["queryid"], "f1")
                forwarded = next(result.elements())
                stamp = next(forwarded.elements("urn:xmpp:delay", "delay"))["stamp"]
                inner_message = next(forwarded.elements("jabber:client", "message"))
                results.append((result["id"], str(inner_message.body), inner_message["from"], stamp))
        return reply, results

    def test_bothSidesArchivedAndPaged(self) -> None:
        """
        If joe and roland exchange messages, each archive holds the conversation in order, with
        delay stamps; RSM max/after pages forward, an empty before gives the last page, and
        'with' filters by correspondent; chat states alone are not archived.
        """
        joe, roland, ann = self.server.login("joe"), self.server.login("roland"), self.server.login("ann")
        for n in range(5):
            sender, to = (joe, "roland@falcot.com") if n % 2 == 0 else (roland, "joe@falcot.com")
            sender.send(f"<message to='{to}' type='chat'><body>m{n}</body></message>")
        joe.send("<message to='roland@falcot.com' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        ann.send("<message to='joe@falcot.com' type='chat'><body>from ann</body></message>")
        reply, results = self.mam(joe)
        self.assertEqual([r[1] for r in results], ["m0", "m1", "m2", "m3", "m4", "from ann"])
        self.assertEqual(results[1][2], "roland@falcot.com/laptop")
        self.assertTrue(results[0][3].startswith("1970-01-01T00:00:00"))
        fin = next(reply.elements(NS_MAM, "fin"))
        self.assertEqual(fin.getAttribute("complete"), "true")
        _, page = self.mam(joe, f"<set xmlns='{NS_RSM}'><max>2</max></set>")
        self.assertEqual([r[1] for r in page], ["m0", "m1"])
        reply, page = self.mam(joe, f"<set xmlns='{NS_RSM}'><max>2</max><after>{page[-1][0]}</after></set>")
        self.assertEqual([r[1] for r in page], ["m2", "m3"])
        self.assertIsNone(next(reply.elements(NS_MAM, "fin")).getAttribute("complete"))
        _, page = self.mam(joe, f"<set xmlns='{NS_RSM}'><max>2</max><before/></set>")
        self.assertEqual([r[1] for r in page], ["m4", "from ann"])
        _, page = self.mam(joe, form(**{"with": "ann@falcot.com"}))
        self.assertEqual([r[1] for r in page], ["from ann"])
        _, page = self.mam(roland)
        self.assertEqual([r[1] for r in page], ["m0", "m1", "m2", "m3", "m4"])

    def test_offlineMessagesArchivedOnce(self) -> None:
        """
        If a message goes to offline storage, the recipient's archive has it exactly once, and
        dates filter the archive.
        """
        joe = self.server.login("joe")
        self.server.fake.directory.add("roland", "secret")
        joe.send("<message to='roland@falcot.com' type='chat'><body>later</body></message>")
        roland = self.server.login("roland")
        _, results = self.mam(roland)
        self.assertEqual([r[1] for r in results], ["later"])
        _, results = self.mam(roland, form(start="2030-01-01T00:00:00Z"))
        self.assertEqual(results, [])
        _, results = self.mam(roland, form(end="1970-01-02T00:00:00+00:00"))
        self.assertEqual(len(results), 1)

    def test_badQueries(self) -> None:
        """
        If a query has an unknown field, a bad date, a bad max or after id, or targets another
        account, it gets bad-request, item-not-found or forbidden; the session keeps working.
        """
        joe = self.server.login("joe")
        cases = [(form(colour="blue"), "bad-request"), (form(start="yesterday"), "bad-request"),
                 (form(start="2020-01-01T00:00:00"), "bad-request"), (form(**{"with": "a@@b"}), "jid-malformed"),
                 (f"<set xmlns='{NS_RSM}'><max>-1</max></set>", "bad-request"),
                 (f"<set xmlns='{NS_RSM}'><max>100000</max></set>", "bad-request"),
                 (f"<set xmlns='{NS_RSM}'><after>nope</after></set>", "item-not-found")]
        for inner, condition in cases:
            reply = self.iq(joe, "set", f"<query xmlns='{NS_MAM}'>{inner}</query>")
            self.assertEqual(error_condition(reply), condition, inner)
        reply = self.iq(joe, "set", f"<query xmlns='{NS_MAM}'/>", "roland@falcot.com")
        self.assertEqual(error_condition(reply), "forbidden")
        self.assertEqual(self.iq(joe, "set", f"<query xmlns='{NS_MAM}'/>")["type"], "result")

    def test_discoveredOnAccount(self) -> None:
        """
        If a client asks its account for disco#info, urn:xmpp:mam:2 is listed; prefs say 'always'.
        """
        joe = self.server.login("joe")
        info = next(self.iq(joe, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", "joe@falcot.com").elements())
        self.assertIn(NS_MAM, [f["var"] for f in info.elements("http://jabber.org/protocol/disco#info", "feature")])
        prefs = next(self.iq(joe, "get", f"<prefs xmlns='{NS_MAM}'/>").elements())
        self.assertEqual(prefs["default"], "always")


class RegisterTests(PluginTestCase):
    def test_changePassword(self) -> None:
        """
        If joe changes his password in band, the old one no longer logs in and the new one does.
        """
        joe = self.server.login("joe")
        form = next(self.iq(joe, "get", "<query xmlns='jabber:iq:register'/>", "falcot.com").elements())
        self.assertEqual(str(next(form.elements("jabber:iq:register", "username"))), "joe")
        reply = self.iq(joe, "set", "<query xmlns='jabber:iq:register'><username>joe</username>"
                                    "<password>n3w-secret</password></query>", "falcot.com")
        self.assertEqual(reply["type"], "result")
        self.server.fake.login("joe", "fresh", password="n3w-secret")
        with self.assertRaises(AssertionError):
            self.server.fake.login("joe", "old", password="secret")

    def test_refusals(self) -> None:
        """
        If a client changes someone else's password, sends an empty one, asks to remove its
        account, or a password PRECIS refuses, it gets not-authorized, bad-request, not-allowed
        or not-acceptable and the password is unchanged.
        """
        joe = self.server.login("joe")
        cases = [("<username>roland</username><password>x</password>", "not-authorized"),
                 ("<username>joe</username><password/>", "bad-request"),
                 ("<username>joe</username>", "bad-request"),
                 ("<remove/>", "not-allowed"),
                 ("<username>joe</username><password>zero\u200bwidth</password>", "not-acceptable")]
        for inner, condition in cases:
            reply = self.iq(joe, "set", f"<query xmlns='jabber:iq:register'>{inner}</query>", "falcot.com")
            self.assertEqual(error_condition(reply), condition, inner)
        self.server.fake.login("joe", "still", password="secret")


class ServerPingTests(PluginTestCase):
    def test_idleClientPingedThenDropped(self) -> None:
        """
        If a client stays idle for the ping interval it gets a ping from the server; answering
        keeps it connected, while a client that does not answer within the timeout is closed
        with connection-timeout and its contacts see it go unavailable.
        """
        good, silent = self.server.login("joe", "good"), self.server.login("joe", "silent")
        self.server.fake.clock.advance(300)
        pings = [iq for iq in stanzas(good, "iq", "get") if next(iq.elements("urn:xmpp:ping", "ping"), None) is not None]
        self.assertEqual(len(pings), 1)
        self.assertEqual(pings[0]["from"], "falcot.com")
        good.send(f"<iq type='result' id='{pings[0]['id']}' to='falcot.com'/>")
        self.assertEqual(len([iq for iq in stanzas(silent, "iq", "get")]), 1)
        silent.clear()
        self.server.fake.clock.advance(60)
        self.assertEqual(silent.stream_error(), "connection-timeout")
        self.assertEqual([p["from"] for p in stanzas(good, "presence", "unavailable")], ["joe@falcot.com/silent"])
        self.assertIsNone(good.stream_error())

    def test_activeClientNotPinged(self) -> None:
        """
        If a client keeps sending stanzas, the server does not ping it.
        """
        busy = self.server.login("joe", "busy")
        for _ in range(4):
            self.server.fake.clock.advance(150)
            busy.send("<presence><status>busy</status></presence>")
        self.assertEqual(stanzas(busy, "iq", "get"), [])


class ClientStateTests(PluginTestCase):
    def test_inactiveHoldsPresenceNotMessages(self) -> None:
        """
        If joe's phone says it is inactive, roland's status changes are held back (only the
        latest kept) while messages arrive at once, and going active delivers the held presence;
        joe's laptop, still active, gets every change.
        """
        phone, laptop = self.server.login("joe", "phone"), self.server.login("joe", "laptop")
        roland = self.server.login("roland")
        self.assertIn(b"urn:xmpp:csi:0", phone.raw)
        phone.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        phone.clear()
        laptop.clear()
        for show in ("away", "xa"):
            roland.send(f"<presence to='joe@falcot.com'><show>{show}</show></presence>")
        roland.send("<message to='joe@falcot.com/phone' type='chat'><body>ping</body></message>")
        self.assertEqual([str(m.body) for m in stanzas(phone, "message")], ["ping"])
        self.assertEqual(stanzas(phone, "presence"), [])
        self.assertEqual([str(p.show) for p in stanzas(laptop, "presence")], ["away", "xa"])
        phone.send("<active xmlns='urn:xmpp:csi:0'/>")
        self.assertEqual([str(p.show) for p in stanzas(phone, "presence")], ["xa"])
        self.assertIsNone(phone.stream_error())

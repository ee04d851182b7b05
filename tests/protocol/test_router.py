"""Routing between logged-in clients: RFC 6121 §8.5 delivery rules, bounces and plugin events."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tests.protocol.xmpp_helpers import Client, FakeServer
from unirtc.xmpp.stanzas import StanzaError


def messages(client: Client) -> list[domish.Element]:
    return [e for e in client.elements() if e.name == "message"]


def error_condition(stanza: domish.Element) -> str:
    return next(stanza.error.elements()).name


class DeliveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.sender = self.server.login("roland", "desk")

    def online(self, resource: str, priority: int | None = 0) -> Client:
        client = self.server.login("joe", resource)
        if priority is not None:
            client.send(f"<presence><priority>{priority}</priority></presence>")
        client.clear()
        return client

    def test_bareJidGoesToHighestPriority(self) -> None:
        """
        If a message is sent to a bare JID, it reaches the available resources with the highest
        non-negative priority (all of them on a tie), not the others.
        """
        low, high1, high2 = self.online("low", 1), self.online("high1", 5), self.online("high2", 5)
        self.sender.send("<message to='joe@falcot.com' type='chat'><body>hi</body></message>")
        self.assertEqual([len(messages(c)) for c in (low, high1, high2)], [0, 1, 1])

    def test_negativePriorityAndUnavailableGetNothing(self) -> None:
        """
        If the only resources are unavailable or have negative priority, a chat message to the bare
        JID goes to message/offline; without an offline plugin the sender gets service-unavailable.
        """
        negative, silent = self.online("neg", -1), self.online("silent", None)
        offline = []
        self.server.bus.add("message/offline", lambda event: offline.append(str(event.to)))
        self.sender.send("<message to='joe@falcot.com' id='1'><body>hi</body></message>")
        self.assertEqual(offline, ["joe@falcot.com"])
        self.assertEqual(messages(negative) + messages(silent), [])
        self.assertEqual([error_condition(m) for m in messages(self.sender)], ["service-unavailable"])

    def test_offlineHandlerTakesMessage(self) -> None:
        """
        If a plugin handles message/offline (it stored the message), the sender gets no error.
        """
        self.server.directory.add("joe", "secret")
        stored = []
        self.server.bus.add("message/offline", lambda event: stored.append(event.stanza) or True)
        self.sender.send("<message to='joe@falcot.com' id='1'><body>later</body></message>")
        self.assertEqual([str(m.body) for m in stored], ["later"])
        self.assertEqual(messages(self.sender), [])

    def test_noOfflinePluginBounces(self) -> None:
        """
        If the recipient exists but is offline and no plugin stores messages, the sender gets
        service-unavailable with the message id; a message to a user who does not exist too.
        """
        self.server.directory.add("joe", "secret")
        for to in ("joe@falcot.com", "nobody@falcot.com"):
            self.sender.send(f"<message to='{to}' id='m-{to}'><body>x</body></message>")
        bounces = messages(self.sender)
        self.assertEqual([(b["type"], b["id"], b["from"]) for b in bounces],
                         [("error", "m-joe@falcot.com", "joe@falcot.com"),
                          ("error", "m-nobody@falcot.com", "nobody@falcot.com")])
        self.assertEqual({error_condition(b) for b in bounces}, {"service-unavailable"})

    def test_fullJidDelivery(self) -> None:
        """
        If a stanza names a full JID, it goes to that resource only, available or not; a message to
        an unknown resource is delivered as if to the bare JID; an IQ to one bounces.
        """
        phone, laptop = self.online("phone", 3), self.online("laptop", None)
        self.sender.send("<message to='joe@falcot.com/laptop'><body>direct</body></message>")
        self.assertEqual((len(messages(laptop)), len(messages(phone))), (1, 0))
        self.sender.send("<message to='joe@falcot.com/gone'><body>fallback</body></message>")
        self.assertEqual([str(m.body) for m in messages(phone)], ["fallback"])
        self.sender.send("<iq to='joe@falcot.com/gone' type='get' id='q'><query xmlns='jabber:iq:version'/></iq>")
        reply = self.sender.last()
        self.assertEqual((reply.name, reply["type"], error_condition(reply)), ("iq", "error", "service-unavailable"))

    def test_iqBetweenResources(self) -> None:
        """
        If a client sends an IQ to another user's full JID, it arrives stamped, and the result
        comes back to the requester.
        """
        laptop = self.online("laptop")
        self.sender.send("<iq to='joe@falcot.com/laptop' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        request = laptop.last()
        self.assertEqual((request["from"], request["id"]), ("roland@falcot.com/desk", "v"))
        laptop.send("<iq to='roland@falcot.com/desk' type='result' id='v'/>")
        self.assertEqual((self.sender.last()["type"], self.sender.last()["from"]), ("result", "joe@falcot.com/laptop"))

    def test_presenceToBareGoesToAllAvailable(self) -> None:
        """
        If a directed presence is sent to a bare JID, every available resource gets it, whatever its
        priority; an unavailable one does not.
        """
        negative, positive, silent = self.online("a", -5), self.online("b", 5), self.online("c", None)
        for client in (negative, positive, silent):
            client.clear()  # their own presences, sent to each other
        self.sender.send("<presence to='joe@falcot.com'/>")
        counts = [len([e for e in c.elements() if e.name == "presence"]) for c in (negative, positive, silent)]
        self.assertEqual(counts, [1, 1, 0])

    def test_probesAreNotDeliveredToClients(self) -> None:
        """
        If a presence probe reaches a user's bare or full JID and no presence plugin answers it,
        it is dropped: probes are for the server (RFC 6121 §4.3.2), never shown to clients.
        """
        laptop = self.online("laptop", 1)
        laptop.clear()
        self.sender.send("<presence to='joe@falcot.com' type='probe'/>")
        self.sender.send("<presence to='joe@falcot.com/laptop' type='probe'/>")
        self.assertEqual(laptop.elements(), [])
        self.assertEqual(self.sender.elements(), [])

    def test_groupchatAndErrorsToBare(self) -> None:
        """
        If a groupchat message is sent to a user's bare JID it bounces; an error message is dropped
        without a bounce (no error loops).
        """
        self.online("a")
        self.sender.send("<message to='joe@falcot.com' type='groupchat' id='g'><body>x</body></message>")
        self.sender.send("<message to='joe@falcot.com/nowhere' type='error' id='e'/>")
        bounces = messages(self.sender)
        self.assertEqual([(b["id"], error_condition(b)) for b in bounces], [("g", "service-unavailable")])

    def test_remoteDomainNotFound(self) -> None:
        """
        If a stanza is for a domain this server does not serve, it bounces with
        remote-server-not-found; a route/remote handler (s2s) may take it instead.
        """
        self.sender.send("<message to='friend@example.org' id='r'><body>x</body></message>")
        self.assertEqual(error_condition(self.sender.last()), "remote-server-not-found")
        taken = []
        self.server.bus.add("route/remote", lambda event: taken.append(event.to.domain) or True)
        self.sender.clear()
        self.sender.send("<message to='friend@example.org' id='r'><body>x</body></message>")
        self.assertEqual((taken, messages(self.sender)), (["example.org"], []))

    def test_malformedRecipient(self) -> None:
        """
        If 'to' is not a valid JID, the sender gets jid-malformed.
        """
        self.sender.send("<message to='a@b@c' id='x'><body>x</body></message>")
        self.assertEqual(error_condition(self.sender.last()), "jid-malformed")

    def test_unknownIqToServer(self) -> None:
        """
        If nobody handles an IQ get to the server or to an account, the answer is
        service-unavailable; results and errors are never answered.
        """
        self.sender.send("<iq to='falcot.com' type='get' id='1'><query xmlns='urn:example'/></iq>")
        self.sender.send("<iq type='set' id='2'><query xmlns='urn:example'/></iq>")
        self.sender.send("<iq to='falcot.com' type='result' id='3'/>")
        replies = [e for e in self.sender.elements() if e.name == "iq"]
        self.assertEqual([(r["id"], error_condition(r)) for r in replies],
                         [("1", "service-unavailable"), ("2", "service-unavailable")])


class PluginEventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.client = self.server.login("joe", "laptop")

    def ask(self, payload: str = "<time xmlns='urn:xmpp:time'/>", to: str = "falcot.com") -> domish.Element:
        self.client.send(f"<iq to='{to}' type='get' id='q'>{payload}</iq>")
        return self.client.last()

    def test_handlerReturnsResult(self) -> None:
        """
        If an iq-get/host/<ns>:<name> handler returns an element, it is sent as the answer.
        """
        self.server.bus.add("iq-get/host/urn:xmpp:time:time", lambda event: event.result())
        reply = self.ask()
        self.assertEqual((reply["type"], reply["id"], reply["to"]), ("result", "q", "joe@falcot.com/laptop"))

    def test_handlerRaisesStanzaError(self) -> None:
        """
        If a handler raises StanzaError, the requester gets that error.
        """
        def refuse(event):
            raise StanzaError("forbidden", text="not for you")

        self.server.bus.add("iq-get/host/urn:xmpp:time:time", refuse)
        reply = self.ask()
        self.assertEqual((reply["type"], error_condition(reply), reply.error["type"]), ("error", "forbidden", "auth"))

    def test_handlerCrashIsInternalServerError(self) -> None:
        """
        If a handler raises anything else, the requester gets internal-server-error, the error is
        logged, and the session goes on.
        """
        self.server.bus.add("iq-get/host/urn:xmpp:time:time", lambda event: 1 / 0)
        self.assertEqual(error_condition(self.ask()), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(self.client.disconnected)

    def test_deferredAndCoroutineAnswers(self) -> None:
        """
        If a handler returns a Deferred or is a coroutine, its eventual element is the answer, and a
        failure with StanzaError becomes the error reply.
        """
        later: Deferred[domish.Element] = Deferred()
        self.server.bus.add("iq-get/bare/urn:xmpp:time:time", lambda event: later)

        async def coroutine(event):
            raise StanzaError("item-not-found")

        self.server.bus.add("iq-get/host/urn:xmpp:time:time", coroutine)
        self.client.send("<iq type='get' id='d'><time xmlns='urn:xmpp:time'/></iq>")
        self.assertEqual(self.client.elements(), [])
        later.callback(domish.Element(("jabber:client", "iq"), attribs={"type": "result", "id": "d",
                                                                      "to": "joe@falcot.com/laptop"}))
        self.assertEqual(self.client.last()["id"], "d")
        self.assertEqual(error_condition(self.ask()), "item-not-found")

    def test_preHookCanConsume(self) -> None:
        """
        If a pre-message/bare handler returns True, the message goes no further; the event carries
        the session that sent it and the stamped stanza.
        """
        other = self.server.login("roland", "desk")
        other.send("<presence/>")
        other.clear()
        seen = []
        self.server.bus.add("pre-message/bare", lambda event: seen.append((event.origin.jid.full, event.stanza["from"])) or True)
        self.client.send("<message to='roland@falcot.com'><body>x</body></message>")
        self.assertEqual(seen, [("joe@falcot.com/laptop", "joe@falcot.com/laptop")])
        self.assertEqual(messages(other), [])

    def test_sessionEvents(self) -> None:
        """
        If a client binds, resource-bound and session-started fire with its session; when it goes,
        session-ended fires.
        """
        events = []
        for name in ("resource-bound", "session-started", "session-ended"):
            self.server.bus.add(name, lambda event, name=name: events.append((name, event.session.jid.full)))
        client = self.server.login("roland", "desk")
        client.lose()
        self.assertEqual([n for n, _ in events], ["resource-bound", "session-started", "session-ended"])
        self.assertEqual({j for _, j in events}, {"roland@falcot.com/desk"})

"""Room history (XEP-0045 §7.2.15): what a joining occupant asks for and what it gets."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tests.unit.muc_helpers import xml
from unirtc.muc.history import History, HistoryRequest, HistoryRequestError
from unirtc.muc.model import NS_DELAY, NS_MUC

ROOM = "ops@conference.falcot.com"


def request(attributes: str) -> HistoryRequest:
    presence = xml(f"<presence><x xmlns='{NS_MUC}'><history {attributes}/></x></presence>")
    return HistoryRequest.parse(next(presence.elements(NS_MUC, "x")))


def message(n: int) -> domish.Element:
    return xml(f"<message from='{ROOM}/Joe' type='groupchat'><body>message {n}</body></message>")


def bodies(messages: list[domish.Element]) -> list[str]:
    return [str(next(m.elements(m.uri, "body"))) for m in messages]


class HistoryRequestTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        If a join asks for history limits, each is read; no <x/> or no <history/> means none.
        """
        parsed = request("maxchars='100' maxstanzas='5' seconds='60' since='1970-01-01T00:01:00Z'")
        self.assertEqual(parsed, HistoryRequest(100, 5, 60, 60.0))
        self.assertEqual(HistoryRequest.parse(None), HistoryRequest())
        self.assertEqual(HistoryRequest.parse(domish.Element((NS_MUC, "x"))), HistoryRequest())

    def test_malformed(self) -> None:
        """
        If a limit is negative, not a number, a non-ASCII digit, huge, or a date that is not
        one, parsing raises HistoryRequestError.
        """
        for attributes in ("maxstanzas='-1'", "maxchars='ten'", "seconds='\u00b2'", "maxstanzas='1" + "0" * 20 + "'",
                           "since='yesterday'", "since='2020-01-01T00:00:00'"):
            self.assertRaises(HistoryRequestError, request, attributes)


class HistoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.history = History(10)
        for n in range(12):
            self.history.add(message(n), now=1000.0 + n)

    def replay(self, attributes: str = "", cap: int = 20) -> list[domish.Element]:
        return list(self.history.replay(request(attributes), ROOM, "ann@falcot.com/x", 2000.0, cap))

    def test_keepsLastMessagesWithDelay(self) -> None:
        """
        If more messages than the room keeps were said, the newest are replayed, oldest first,
        addressed to the newcomer, each with a delay stamped by the room.
        """
        replayed = self.replay()
        self.assertEqual(bodies(replayed), [f"message {n}" for n in range(2, 12)])
        delay = next(replayed[0].elements(NS_DELAY, "delay"))
        self.assertEqual((replayed[0]["to"], delay["from"], delay["stamp"]),
                         ("ann@falcot.com/x", ROOM, "1970-01-01T00:16:42Z"))

    def test_limits(self) -> None:
        """
        If limits are given they all apply, and the room's cap applies on top of them.
        """
        self.assertEqual(bodies(self.replay("maxstanzas='2'")), ["message 10", "message 11"])
        self.assertEqual(bodies(self.replay("maxstanzas='0'")), [])
        self.assertEqual(bodies(self.replay(cap=3)), ["message 9", "message 10", "message 11"])
        self.assertEqual(bodies(self.replay(cap=0)), [])
        self.assertEqual(len(self.replay("since='1970-01-01T00:16:48Z'")), 3)  # after 1008 s: 9, 10, 11
        recent = self.history.replay(request("seconds='2'"), ROOM, "x@y", 1011.5, 20)
        self.assertEqual(bodies(list(recent)), ["message 10", "message 11"])

    def test_maxchars(self) -> None:
        """
        If maxchars is given, whole newest messages fit into it and none is cut.
        """
        one = len(message(1).toXml())
        replayed = self.replay(f"maxchars='{(one + 200) * 2}'")
        self.assertEqual(bodies(replayed), ["message 10", "message 11"])
        self.assertEqual(self.replay("maxchars='0'"), [])

    def test_resizeAndDisable(self) -> None:
        """
        If the room's history length shrinks, older messages go; a length of 0 stores nothing.
        """
        self.history.resize(2)
        self.assertEqual(bodies(self.replay()), ["message 10", "message 11"])
        self.history.resize(0)
        self.history.add(message(99), 3000.0)
        self.assertEqual(len(self.history), 0)

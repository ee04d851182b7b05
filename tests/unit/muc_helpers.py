"""Drive a MucService with XML text and read its answers back as elements, per recipient."""

from __future__ import annotations

from itertools import count

from twisted.words.xish import domish

from unirtc.muc.model import NS_MUC, NS_USER, MucOptions
from unirtc.muc.service import MucService
from unirtc.xmpp.jid import JID
from unirtc.xmpp.parser import Stanza, StreamParser
from unirtc.xmpp.stanzas import NS_STANZAS

SERVICE = "conference.falcot.com"
ROOM = f"ops@{SERVICE}"
HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          b"version='1.0'>")


def xml(text: str) -> domish.Element:
    """One stanza from its XML text, parsed as a client stream would parse it."""
    parser = StreamParser(10_000_000)
    events = parser.feed(HEADER + text.encode("utf-8"))
    stanzas = [e.element for e in events if isinstance(e, Stanza)]
    assert len(stanzas) == 1, text
    return stanzas[0]


def codes(element: domish.Element) -> set[int]:
    x = next(element.elements(NS_USER, "x"), None)
    return {int(s["code"]) for s in x.elements(NS_USER, "status")} if x is not None else set()


def muc_item(element: domish.Element) -> domish.Element | None:
    x = next(element.elements(NS_USER, "x"), None)
    return next(x.elements(NS_USER, "item"), None) if x is not None else None


def condition(element: domish.Element) -> str | None:
    """The stanza error condition of an error reply, or None."""
    if element.getAttribute("type") != "error":
        return None
    error = next(c for c in element.elements() if c.name == "error")
    return next(c.name for c in error.elements(NS_STANZAS) if c.name != "text")


class Muc:
    """A service with deterministic stanza-ids and a clock the test moves by hand."""

    def __init__(self, creation: str = "anyone", **options: object) -> None:
        ids = count(1)
        self.options = MucOptions(new_id=lambda: f"sid-{next(ids)}",
                                  server_admins=frozenset({JID.parse("admin@falcot.com")}),
                                  **options)  # type: ignore[arg-type]
        self.service = MucService(SERVICE, self.options, creation=creation, local_domains=["falcot.com"])
        self.now = 1_700_000_000.0

    def send(self, text: str) -> list[domish.Element]:
        return self.service.handle(xml(text), self.now)

    def join(self, user: str, nick: str, room: str = ROOM, x: str = "") -> list[domish.Element]:
        return self.send(f"<presence from='{user}' to='{room}/{nick}'><x xmlns='{NS_MUC}'>{x}</x></presence>")

    def leave(self, user: str, nick: str, room: str = ROOM) -> list[domish.Element]:
        return self.send(f"<presence type='unavailable' from='{user}' to='{room}/{nick}'/>")

    def say(self, user: str, body: str, room: str = ROOM, id: str = "m1") -> list[domish.Element]:
        return self.send(f"<message type='groupchat' id='{id}' from='{user}' to='{room}'><body>{body}</body></message>")

    def iq(self, user: str, payload: str, type: str = "get", to: str = ROOM) -> list[domish.Element]:
        return self.send(f"<iq type='{type}' id='q1' from='{user}' to='{to}'>{payload}</iq>")

    def instant_room(self, owner: str, nick: str, room: str = ROOM) -> list[domish.Element]:
        """Create ``room`` and accept the default configuration (XEP-0045 §10.1.2)."""
        self.join(owner, nick, room)
        return self.iq(owner, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                              "<x xmlns='jabber:x:data' type='submit'/></query>", "set", room)

    def configure(self, owner: str, fields: dict[str, str], room: str = ROOM) -> list[domish.Element]:
        inner = "".join(f"<field var='{var}'><value>{value}</value></field>" for var, value in fields.items())
        return self.iq(owner, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                              f"<x xmlns='jabber:x:data' type='submit'>{inner}</x></query>", "set", room)


def to(out: list[domish.Element], jid: str) -> list[domish.Element]:
    """The stanzas addressed to ``jid``, in order."""
    return [e for e in out if e.getAttribute("to") == jid]

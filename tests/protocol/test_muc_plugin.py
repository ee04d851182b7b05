"""mod_muc on the fake server: real c2s sessions, the real router and plugin storage on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tests.protocol.xmpp_helpers import Client, FakeServer
from unirtc.settings import MUCSettings
from unirtc.directory import store
from unirtc.directory.engine import make_engine
from unirtc.directory.models import Base
from unirtc.muc.model import NS_DISCO_INFO, NS_MUC, NS_USER
from unirtc.plugin import PluginContext, PluginManager
from unirtc.xmpp.jid import JID

SERVICE = "conference.falcot.com"
ROOM = f"ops@{SERVICE}"
OWNER = "http://jabber.org/protocol/muc#owner"


class SqlRunner:
    """``Directory.run`` without threads; ``hold()`` keeps calls pending until ``release()``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.held: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] | None = None

    def run(self, operation: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self.held is not None:
            d: Deferred[Any] = Deferred()
            self.held.append((d, operation, args))
            return d
        return self._execute(operation, args)

    def _execute(self, operation: Callable[..., Any], args: tuple[Any, ...]) -> Deferred[Any]:
        try:
            with store.transaction(self.engine) as session:
                return succeed(operation(session, *args))
        except Exception:
            return fail()

    def hold(self) -> None:
        self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for d, operation, args in held:
            self._execute(operation, args).chainDeferred(d)


class MucServer:
    """The fake server with mod_muc loaded; a second one on the same engine is a restart."""

    def __init__(self, engine: Engine, hold: bool = False, **muc: Any) -> None:
        self.fake = FakeServer()
        self.runner = SqlRunner(engine)
        if hold:
            self.runner.hold()
        self.fake.directory.run = self.runner.run  # type: ignore[attr-defined]
        settings = SimpleNamespace(muc=MUCSettings(SERVICE, **muc),
                                   server=SimpleNamespace(domain="falcot.com", admins=()))
        self.context = PluginContext(settings=settings, directory=self.fake.directory,
                                     reactor=self.fake.clock, bus=self.fake.bus)
        self.context.items.add("xmpp-router", self.fake.router)
        self.manager = PluginManager(["muc"], (), self.context)
        self.manager.startService()

    @property
    def component(self) -> Any:
        return self.fake.router.components[SERVICE]

    def online(self, user: str, resource: str = "laptop") -> Client:
        client = self.fake.login(user, resource)
        client.send("<presence/>")
        client.clear()
        return client

    def stop(self) -> None:
        if self.manager.running:
            self.manager.stopService()


def join(client: Client, nick: str, room: str = ROOM) -> list[domish.Element]:
    client.clear()
    client.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'/></presence>")
    return client.elements()


def codes(element: domish.Element) -> set[int]:
    x = next(element.elements(NS_USER, "x"), None)
    return {int(s["code"]) for s in x.elements(NS_USER, "status")} if x is not None else set()


def create(client: Client, nick: str, fields: str = "", room: str = ROOM) -> None:
    join(client, nick, room)
    client.send(f"<iq type='set' id='cfg' to='{room}'><query xmlns='{OWNER}'>"
                f"<x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>")
    assert client.last()["type"] == "result", client.last().toXml()
    client.clear()


class MucPluginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = make_engine(f"sqlite:///{self.mktemp()}.sqlite")
        Base.metadata.create_all(self.engine)
        self.addCleanup(self.engine.dispose)
        self.server = MucServer(self.engine)
        self.addCleanup(self.server.stop)

    def test_chatThroughTheRouter(self) -> None:
        """
        If two logged-in clients join a room and one speaks, both get the message from the
        speaker's occupant JID over their streams.
        """
        joe, roland = self.server.online("joe"), self.server.online("roland")
        create(joe, "Joe")
        self.assertEqual(codes(join(roland, "Roland")[-2]), {110})
        joe.clear()
        roland.clear()
        roland.send(f"<message type='groupchat' to='{ROOM}' id='g1'><body>hello</body></message>")
        for client in (joe, roland):
            (message,) = client.elements()
            self.assertEqual((message["from"], str(message.body)), (f"{ROOM}/Roland", "hello"))

    def test_disconnectLeavesRooms(self) -> None:
        """
        If an occupant's connection drops, the other occupants get its unavailable presence.
        """
        joe, roland = self.server.online("joe"), self.server.online("roland")
        create(joe, "Joe")
        join(roland, "Roland")
        joe.clear()
        roland.lose()
        (gone,) = joe.elements()
        self.assertEqual((gone["from"], gone["type"]), (f"{ROOM}/Roland", "unavailable"))

    def test_unavailableBroadcastLeavesRooms(self) -> None:
        """
        If an occupant's client broadcasts unavailable presence, it leaves the room too
        (RFC 6121 §4.6.3), and the room keeps serving the others.
        """
        joe, roland = self.server.online("joe"), self.server.online("roland")
        create(joe, "Joe")
        join(roland, "Roland")
        joe.clear()
        roland.send("<presence type='unavailable'/>")
        self.assertEqual([(e["from"], e["type"]) for e in joe.elements()], [(f"{ROOM}/Roland", "unavailable")])
        self.assertNotIn(JID.parse("roland@falcot.com/laptop"), self.server.component.service.rooms[JID.parse(ROOM)].sessions)

    def test_ghostRemovedWhenRouterBounces(self) -> None:
        """
        If an occupant's session vanished without the room hearing of it, the router's bounce
        of the next groupchat removes it with status 333.
        """
        joe, roland = self.server.online("joe"), self.server.online("roland")
        create(joe, "Joe")
        join(roland, "Roland")
        session = self.server.fake.router.session(JID.parse("roland@falcot.com/laptop"))
        self.server.fake.router.unbind(session)
        joe.clear()
        joe.send(f"<message type='groupchat' to='{ROOM}'><body>anyone?</body></message>")
        presences = [e for e in joe.elements() if e.name == "presence"]
        self.assertEqual([(e["from"], e["type"], codes(e)) for e in presences],
                         [(f"{ROOM}/Roland", "unavailable", {333})])

    def test_persistentRoomSurvivesRestart(self) -> None:
        """
        If a persistent members-only room is configured and the server restarts, the room is
        back with its name, members and subject; at shutdown occupants got status 332.
        """
        joe = self.server.online("joe")
        create(joe, "Joe", "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
                           "<field var='muc#roomconfig_membersonly'><value>1</value></field>"
                           "<field var='muc#roomconfig_roomname'><value>Operations</value></field>")
        joe.send(f"<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'>"
                 "<item jid='roland@falcot.com' affiliation='member'/></query></iq>")
        joe.send(f"<message type='groupchat' to='{ROOM}'><subject>Kept</subject></message>")
        joe.clear()
        self.server.stop()
        self.assertEqual([codes(e) for e in joe.elements()], [{110, 332}])
        restarted = MucServer(self.engine)
        self.addCleanup(restarted.stop)
        ann = restarted.online("ann")
        self.assertEqual(join(ann, "Ann")[0].error.firstChildElement().name, "registration-required")
        roland = restarted.online("roland")
        out = join(roland, "Roland")
        self.assertEqual(str(out[-1].subject), "Kept")
        roland.send(f"<iq type='get' id='i' to='{ROOM}'><query xmlns='{NS_DISCO_INFO}'/></iq>")
        query = roland.last().firstChildElement()
        self.assertEqual(next(query.elements(NS_DISCO_INFO, "identity"))["name"], "Operations")
        self.assertIn("muc_persistent", {f["var"] for f in query.elements(NS_DISCO_INFO, "feature")})

    def test_stanzasWaitForStoredRooms(self) -> None:
        """
        If a stanza arrives while persistent rooms are still loading, it is answered once they
        are loaded, against the stored room rather than a new one.
        """
        joe = self.server.online("joe")
        create(joe, "Joe", "<field var='muc#roomconfig_persistentroom'><value>1</value></field>")
        self.server.stop()
        restarted = MucServer(self.engine, hold=True)
        self.addCleanup(restarted.stop)
        roland = restarted.online("roland")
        join(roland, "Roland")
        self.assertEqual(roland.elements(), [])
        restarted.runner.release()
        self.assertNotIn(201, codes(roland.elements()[-2]))

    def test_failureBecomesInternalServerError(self) -> None:
        """
        If the MUC service fails on a stanza, the sender gets internal-server-error and the
        next stanza is served.
        """
        joe = self.server.online("joe")
        service = self.server.component.service
        original = service.handle
        service.handle = lambda *args: 1 / 0  # type: ignore[method-assign]
        join(joe, "Joe")
        self.assertEqual(joe.last().error.firstChildElement().name, "internal-server-error")
        self.flushLoggedErrors(ZeroDivisionError)
        service.handle = original  # type: ignore[method-assign]
        self.assertEqual(codes(join(joe, "Joe")[0]), {110, 201})

    def test_unloadRemovesComponent(self) -> None:
        """
        If the plugin is unloaded, the conference domain is no longer served and the server's
        disco#items no longer lists it.
        """
        self.assertIn((SERVICE, "Chatrooms"), self.server.context.items.get("disco-item"))
        self.server.stop()
        self.assertNotIn(SERVICE, self.server.fake.router.components)
        self.assertNotIn((SERVICE, "Chatrooms"), self.server.context.items.get("disco-item"))

    def test_creationPolicyFromSettings(self) -> None:
        """
        If [muc] restrict_room_creation is admins, a plain user cannot create a room.
        """
        strict = MucServer(self.engine, restrict_room_creation="admins")
        self.addCleanup(strict.stop)
        joe = strict.online("joe")
        self.assertEqual(join(joe, "Joe")[0].error.firstChildElement().name, "not-allowed")

    def test_storageFailureIsLoggedAndRoomWorks(self) -> None:
        """
        If storing a persistent room fails, the failure is logged and the room keeps serving.
        """
        from unirtc.storage import StorageError

        self.server.component.store.kv.set = lambda *args: fail(StorageError("disk full"))
        joe = self.server.online("joe")
        create(joe, "Joe", "<field var='muc#roomconfig_persistentroom'><value>1</value></field>")
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 1)
        joe.send(f"<message type='groupchat' to='{ROOM}'><body>still here</body></message>")
        self.assertEqual(str(joe.last().body), "still here")

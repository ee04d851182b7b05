"""The service tree built from settings, on a memory reactor: names, listeners, stop order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import load_settings
from unirtc.service import SequentialMultiService, makeService, service_named
from unirtc.turn.responder import StunResponder


class MemoryReactorWithUDP(MemoryReactorClock):
    """Twisted's memory reactor has no listenUDP; this one records UDP listeners (STUN) too."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: dict[int, tuple] = {}

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpPorts[port] = (protocol, interface, maxPacketSize)


class ServiceTreeTests(SynchronousTestCase):
    def settings(self, extra: str = ""):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text(f"[server]\ndomain = falcot.com\n[web]\nlisten = tcp:5281\n{extra}")
        return load_settings(folder / "u.ini")

    def test_treeAndWebListener(self) -> None:
        """
        If the service is built and privileged-started, the tree has its named children in order and
        the web listener is bound on the configured port with TLS (first, before the protocol
        listeners), and the STUN responder on the default udp:3478.
        """
        reactor = MemoryReactorWithUDP()
        root = makeService(self.settings(), reactor)
        self.assertEqual([s.name for s in root], ["directory", "certificate", "plugins", "listeners"])
        root.privilegedStartService()
        self.assertEqual(reactor.tcpServers[0][0], 5281)
        self.assertIn("TLS", type(reactor.tcpServers[0][1]).__name__)
        self.assertIsInstance(reactor.udpPorts[3478][0], StunResponder)
        self.assertIsNotNone(service_named(root, "listeners", "web"))

    def test_webWithoutTlsAndDisabled(self) -> None:
        """
        If [web] tls = no the site is served in clear; if listen is empty there is no web listener.
        """
        reactor = MemoryReactorWithUDP()
        makeService(self.settings("tls = no\n"), reactor).privilegedStartService()
        self.assertEqual(type(reactor.tcpServers[0][1]).__name__, "Site")
        reactor = MemoryReactorWithUDP()
        settings = self.settings()
        settings = replace(settings, web=replace(settings.web, listen=""))
        makeService(settings, reactor).privilegedStartService()
        self.assertNotIn(5281, [port for port, *_ in reactor.tcpServers])


class SequentialStopTests(SynchronousTestCase):
    def test_stopsChildrenOneAfterAnotherInReverse(self) -> None:
        """
        If children stop asynchronously, the next (earlier) child is only stopped once the later
        one has finished.
        """
        from twisted.internet.defer import Deferred

        events, pending = [], {}

        class Child(Service):
            def stopService(self):
                super().stopService()
                events.append(f"stop {self.name}")
                pending[self.name] = Deferred()
                return pending[self.name]

        root = SequentialMultiService()
        for name in ("directory", "plugins", "listeners"):
            child = Child()
            child.setName(name)
            child.setServiceParent(root)
        root.startService()
        done = root.stopService()
        self.assertEqual(events, ["stop listeners"])
        pending["listeners"].callback(None)
        self.assertEqual(events, ["stop listeners", "stop plugins"])
        pending["plugins"].callback(None)
        pending["directory"].callback(None)
        self.assertEqual(events, ["stop listeners", "stop plugins", "stop directory"])
        self.successResultOf(done)

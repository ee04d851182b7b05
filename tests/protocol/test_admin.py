"""The admin socket protocol: one JSON answer per command line."""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from unirtc import __version__
from unirtc.admin import AdminFactory
from unirtc.plugin import Items


@dataclass
class Link:
    remote: str


class FakeLinks:
    def status(self) -> list[Link]:
        return [Link("example.org")]


class AdminProtocolTests(SynchronousTestCase):
    def ask(self, items: Items, data: bytes):
        protocol = AdminFactory(items).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport

    def test_commands(self) -> None:
        """
        If ctl asks for version and s2s, each gets one JSON line; s2s lists every link manager's
        links (none when federation is off); an unknown command gets an error naming the known ones.
        """
        items = Items()
        replies = self.ask(items, b"version\ns2s\nfrobnicate\n").value().splitlines()
        self.assertEqual([json.loads(r) for r in replies[:2]], [{"version": __version__}, {"links": []}])
        self.assertIn("known: s2s, version", json.loads(replies[2])["error"])
        items.add("s2s-links", FakeLinks())
        self.assertEqual(json.loads(self.ask(items, b"s2s\n").value()), {"links": [{"remote": "example.org"}]})

    def test_overlongLineClosesTheConnection(self) -> None:
        """
        If a client sends a line longer than the limit, the connection is closed unanswered.
        """
        transport = self.ask(Items(), b"x" * 5000)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

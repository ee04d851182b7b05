"""The README's "Writing a plugin" example, loaded as written, answers as the README says."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import FakeServer
from unirtc.plugin import PluginContext, PluginManager

README = Path(__file__).resolve().parents[2] / "README.md"


class ReadmePluginTests(SynchronousTestCase):
    def test_uptimeExample(self) -> None:
        """
        If the README's example plugin is saved in a plugin folder and loaded, a client's
        Last Activity query to the server gets the seconds since the plugin loaded, and the
        feature is advertised.
        """
        section = README.read_text().split("### Writing a plugin", 1)[1]
        code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "mod_uptime.py").write_text(code)
        server = FakeServer()
        context = PluginContext(settings=SimpleNamespace(), directory=server.directory,
                                reactor=server.clock, bus=server.bus)
        context.items.add("xmpp-router", server.router)
        manager = PluginManager(["uptime"], (folder,), context)
        manager.startService()
        self.addCleanup(manager.stopService)
        server.clock.advance(42.5)
        client = server.login("joe", "laptop")
        client.send("<iq type='get' id='u' to='falcot.com'><query xmlns='jabber:iq:last'/></iq>")
        reply = client.last()
        self.assertEqual(reply["type"], "result")
        self.assertEqual(next(reply.elements("jabber:iq:last", "query"))["seconds"], "42")
        self.assertIn("jabber:iq:last", context.items.get("feature"))

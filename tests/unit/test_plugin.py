"""The hook bus, items, Module bookkeeping and plugin location."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.plugin import HookBus, Items, Module, PluginContext, PluginManager, PluginNotFound, locate


class HookBusTests(SynchronousTestCase):
    def test_priorityOrderAndFirstAnswerWins(self) -> None:
        """
        If several handlers hook an event, higher priority runs first, equal priorities run in
        registration order, and the first non-None result stops the event.
        """
        bus, calls = HookBus(), []
        bus.add("e", lambda: calls.append("low"), priority=-1)
        bus.add("e", lambda: calls.append("first"))
        bus.add("e", lambda: calls.append("second"))
        bus.add("e", lambda: calls.append("high") or None, priority=10)
        self.assertIsNone(bus.fire("e"))
        self.assertEqual(calls, ["high", "first", "second", "low"])
        bus.add("e", lambda: "answer", priority=5)
        calls.clear()
        self.assertEqual(bus.fire("e"), "answer")
        self.assertEqual(calls, ["high"])

    def test_argumentsAndRemoval(self) -> None:
        """
        If a handler is removed, it no longer runs; handlers get the fired arguments.
        """
        bus = HookBus()
        hook = bus.add("e", lambda x, y=0: x + y)
        self.assertEqual(bus.fire("e", 1, y=2), 3)
        bus.remove("e", hook)
        self.assertFalse(bus.has("e"))
        self.assertIsNone(bus.fire("e", 1))


class ModuleTests(SynchronousTestCase):
    def test_unloadUndoesEverything(self) -> None:
        """
        If a plugin hooked events, added items and asked for an unload callback, unloading removes
        the hooks and items (watchers see the removal) and runs the callback.
        """
        context = PluginContext(settings=None, directory=None, reactor=None)
        seen = []
        context.items.watch("feature", lambda i: seen.append(("+", i)), lambda i: seen.append(("-", i)))
        module = Module("test", context)
        module.hook("e", lambda: "mine")
        module.add_feature("urn:xmpp:ping")
        module.on_unload(lambda: seen.append("unloaded"))
        self.assertEqual(context.bus.fire("e"), "mine")
        self.assertEqual(context.items.get("feature"), ["urn:xmpp:ping"])
        module.unload()
        self.assertIsNone(context.bus.fire("e"))
        self.assertEqual(context.items.get("feature"), [])
        self.assertEqual(seen, [("+", "urn:xmpp:ping"), "unloaded", ("-", "urn:xmpp:ping")])

    def test_watcherSeesExistingItems(self) -> None:
        """
        If a watcher registers after items were added, it is told about them at once.
        """
        items, seen = Items(), []
        items.add("http-path", "a")
        items.watch("http-path", seen.append, lambda i: None)
        self.assertEqual(seen, ["a"])


class LocateTests(SynchronousTestCase):
    def test_sitePluginOverridesBundled(self) -> None:
        """
        If a plugin_paths folder has a plugin with a bundled plugin's name, the site's one is used.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "mod_http_health.py").write_text("def load(module): pass\n")
        self.assertEqual(locate("http_health", (folder,)), folder / "mod_http_health.py")
        self.assertEqual(locate("http_health").name, "mod_http_health.py")

    def test_notFoundNamesWhereItLooked(self) -> None:
        """
        If no folder or entry point provides a plugin, the error names the file and the folders.
        """
        error = self.assertRaises(PluginNotFound, locate, "nope", (Path("/srv/site"),))
        self.assertIn("mod_nope.py", str(error))
        self.assertIn("/srv/site", str(error))

    def test_managerLoadsInOrderAndUnloadsInReverse(self) -> None:
        """
        If the manager starts, it loads each plugin in the configured order; stopping unloads them
        in reverse. A plugin without load() is an error naming it.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        for name in ("a", "b"):
            (folder / f"mod_{name}.py").write_text(
                "def load(module):\n"
                "    module.settings.append('load ' + module.name)\n"
                "    module.on_unload(lambda: module.settings.append('unload ' + module.name))\n"
            )
        (folder / "mod_broken.py").write_text("x = 1\n")
        events: list[str] = []
        manager = PluginManager(["b", "a"], (folder,), PluginContext(events, None, None))
        manager.startService()
        manager.stopService()
        self.assertEqual(events, ["load b", "load a", "unload a", "unload b"])
        broken = PluginManager(["broken"], (folder,), PluginContext(events, None, None))
        self.assertIn("no load(module) function", str(self.assertRaises(PluginNotFound, broken.startService)))

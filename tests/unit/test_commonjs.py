"""The CommonJS bundler behind /phone/jssip.js, on small node_modules trees made by the tests.

The bundles are run in Node (installed with the browser test tools by ``make test-deps``)
with a bare ``window`` object, to check that what was bundled runs as Node would run it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.web.commonjs import MAX_FILE_SIZE, BundleError, bundle


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(script: str, expression: str) -> object:
    """Evaluate ``expression`` in Node after running the bundle with ``window = {}``."""
    node = shutil.which("node")
    assert node is not None, "node is a test dependency (make test-deps)"
    program = f"var window = {{}};\n{script}\nconsole.log(JSON.stringify({expression}));"
    result = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


PHONE_LIKE = {
    "phonelib/package.json": json.dumps({"name": "phonelib", "main": "lib/Main.js"}),
    "phonelib/lib/Main.js": (
        "const Util = require('./Util');\n"
        "const info = require('../package.json');\n"
        "const debug = require('debuglike');\n"
        "const { EventEmitter } = require('events');\n"
        "// require('tty') is mentioned in this comment only\n"
        "module.exports = { name: info.name, twice: Util.twice(21), debug: debug(), emitter: typeof EventEmitter,\n"
        "  again: require('./Util') === Util };\n"),
    "phonelib/lib/Util.js": "exports.twice = (n) => n * 2;\n",
    "debuglike/package.json": json.dumps({"main": "./src/index.js", "browser": "./src/browser.js"}),
    "debuglike/src/index.js": "module.exports = () => require('tty').isatty(1);\n",
    "debuglike/src/browser.js": "module.exports = () => 'browser';\n",
    "events/package.json": json.dumps({"main": "./events.js"}),
    "events/events.js": "function EventEmitter() {}\nmodule.exports = EventEmitter;\n"
                        "module.exports.EventEmitter = EventEmitter;\n",
}


class BundleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()

    def test_bundleRunsAsNodeWould(self) -> None:
        """
        If a package requires relative files, its package.json, and packages whose browser field
        replaces their Node entry, the bundle defines the global with the entry's exports, each
        file evaluated once, the browser file in place of the Node one.
        """
        made = bundle("phonelib", write(self.root, PHONE_LIKE), "PhoneLib")
        self.assertEqual(made.files, ["phonelib/lib/Main.js", "phonelib/lib/Util.js", "phonelib/package.json",
                                      "debuglike/src/browser.js", "events/events.js"])
        self.assertEqual(run(made.script, "window.PhoneLib"), {
            "name": "phonelib", "twice": 42, "debug": "browser", "emitter": "function", "again": True})
        self.assertEqual(made.missing, ["tty (from phonelib/lib/Main.js)"])

    def test_cyclesSeePartialExports(self) -> None:
        """
        If two modules require each other, the second sees the first's exports as they are at
        that moment, as in Node, and nothing loops.
        """
        write(self.root, {
            "cyc/package.json": json.dumps({"main": "a.js"}),
            "cyc/a.js": "exports.early = 1;\nconst b = require('./b');\nexports.late = 2;\n"
                        "module.exports.seen = b.seen;\n",
            "cyc/b.js": "const a = require('./a');\nexports.seen = Object.keys(a);\n",
        })
        self.assertEqual(run(bundle("cyc", self.root, "Cyc").script, "window.Cyc"),
                         {"early": 1, "late": 2, "seen": ["early"]})

    def test_browserFalseIsAnEmptyModuleAndMissingThrows(self) -> None:
        """
        If a package's browser map sets a file to false, requiring it gives an empty object; a
        name that resolves to nothing throws when (and only when) it is required.
        """
        write(self.root, {
            "m/package.json": json.dumps({"main": "index.js", "browser": {"./node.js": False}}),
            "m/index.js": "exports.node = require('./node.js');\n"
                          "exports.lazy = () => require('nowhere');\n",
            "m/node.js": "throw new Error('never in a browser');\n",
        })
        made = bundle("m", self.root, "M")
        self.assertEqual(run(made.script, "[window.M.node, (() => { try { window.M.lazy(); } "
                                          "catch (e) { return e.message; } })()]"),
                         [{}, "not bundled: nowhere"])
        self.assertEqual(made.missing, ["nowhere (from m/index.js)"])

    def test_missingPackageOrEntry(self) -> None:
        """
        If the package is not installed, or has no entry file, BundleError says so, naming npm ci
        for the first.
        """
        with self.assertRaises(BundleError) as caught:
            bundle("jssip", self.root, "JsSIP")
        self.assertIn("npm ci", str(caught.exception))
        write(self.root, {"empty/package.json": json.dumps({"main": "gone.js"})})
        self.assertRaises(BundleError, bundle, "empty", self.root, "Empty")

    def test_requireOutsideNodeModulesIsRefused(self) -> None:
        """
        If a file requires a path that leaves node_modules, bundling fails instead of serving it.
        """
        outside = self.root / "secret.js"
        outside.write_text("module.exports = 'secret';\n")
        node_modules = self.root / "node_modules"
        write(node_modules, {"evil/package.json": "{}", "evil/index.js": "require('../../secret.js');\n"})
        with self.assertRaises(BundleError) as caught:
            bundle("evil", node_modules, "Evil")
        self.assertIn("outside", str(caught.exception))

    def test_badJsonOversizedFileAndBadGlobal(self) -> None:
        """
        If a required JSON file is not JSON, a file is over the size bound, or the global name is
        not an identifier, BundleError is raised.
        """
        write(self.root, {"j/package.json": json.dumps({"main": "i.js"}), "j/i.js": "require('./d.json');\n",
                          "j/d.json": "{not json"})
        self.assertRaises(BundleError, bundle, "j", self.root, "J")
        write(self.root, {"big/package.json": json.dumps({"main": "i.js"}),
                          "big/i.js": "//" + "x" * (MAX_FILE_SIZE + 1)})
        self.assertRaises(BundleError, bundle, "big", self.root, "Big")
        write(self.root, {"ok/package.json": "{}", "ok/index.js": ""})
        for name in ("", "a b", "x;alert(1)", "1abc"):
            self.assertRaises(BundleError, bundle, "ok", self.root, name)

    def test_packageJsonGarbageFallsBackToIndex(self) -> None:
        """
        If a package.json is not JSON or names no usable entry, index.js is the entry.
        """
        write(self.root, {"p/package.json": "[1, 2", "p/index.js": "module.exports = 7;\n"})
        self.assertEqual(run(bundle("p", self.root, "P").script, "window.P"), 7)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_anySourceTextBundlesOrRaisesBundleError(source: str) -> None:
    """
    If a module's text is anything at all, bundling it either succeeds or raises BundleError.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write(root, {"x/package.json": "{}", "x/index.js": source})
        try:
            made = bundle("x", root, "X")
        except BundleError:
            return
        assert made.files[0] == "x/index.js"

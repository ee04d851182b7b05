# -*- test-case-name: tests.unit.test_commonjs -*-
"""One browser script from an npm package written as CommonJS modules (``require``/``exports``).

JsSIP's npm package ships only CommonJS sources (``lib/*.js``) and its dependencies (``debug``,
``events``, ``sdp-transform``) as separate packages; a browser needs them as one script.  This is
the small part of a bundler that does that: follow the literal ``require("...")`` calls from the
package's entry, resolve them the way Node does for ``node_modules`` (honouring a package's
``browser`` field, which swaps Node-only files for browser ones), and wrap each file in a function
inside one script that exposes the entry's exports as a global.  No transpiling, no minifying:
the files run as written.  Pure: it reads files, and returns text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_REQUIRE = re.compile(r"""\brequire\(\s*(['"])([^'"\n]{1,200})\1\s*\)""")
_GLOBAL = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
MAX_FILES = 2000
MAX_FILE_SIZE = 4 * 1024 * 1024


class BundleError(Exception):
    """The entry cannot be bundled: missing package, unreadable file, or too large a graph."""


@dataclass
class Bundle:
    """The script, the files in it (relative to ``node_modules``) and the ``require`` names
    that resolved to nothing (a require inside a comment, or a Node built-in behind a
    runtime check); calling one of those at run time throws."""

    script: str
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _package_json(folder: Path) -> dict[str, object]:
    try:
        data = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _as_file(path: Path) -> Path | None:
    """Node's LOAD_AS_FILE then LOAD_AS_DIRECTORY (index.js), for a path without package.json."""
    for candidate in (path, path.with_name(path.name + ".js"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            return candidate
    index = path / "index.js"
    return index if index.is_file() else None


def _browser_map(package: Path) -> dict[Path, Path | None]:
    """A package's ``browser`` object: file replacements (None: an empty module)."""
    browser = _package_json(package).get("browser")
    mapping: dict[Path, Path | None] = {}
    if isinstance(browser, dict):
        for source, target in browser.items():
            if not isinstance(source, str) or not source.startswith("."):
                continue
            found = _as_file(package / source)
            if found is None:
                continue
            mapping[found.resolve()] = None if target is False else (
                _as_file(package / target) if isinstance(target, str) else found)
    return mapping


def _package_entry(package: Path) -> Path | None:
    info = _package_json(package)
    browser = info.get("browser")
    for entry in (browser if isinstance(browser, str) else None, info.get("main")):
        if isinstance(entry, str):
            found = _as_file(package / entry)
            if found is not None:
                return found
    return _as_file(package / "index")


def _package_root(path: Path, node_modules: Path) -> Path | None:
    """The package folder (holding package.json) a file belongs to, within ``node_modules``."""
    for parent in path.parents:
        if parent == node_modules or node_modules not in parent.parents:
            return None
        if (parent / "package.json").is_file():
            return parent
    return None


class _Resolver:
    def __init__(self, node_modules: Path) -> None:
        self.node_modules = node_modules.resolve()
        self._maps: dict[Path, dict[Path, Path | None]] = {}

    def resolve(self, name: str, requirer: Path) -> Path | None | bool:
        """The file ``name`` means when ``requirer`` asks; False for an empty module; None if not found."""
        if name.startswith(("./", "../", "/")) or name in (".", ".."):
            found = _as_file((requirer.parent / name).resolve()) if not name.startswith("/") else None
        else:
            found = self._bare(name, requirer)
        if found is None:
            return None
        found = found.resolve()
        if self.node_modules not in found.parents:
            raise BundleError(f"{name!r} required by {requirer} resolves outside {self.node_modules}")
        root = _package_root(found, self.node_modules)
        if root is not None:
            mapping = self._maps.setdefault(root, _browser_map(root))
            if found in mapping:
                replacement = mapping[found]
                return False if replacement is None else replacement.resolve()
        return found

    def _bare(self, name: str, requirer: Path) -> Path | None:
        """Node's LOAD_NODE_MODULES: the nearest node_modules/NAME up from the requirer, up to
        the top folder given (whatever its name), which holds the hoisted packages."""
        parts = name.split("/")
        package_parts = 2 if name.startswith("@") else 1
        package_name, rest = "/".join(parts[:package_parts]), "/".join(parts[package_parts:])
        candidates = [parent / "node_modules" / package_name for parent in [requirer.parent, *requirer.parents]
                      if self.node_modules in parent.parents and parent.name != "node_modules"]
        for package in [*candidates, self.node_modules / package_name]:
            if package.is_dir():
                return _as_file(package / rest) if rest else _package_entry(package)
        return None


def _source(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_SIZE:
            raise BundleError(f"{path} is over {MAX_FILE_SIZE} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read {path}: {e}") from None
    if path.suffix == ".json":
        try:
            json.loads(text)
        except ValueError as e:
            raise BundleError(f"{path} is not JSON: {e}") from None
        return f"module.exports = {text.strip()};"
    return text


def bundle(package: str, node_modules: Path, global_name: str) -> Bundle:
    """The browser script for ``package`` in ``node_modules``, defining ``window[global_name]``."""
    if not _GLOBAL.fullmatch(global_name):
        raise BundleError(f"{global_name!r} is not a JavaScript identifier")
    node_modules = Path(node_modules)
    folder = node_modules / package
    if not folder.is_dir():
        raise BundleError(f"{folder} is missing (install the npm packages: npm ci)")
    entry = _package_entry(folder)
    if entry is None:
        raise BundleError(f"{folder} has no entry file (package.json main)")
    resolver = _Resolver(node_modules)
    ids: dict[Path, int] = {entry.resolve(): 0}
    order = [entry.resolve()]
    maps: list[dict[str, int | None]] = []
    sources: list[str] = []
    missing: list[str] = []
    for path in order:  # grows while walking: breadth-first over the require graph
        text = _source(path)
        requires: dict[str, int | None] = {}
        seen: set[str] = set()
        for match in _REQUIRE.finditer(text):
            name = match.group(2)
            if name in seen:
                continue
            seen.add(name)
            target = resolver.resolve(name, path)
            if target is None:  # left out of the map: requiring it throws
                missing.append(f"{name} (from {path.relative_to(resolver.node_modules).as_posix()})")
                continue
            if target is False:  # the package's browser field says: an empty module
                requires[name] = None
                continue
            assert isinstance(target, Path)
            if target not in ids:
                if len(order) >= MAX_FILES:
                    raise BundleError(f"more than {MAX_FILES} files reached from {package}")
                ids[target] = len(order)
                order.append(target)
            requires[name] = ids[target]
        maps.append(requires)
        sources.append(text)
    parts = [f"/* {package} for the browser, bundled by unirtc from node_modules/ */",
             "(function () {", "var maps = " + json.dumps(maps, separators=(",", ":")) + ";",
             "var files = ["]
    for index, (path, text) in enumerate(zip(order, sources)):
        name = path.relative_to(resolver.node_modules).as_posix()
        parts.append(f"/* {name} */ function (module, exports, require) {{\n{text}\n}}"
                     + ("," if index < len(order) - 1 else ""))
    parts += [
        "];",
        "var cache = [];",
        "function load(id) {",
        "  if (cache[id]) return cache[id].exports;",
        "  var module = cache[id] = { exports: {} };",
        "  files[id].call(module.exports, module, module.exports, function (name) {",
        "    var target = maps[id][name];",
        "    if (target === null) return {};",
        "    if (target === undefined) throw new Error('not bundled: ' + name);",
        "    return load(target);",
        "  });",
        "  return module.exports;",
        "}",
        f"window[{json.dumps(global_name)}] = load(0);",
        "})();",
        "",
    ]
    return Bundle("\n".join(parts), [p.relative_to(resolver.node_modules).as_posix() for p in order], missing)

"""Plugins and the hook bus: the only API a plugin sees (Prosody's ``module`` object, in Python).

A plugin is a Python module ``mod_<name>.py`` defining ``load(module: Module)``.  It hooks
events, declares items (disco features, HTTP paths, components...) and stores data through
``module.storage(name)`` and ``module.archive(name)`` (``unirtc.storage``).  The ``Module``
records everything a plugin registers, so unloading it undoes all of it.  Plugins never
import the transports.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from unirtc.logging import get_logger

if TYPE_CHECKING:
    from unirtc.storage import ArchiveStore, KeyValueStore

ENTRY_POINT_GROUP = "unirtc.plugins"
log = get_logger("unirtc.plugin")
Handler = Callable[..., Any]


class PluginNotFound(Exception):
    pass


@dataclass(order=True)
class _Hook:
    sort_key: tuple[float, int]
    handler: Handler = field(compare=False)


class HookBus:
    """Named events with prioritised handlers; a handler returning non-None stops the event.

    That is Prosody's rule, and what lets a plugin answer an IQ and keep others from answering.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[_Hook]] = defaultdict(list)
        self._sequence = 0

    def add(self, event: str, handler: Handler, priority: float = 0) -> _Hook:
        self._sequence += 1
        hook = _Hook((-priority, self._sequence), handler)
        self._hooks[event].append(hook)
        self._hooks[event].sort()
        return hook

    def remove(self, event: str, hook: _Hook) -> None:
        self._hooks[event].remove(hook)

    def has(self, event: str) -> bool:
        return bool(self._hooks.get(event))

    def fire(self, event: str, *args: Any, **kwargs: Any) -> Any:
        for hook in list(self._hooks.get(event, ())):
            result = hook.handler(*args, **kwargs)
            if result is not None:
                return result
        return None


class Items:
    """Typed registries plugins add to (``feature``, ``http-path``, ``component``...).

    Core services watch a kind with ``watch(kind, added, removed)`` and react as items come and go.
    """

    def __init__(self) -> None:
        self._items: dict[str, list[Any]] = defaultdict(list)
        self._watchers: dict[str, list[tuple[Handler, Handler]]] = defaultdict(list)

    def add(self, kind: str, item: Any) -> None:
        self._items[kind].append(item)
        for added, _ in self._watchers[kind]:
            added(item)

    def remove(self, kind: str, item: Any) -> None:
        self._items[kind].remove(item)
        for _, removed in self._watchers[kind]:
            removed(item)

    def get(self, kind: str) -> list[Any]:
        return list(self._items.get(kind, ()))

    def watch(self, kind: str, added: Handler, removed: Handler) -> None:
        self._watchers[kind].append((added, removed))
        for item in self._items.get(kind, ()):
            added(item)


class Module:
    """What one loaded plugin sees; it records each registration so ``unload`` can undo it."""

    def __init__(self, name: str, context: PluginContext) -> None:
        self.name = name
        self.settings = context.settings
        self.directory = context.directory
        self.reactor = context.reactor
        self.log = get_logger(f"unirtc.plugin.{name}")
        self._context = context
        self._undo: list[Callable[[], None]] = []

    def hook(self, event: str, handler: Handler, priority: float = 0) -> None:
        handle = self._context.bus.add(event, handler, priority)
        self._undo.append(lambda: self._context.bus.remove(event, handle))

    def fire(self, event: str, *args: Any, **kwargs: Any) -> Any:
        return self._context.bus.fire(event, *args, **kwargs)

    def add_item(self, kind: str, item: Any) -> None:
        self._context.items.add(kind, item)
        self._undo.append(lambda: self._context.items.remove(kind, item))

    def add_feature(self, namespace: str) -> None:
        self.add_item("feature", namespace)

    def items(self, kind: str) -> list[Any]:
        return self._context.items.get(kind)

    def storage(self, name: str) -> KeyValueStore:
        """The ``unirtc.storage.KeyValueStore`` called ``name`` (shared by every plugin using it)."""
        return self._store("kv", name)

    def archive(self, name: str) -> ArchiveStore:
        """The ``unirtc.storage.ArchiveStore`` called ``name`` (shared by every plugin using it)."""
        return self._store("archive", name)

    def _store(self, kind: str, name: str) -> Any:
        from unirtc.storage import ArchiveStore, KeyValueStore

        stores = self._context.stores
        if (kind, name) not in stores:
            factory = KeyValueStore if kind == "kv" else ArchiveStore
            stores[(kind, name)] = factory(self.directory, name)
        return stores[(kind, name)]

    def on_unload(self, callback: Callable[[], None]) -> None:
        self._undo.append(callback)

    def unload(self) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:
                self.log.failure("Error while unloading plugin {name}", name=self.name)


@dataclass
class PluginContext:
    """The shared objects every Module hands out to its plugin."""

    settings: Any
    directory: Any
    reactor: Any
    bus: HookBus = field(default_factory=HookBus)
    items: Items = field(default_factory=Items)
    stores: dict[tuple[str, str], Any] = field(default_factory=dict)  # storage by (kind, name)


def bundled_plugin_dir() -> Path:
    """``plugins/`` in a checkout, ``<prefix>/share/unirtc/plugins`` when installed."""
    checkout = Path(__file__).resolve().parents[1] / "plugins"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "unirtc" / "plugins"


def bundled_plugins() -> list[str]:
    folder = bundled_plugin_dir()
    return sorted(p.stem[len("mod_"):] for p in folder.glob("mod_*.py")) if folder.is_dir() else []


def locate(name: str, plugin_paths: tuple[Path, ...] = ()) -> Path | str:
    """The file (or, for an installed package, the import path) providing plugin ``name``.

    Search order: ``[server] plugin_paths``, the bundled plugins, the ``unirtc.plugins`` entry
    point group; so a site can override a bundled plugin with its own.
    """
    folders = [*plugin_paths, bundled_plugin_dir()]
    for folder in folders:
        candidate = folder / f"mod_{name}.py"
        if candidate.is_file():
            return candidate
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == name:
            return entry_point.value
    raise PluginNotFound(
        f"plugin {name!r} not found: no mod_{name}.py in {', '.join(str(f) for f in folders)} "
        f"and no {ENTRY_POINT_GROUP!r} entry point named {name!r}"
    )


def _import(name: str, where: Path | str) -> ModuleType:
    if isinstance(where, str):
        return importlib.import_module(where)
    spec = importlib.util.spec_from_file_location(f"unirtc_plugins.mod_{name}", where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PluginManager(Service):
    """Loads the configured plugins at start, in order, and unloads them in reverse at stop."""

    name = "plugins"

    def __init__(self, names: list[str], plugin_paths: tuple[Path, ...], context: PluginContext) -> None:
        self.context = context
        self.locations = {name: locate(name, plugin_paths) for name in names}
        self.loaded: dict[str, Module] = {}

    def startService(self) -> None:
        """Import and load each plugin; a plugin that fails to load stops the server starting."""
        super().startService()
        for name, where in self.locations.items():
            code = _import(name, where)
            if not callable(getattr(code, "load", None)):
                raise PluginNotFound(f"plugin {name!r} ({where}) has no load(module) function")
            module = Module(name, self.context)
            self.loaded[name] = module
            code.load(module)
            log.info("Loaded plugin {name}", name=name)

    def stopService(self) -> None:
        super().stopService()
        for name in reversed(list(self.loaded)):
            self.loaded.pop(name).unload()
            log.info("Unloaded plugin {name}", name=name)

"""Bundled XMPP plugins on the fake server of ``xmpp_helpers``, with real plugin storage SQL.

The plugin storage runs synchronously on a temporary SQLite file (``SqlRunner`` stands in for
``Directory.run``), so each stanza's effects, database writes included, are complete when
``dataReceived`` returns, and a second ``PluginServer`` on the same file is a server restart.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from twisted.internet.defer import Deferred, fail, succeed
from twisted.words.xish import domish

from tests.protocol.xmpp_helpers import Client, FakeServer
from unirtc.config import load_settings
from unirtc.directory import store
from unirtc.directory.engine import make_engine
from unirtc.directory.models import Base
from unirtc.directory.secrets import prepare_password
from unirtc.plugin import PluginContext, PluginManager
from unirtc.settings import Settings


class SqlRunner:
    """``Directory.run`` without threads: the operation runs at once in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls = 0

    def run(self, operation: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.calls += 1
        try:
            with store.transaction(self.engine) as session:
                return succeed(operation(session, *args))
        except Exception:
            return fail()


def sqlite_engine(path: str) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return engine


def default_settings() -> Settings:
    """The settings a config holding only ``[server] domain = falcot.com`` gives: every default."""
    folder = Path(tempfile.mkdtemp(prefix="unirtc-settings-"))
    (folder / "unirtc.ini").write_text("[server]\ndomain = falcot.com\n")
    return load_settings(folder / "unirtc.ini")


class PluginServer:
    """A fake server with the named plugins loaded; ``stop()`` unloads them."""

    def __init__(self, engine: Engine, plugins: list[str], settings: Any = None) -> None:
        self.fake = FakeServer()
        self.runner = SqlRunner(engine)
        self.fake.directory.run = self.runner.run  # type: ignore[attr-defined]
        self.fake.directory.set_password = self._set_password  # type: ignore[attr-defined]
        self.context = PluginContext(settings=settings or default_settings(), directory=self.fake.directory,
                                     reactor=self.fake.clock, bus=self.fake.bus)
        self.context.items.add("xmpp-router", self.fake.router)
        self.fake.c2s.stream_features = lambda: self.context.items.get("stream-feature")
        self.manager = PluginManager(plugins, (), self.context)
        self.manager.startService()

    def _set_password(self, localpart: str, domain: str, password: str) -> Deferred[None]:
        """What ``Directory.set_password`` does, for the fake directory: re-derive the secrets."""
        try:
            self.fake.directory.add(localpart, prepare_password(password))
        except ValueError:
            return fail()
        return succeed(None)

    @property
    def router(self) -> Any:
        return self.fake.router

    def login(self, user: str, resource: str = "laptop", available: bool = True,
              roster: bool = True, priority: int = 0) -> Client:
        """A bound client that (optionally) fetched its roster and sent initial presence."""
        client = self.fake.login(user, resource)
        if roster:
            client.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        if available:
            client.send(f"<presence><priority>{priority}</priority></presence>")
        client.clear()
        return client

    def stop(self) -> None:
        if self.manager.running:
            self.manager.stopService()


def stanzas(client: Client, name: str | None = None, kind: str | None = None) -> list[domish.Element]:
    """What the client received, filtered by element name and ``type`` (None: any)."""
    found = []
    for element in client.elements():
        if name is not None and element.name != name:
            continue
        if kind is not None and element.getAttribute("type", "available" if element.name == "presence" else None) != kind:
            continue
        found.append(element)
    return found


def roster_pushes(client: Client) -> list[dict[str, str]]:
    """The items of the roster pushes the client received, as attribute dicts."""
    pushes = []
    for iq in stanzas(client, "iq", "set"):
        for query in iq.elements("jabber:iq:roster", "query"):
            for item in query.elements("jabber:iq:roster", "item"):
                pushes.append(dict(item.attributes))
    return pushes


def error_condition(element: domish.Element) -> str | None:
    for error in element.elements("jabber:client", "error"):
        for child in error.elements():
            if child.name != "text":
                return child.name
    return None

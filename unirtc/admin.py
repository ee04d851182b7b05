"""The admin socket: a UNIX socket in the state folder through which ``unirtc-ctl`` asks the
running server about live state that is not in the database (Prosody's admin socket, small).

One request per line, one JSON answer per line. The socket is mode 0600, so only the server's
own user (and root) can use it. Commands read live objects registered as plugin items, so a
protocol can offer status without the admin code importing it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from unirtc import __version__
from unirtc.plugin import Items

SOCKET_NAME = "admin.sock"
MAX_LINE = 1024


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


class AdminProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def lineReceived(self, line: bytes) -> None:
        command = line.decode("utf-8", "replace").strip()
        handler = self.factory.commands.get(command)
        if handler is None:
            answer: Any = {"error": f"unknown command {command!r}; known: {', '.join(sorted(self.factory.commands))}"}
        else:
            answer = handler()
        self.sendLine(json.dumps(answer, default=_plain).encode())

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()


class AdminFactory(Factory):
    protocol = AdminProtocol

    def __init__(self, items: Items) -> None:
        self.commands = {
            "version": lambda: {"version": __version__},
            "s2s": lambda: {"links": [link for manager in items.get("s2s-links") for link in manager.status()]},
        }


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return asdict(value)
    return str(value)


def admin_service(state_dir: Path, items: Items, reactor: Any) -> StreamServerEndpointService:
    state_dir.mkdir(parents=True, exist_ok=True)
    endpoint = UNIXServerEndpoint(reactor, str(socket_path(state_dir)), mode=0o600, wantPID=True)
    service = StreamServerEndpointService(endpoint, AdminFactory(items))
    service.setName("admin")
    return service

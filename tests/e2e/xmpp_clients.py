"""slixmpp plumbing shared by the XMPP e2e tests: log in, collect events, chat, run a scenario.

slixmpp runs on its own asyncio loop in the test process (as in slixmpp's integration tests),
away from the server's reactor, which runs in the harness subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import slixmpp

from tests.e2e.harness import ServerHarness

TIMEOUT = 10.0


def serving(harness: ServerHarness, request: Any, wait_for: str = "c2s") -> Iterator[ServerHarness]:
    """The body of a module-scoped server fixture: start, hand over, stop with status 0, and show
    the server log when a test of the session failed. Create accounts before calling it."""
    harness.start(wait_for=wait_for)
    yield harness
    status = harness.stop()
    if request.session.testsfailed:
        print(f"--- server log ({harness.log_path}) ---\n{harness.log()}")
    assert status == 0


def trusting_client(jid: str, password: str, cafile: Path, plugins: tuple[str, ...] = (),
                    sasl_mech: str | None = "SCRAM-SHA-256", direct_tls: bool = False) -> slixmpp.ClientXMPP:
    """A client that trusts only ``cafile`` and uses exactly one kind of TLS, never plaintext."""
    client = slixmpp.ClientXMPP(jid, password, sasl_mech=sasl_mech)
    client.ssl_context.load_verify_locations(str(cafile))
    client.enable_direct_tls, client.enable_starttls = direct_tls, not direct_tls
    client.enable_plaintext = False
    for plugin in plugins:
        client.register_plugin(plugin)
    return client


async def log_in(client: slixmpp.ClientXMPP, port: int,
                 on_start: Callable[[], Any] | None = None, timeout: float = TIMEOUT) -> slixmpp.ClientXMPP:
    """Connect and wait for the session; ``on_start`` (default: send presence) runs first and may
    be a coroutine function. A failed login raises instead of timing out."""
    started = asyncio.get_running_loop().create_future()

    async def session_start(_: Any) -> None:
        result = on_start() if on_start is not None else client.send_presence()
        if asyncio.iscoroutine(result):
            await result
        started.done() or started.set_result(True)

    client.add_event_handler("session_start", session_start)
    client.add_event_handler("failed_all_auth", lambda _: started.done() or started.set_exception(
        RuntimeError(f"{client.boundjid} could not log in")))
    client.connect(host="127.0.0.1", port=port)
    await asyncio.wait_for(started, timeout)
    return client


def events(client: slixmpp.ClientXMPP, name: str = "message") -> asyncio.Queue[Any]:
    """Every ``name`` event the client sees from now on, in order."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(name, queue.put_nowait)
    return queue


async def chat(sender: slixmpp.ClientXMPP, to: str, received: asyncio.Queue[Any], body: str,
               timeout: float = TIMEOUT) -> Any:
    """Send a chat message and return it as the recipient got it (its body checked)."""
    sender.send_message(mto=to, mbody=body, mtype="chat")
    message = await asyncio.wait_for(received.get(), timeout)
    assert message["body"] == body
    return message


async def offline(*clients: slixmpp.ClientXMPP) -> None:
    for client in clients:
        client.disconnect()
    await asyncio.sleep(0.1)


def run(scenario: Callable[[], Awaitable[None]], limit: float = 60) -> None:
    asyncio.run(asyncio.wait_for(scenario(), limit))

"""XMPP over WebSocket end to end: Strophe.js in headless Chromium logs in over WSS to the real
server under twistd and chats with a slixmpp client on TCP; Origins outside [web] origins are
refused; hostile WebSocket clients get stream errors while others are served.

The page is served by the test to the browser (``Page.serve``) as ``https://falcot.com:PORT/``,
the origin a page served by unirtc itself would have; Chromium resolves falcot.com to 127.0.0.1
and trusts the server's self-signed key. Screenshots land in the test's tmp folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.e2e.browser import NODE_MODULES, Browser, Page
from tests.e2e.harness import ServerHarness
from tests.e2e.test_xmpp_c2s import PASSWORDS, online
from tests.e2e.xmpp_clients import events, serving
from tests.protocol.xmpp_helpers import scram_client_final
from unirtc.xmpp.channel_binding import server_end_point

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STROPHE = NODE_MODULES / "strophe.js" / "dist" / "strophe.umd.min.js"
TIMEOUT = 15.0

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>unirtc: XMPP over WebSocket</title>
<style>body { font: 16px sans-serif; margin: 2em; } #status { font-weight: bold; }</style></head>
<body><h1>XMPP over WebSocket</h1><p id="status">Not connected</p><ul id="messages"></ul></body></html>
"""

# Logs in with Strophe.js (its UMD build defines Strophe, $msg, $pres...) over WebSocket and
# resolves once the session is up, or has failed.
LOGIN = """async ({service, jid, password}) => {
  window.received = [];
  window.statuses = [];
  const status = document.getElementById('status');
  const connection = new Strophe.Connection(service);
  window.connection = connection;
  connection.rawInput = (data) => (window.rawInput = window.rawInput || []).push(data);
  connection.addHandler((message) => {
    const body = message.getElementsByTagName('body')[0];
    const text = body ? body.textContent : '';
    window.received.push({ from: message.getAttribute('from'), body: text });
    const item = document.createElement('li');
    item.textContent = message.getAttribute('from') + ': ' + text;
    document.getElementById('messages').appendChild(item);
    return true;
  }, null, 'message');
  return await new Promise((resolve) => {
    connection.connect(jid, password, (code, condition) => {
      window.statuses.push(code);
      if (code === Strophe.Status.CONNECTED) {
        connection.send($pres());
        status.textContent = 'Connected as ' + connection.jid;
        resolve({ ok: true, jid: connection.jid });
      } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.DISCONNECTED].includes(code)) {
        status.textContent = 'Login failed: ' + (condition || code);
        resolve({ ok: false, code, condition: condition || null });
      }
    });
  });
}"""

SEND = """({to, body}) => {
  window.connection.send($msg({ to, type: 'chat' }).c('body').t(body));
  return true;
}"""

# A bare WebSocket from the page, as any script on another site could open: did it open?
TRY_WEBSOCKET = """({url}) => new Promise((resolve) => {
  const ws = new WebSocket(url, 'xmpp');
  ws.onopen = () => { ws.close(); resolve({ opened: true }); };
  ws.onclose = (event) => resolve({ opened: false, code: event.code });
})"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    harness = ServerHarness(tmp_path_factory.mktemp("xmpp-ws") / "server")
    for user, password in PASSWORDS.items():
        harness.adduser(f"{user}@falcot.com", password)
    yield from serving(harness, request, wait_for="web")


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory, request):
    artifacts = tmp_path_factory.mktemp("screenshots")
    with Browser(artifacts, trust=server.directory / "var" / "certificate.pem",
                 host_map={"falcot.com": "127.0.0.1", "evil.example": "127.0.0.1"}) as chromium:
        yield chromium
        if request.session.testsfailed:
            print("--- browser log ---\n" + "\n".join(chromium.log()))
    print(f"screenshots in {artifacts}")


def origin(server: ServerHarness) -> str:
    return f"https://falcot.com:{server.ports['web']}"


def strophe_page(browser: Browser, server: ServerHarness, name: str) -> Page:
    page = browser.new_page(name)
    page.serve(f"{origin(server)}/chat.html", PAGE)
    assert page.goto(f"{origin(server)}/chat.html") == 200
    page.add_script(STROPHE)
    return page


def test_stropheInChromiumChatsWithSlixmpp(server, browser) -> None:
    """
    If Strophe.js in Chromium logs in as joe over WSS at /xmpp-websocket (SCRAM, same accounts and
    SASL as c2s), it exchanges chat messages with roland on a slixmpp TCP stream, and the page
    shows the session and the message.
    """
    page = strophe_page(browser, server, "joe")

    async def scenario() -> None:
        roland = await online(server, "roland", "desk")
        roland_inbox = events(roland)
        service = f"wss://falcot.com:{server.ports['web']}/xmpp-websocket"
        login = await asyncio.to_thread(page.evaluate, LOGIN, {
            "service": service, "jid": "joe@falcot.com/browser", "password": PASSWORDS["joe"]}, TIMEOUT)
        assert login == {"ok": True, "jid": "joe@falcot.com/browser"}, (login, browser.log("joe"))
        roland.send_message(mto="joe@falcot.com", mbody="Hello from the desk", mtype="chat")
        received = await asyncio.to_thread(page.wait_for, "() => window.received.length && window.received[0]")
        assert received == {"from": "roland@falcot.com/desk", "body": "Hello from the desk"}
        await asyncio.to_thread(page.evaluate, SEND, {"to": "roland@falcot.com/desk", "body": "Hi Roland, from Chromium"})
        message = await asyncio.wait_for(roland_inbox.get(), TIMEOUT)
        assert (str(message["from"]), message["body"]) == ("joe@falcot.com/browser", "Hi Roland, from Chromium")
        roland.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 45))
    text = page.text()
    assert "Connected as joe@falcot.com/browser" in text
    assert "roland@falcot.com/desk: Hello from the desk" in text
    page.screenshot("chatting")
    page.evaluate("() => { window.connection.disconnect(); return true; }")
    page.wait_for("() => window.statuses.includes(Strophe.Status.DISCONNECTED)")
    log = server.log()
    assert "joe@falcot.com authenticated from 127.0.0.1 with SCRAM-SHA-256" in log
    assert "joe@falcot.com/browser session ended" in log


def test_wrongPasswordInTheBrowserIsRefused(server, browser) -> None:
    """
    If the browser logs in with a wrong password, Strophe reports an authentication failure.
    """
    page = strophe_page(browser, server, "intruder")
    service = f"wss://falcot.com:{server.ports['web']}/xmpp-websocket"
    result = page.evaluate(LOGIN, {"service": service, "jid": "joe@falcot.com/x", "password": "wrong"}, TIMEOUT)
    assert result["ok"] is False
    assert "Login failed" in page.text("#status")
    page.close()


def test_pageFromAnotherOriginCannotOpenTheWebSocket(server, browser) -> None:
    """
    If a page of another site (evil.example) opens a WebSocket to /xmpp-websocket, the server
    refuses the upgrade and the browser never sees it open; from the server's own origin it opens.
    """
    evil = browser.new_page("evil")
    evil.serve("https://evil.example/", "<!doctype html><title>evil</title><p>elsewhere</p>")
    evil.goto("https://evil.example/")
    url = f"wss://falcot.com:{server.ports['web']}/xmpp-websocket"
    assert evil.evaluate(TRY_WEBSOCKET, {"url": url}, TIMEOUT) == {"opened": False, "code": 1006}
    good = browser.new_page("good")
    good.serve(f"{origin(server)}/", "<!doctype html><title>ok</title>")
    good.goto(f"{origin(server)}/")
    assert good.evaluate(TRY_WEBSOCKET, {"url": url}, TIMEOUT) == {"opened": True}
    assert "WebSocket from Origin https://evil.example refused" in server.log()
    evil.close()
    good.close()


def raw_handshake(server: ServerHarness, origin_header: str) -> bytes:
    """A WebSocket upgrade written by hand over TLS; returns the response head."""
    context = ssl.create_default_context(cafile=str(server.directory / "var" / "certificate.pem"))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", server.ports["web"]), timeout=10) as tcp:
        with context.wrap_socket(tcp, server_hostname="falcot.com") as tls:
            tls.sendall(("GET /xmpp-websocket HTTP/1.1\r\nHost: falcot.com\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n"
                         f"Origin: {origin_header}\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            return head


def test_rawHandshakeFromAnotherOriginIs403(server) -> None:
    """
    If a hand-written upgrade carries a foreign Origin, the answer is 403 before any upgrade; with
    the server's own origin it is 101 naming the xmpp subprotocol and RFC 6455's accept value.
    """
    refused = raw_handshake(server, "https://evil.example")
    assert refused.startswith(b"HTTP/1.1 403 "), refused[:100]
    accepted = raw_handshake(server, origin(server))
    assert accepted.startswith(b"HTTP/1.1 101 "), accepted[:100]
    assert b"Sec-WebSocket-Protocol: xmpp\r\n" in accepted
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in accepted


class TlsWebSocket:
    """A WebSocket client (wsproto) over real TLS, for hostile tests."""

    def __init__(self, server: ServerHarness) -> None:
        context = ssl.create_default_context(cafile=str(server.directory / "var" / "certificate.pem"))
        context.check_hostname = False
        tcp = socket.create_connection(("127.0.0.1", server.ports["web"]), timeout=10)
        self.tls = context.wrap_socket(tcp, server_hostname="falcot.com")
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.tls.sendall(self.ws.send(Request(host="falcot.com", target="/xmpp-websocket", subprotocols=["xmpp"])))
        self.messages: list[Any] = []
        self.close: CloseConnection | None = None
        self.accepted = False
        while not self.accepted:
            self._receive()

    def _receive(self) -> bool:
        data = self.tls.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                raise AssertionError(f"upgrade refused: {event.status_code}")
            elif isinstance(event, (TextMessage, BytesMessage)):
                self.messages.append(event.data)
            elif isinstance(event, CloseConnection):
                self.close = event
        return bool(data)

    def send(self, data: str | bytes) -> None:
        event = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        self.tls.sendall(self.ws.send(event))

    def until_closed(self) -> tuple[list[Any], int | None]:
        try:
            while self.close is None and self._receive():
                pass
        except (OSError, ssl.SSLError):
            pass
        self.tls.close()
        return self.messages, self.close.code if self.close is not None else None


OPEN = '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="falcot.com" version="1.0"/>'


@pytest.mark.parametrize("payload, condition, code", [
    ("<message><body>never closed", "not-well-formed", 1000),
    ("<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'>]><message>&a;&a;</message>", "restricted-xml", 1000),
    ("<message><body>" + "x" * 300_000 + "</body></message>", "policy-violation", 1009),
    (b"\x00\x01binary", "bad-format", 1003),
], ids=["not-well-formed", "doctype", "oversized", "binary"])
def test_hostileWebSocketClientsGetStreamErrors(server, payload: str | bytes, condition: str, code: int) -> None:
    """
    If a WebSocket client sends a broken element, a DOCTYPE, a message over the stanza limit or a
    binary message after opening its stream, it gets the stream error, ``<close/>`` and a Close
    frame with a fitting code; the server goes on serving others.
    """
    client = TlsWebSocket(server)
    client.send(OPEN)
    client.send(payload)
    messages, close_code = client.until_closed()
    assert messages[0].startswith('<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"')
    assert any(f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in m for m in messages), messages
    assert messages[-1] == '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />'
    assert close_code == code
    after = TlsWebSocket(server)
    after.send(OPEN)
    while len(after.messages) < 2:
        after._receive()
    assert "SCRAM-SHA-256" in after.messages[1]
    after.tls.close()


def test_scramPlusOverRealWss(server) -> None:
    """
    If a client over real WSS runs SCRAM-SHA-256-PLUS bound to tls-server-end-point (the hash of
    the certificate it received), the server checks it against the TLS connection under the HTTP
    channel and logs the client in; the stream then restarts with a new ``<open/>``.
    """
    client = TlsWebSocket(server)
    client.send(OPEN)
    while len(client.messages) < 2:
        client._receive()
    assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in client.messages[1]
    assert "<channel-binding type='tls-server-end-point'/>" in client.messages[1]
    certificate = x509.load_der_x509_certificate(client.tls.getpeercert(binary_form=True))
    gs2, bare = "p=tls-server-end-point,,", "n=joe,r=websocket-nonce-0123456789"
    client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256-PLUS'>{b64(gs2 + bare)}</auth>")
    while len(client.messages) < 3:
        client._receive()
    challenge = re.search(r">([^<]+)</challenge>", client.messages[2])
    assert challenge is not None, client.messages[2]
    server_first = base64.b64decode(challenge.group(1)).decode()
    final, verifier = scram_client_final(PASSWORDS["joe"], "sha256", bare, server_first,
                                         gs2.encode() + server_end_point(certificate))
    client.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
    while len(client.messages) < 4:
        client._receive()
    success = re.search(r"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]+)</success>", client.messages[3])
    assert success is not None, client.messages[3]
    assert base64.b64decode(success.group(1)) == verifier
    client.send(OPEN)
    while len(client.messages) < 6:
        client._receive()
    assert client.messages[4].startswith("<open ")
    assert "urn:ietf:params:xml:ns:xmpp-bind" in client.messages[5]
    client.tls.close()
    assert "joe@falcot.com authenticated from 127.0.0.1 with SCRAM-SHA-256-PLUS" in server.log()


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def test_screenshotArtifactsExist(browser) -> None:
    """
    If the browser tests ran, their screenshots are real PNG files a person can look at.
    """
    shots = sorted(Path(browser.artifacts).glob("*.png"))
    assert shots, "no screenshot was saved"
    assert all(shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for shot in shots)
    print(json.dumps([str(s) for s in shots]))

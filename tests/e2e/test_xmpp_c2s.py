"""XMPP end to end: slixmpp clients (and a raw hostile socket) against the real server under twistd.

One server serves the whole module (starting twistd and creating accounts takes seconds); each
test uses its own resources, so tests do not see each other's sessions. slixmpp runs on its own
asyncio loop in the test process, as in slixmpp's integration tests.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from slixmpp.componentxmpp import ComponentXMPP

from tests.e2e.harness import ServerHarness
from tests.e2e.xmpp_clients import chat, events, log_in, offline, run, serving, trusting_client
from tests.protocol.xmpp_helpers import scram_client_final

PASSWORDS = {"joe": "joe-Passw0rd", "roland": "roland-Passw0rd"}
COMPONENT, COMPONENT_SECRET = "bot.falcot.com", "c0mponent-secret"
CORPUS = Path(__file__).parent.parent / "corpora" / "xml_attacks"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    harness = ServerHarness(tmp_path_factory.mktemp("xmpp") / "server",
                            config={"components": {COMPONENT: COMPONENT_SECRET}})
    for user, password in PASSWORDS.items():
        harness.adduser(f"{user}@falcot.com", password)
    yield from serving(harness, request)


async def online(server: ServerHarness, user: str, resource: str, direct_tls: bool = False) -> slixmpp.ClientXMPP:
    """Log in (SCRAM-SHA-256, exactly one kind of TLS), send presence, return once the session started."""
    client = trusting_client(f"{user}@falcot.com/{resource}", PASSWORDS[user],
                             server.directory / "var" / "certificate.pem", ("xep_0030", "xep_0199"),
                             direct_tls=direct_tls)
    return await log_in(client, server.ports["c2s_direct_tls" if direct_tls else "c2s"])


def test_starttlsScramChat(server) -> None:
    """
    If two users log in over STARTTLS with SCRAM-SHA-256, they chat both ways; messages arrive
    from the sender's full JID, and the mechanism really was SCRAM-SHA-256.
    """
    async def scenario() -> None:
        joe = await online(server, "joe", "laptop")
        roland = await online(server, "roland", "desk")
        assert joe.plugin["feature_mechanisms"].mech.name == "SCRAM-SHA-256"
        joe_inbox, roland_inbox = events(joe), events(roland)
        message = await chat(joe, "roland@falcot.com", roland_inbox, "Hello Roland")
        assert str(message["from"]) == "joe@falcot.com/laptop"
        message = await chat(roland, "joe@falcot.com/laptop", joe_inbox, "Hi Joe, ça va ?")
        assert str(message["from"]) == "roland@falcot.com/desk"
        await offline(joe, roland)

    run(scenario, 45)
    log = server.log()
    assert "joe@falcot.com authenticated from 127.0.0.1 with SCRAM-SHA-256" in log


def test_directTlsChatsWithStarttls(server) -> None:
    """
    If a user logs in with XEP-0368 direct TLS, it chats with a user who came in over STARTTLS.
    """
    async def scenario() -> None:
        joe = await online(server, "joe", "direct", direct_tls=True)
        roland = await online(server, "roland", "starttls")
        joe_inbox, roland_inbox = events(joe), events(roland)
        await chat(joe, "roland@falcot.com/starttls", roland_inbox, "over direct TLS")
        await chat(roland, "joe@falcot.com/direct", joe_inbox, "over STARTTLS")
        await offline(joe, roland)

    run(scenario, 45)


def test_wrongPasswordIsNotAuthorized(server) -> None:
    """
    If a client logs in with a wrong password, SASL fails with not-authorized and no session starts.
    """
    async def scenario() -> None:
        client = trusting_client("joe@falcot.com/wrong", "not-the-password",
                                 server.directory / "var" / "certificate.pem", ("xep_0030", "xep_0199"))
        failed = asyncio.get_running_loop().create_future()
        client.add_event_handler("failed_auth", lambda stanza: failed.done() or failed.set_result(stanza["condition"]))
        client.add_event_handler("session_start", lambda _: failed.set_exception(AssertionError("logged in")))
        client.connect(host="127.0.0.1", port=server.ports["c2s"])
        assert await asyncio.wait_for(failed, TIMEOUT) == "not-authorized"
        client.abort()

    run(scenario, 45)
    assert "Authentication failed for joe@falcot.com from 127.0.0.1" in server.log()


def test_pingAndDisco(server) -> None:
    """
    If a client pings the server it gets a pong, and disco#info shows identity server/im with the
    ping and disco features.
    """
    async def scenario() -> None:
        joe = await online(server, "joe", "disco")
        await joe.plugin["xep_0199"].ping("falcot.com", timeout=TIMEOUT)
        info = await joe.plugin["xep_0030"].get_info(jid="falcot.com", timeout=TIMEOUT)
        assert ("server", "im", None, "unirtc") in info["disco_info"]["identities"]
        assert {"urn:xmpp:ping", "http://jabber.org/protocol/disco#info"} <= info["disco_info"]["features"]
        await offline(joe)

    run(scenario, 45)


def raw_attack(server: ServerHarness, payload: bytes, header: bool = True) -> bytes:
    """Send ``payload`` on a plain socket (after a stream header) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.ports["c2s"]), timeout=TIMEOUT) as sock:
        if header:
            sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                         b"xmlns:stream='http://etherx.jabber.org/streams' to='falcot.com' version='1.0'>")
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has read all of a large payload
        received = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            received += chunk
        return received


def test_hostileClientsDoNotDisturbOthers(server) -> None:
    """
    If raw sockets send a billion-laughs DOCTYPE, a 1 MB stanza and garbage, each gets its stream
    error (restricted-xml, policy-violation, not-well-formed) and is disconnected, while two
    logged-in users keep chatting between the attacks.
    """
    attacks = [
        ((CORPUS / "defusedxml_xmlbomb.xml").read_bytes(), False, b"<restricted-xml"),
        (b"<message to='roland@falcot.com'><body>" + b"A" * 1_000_000, True, b"<policy-violation"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(64)), False, b"<not-well-formed"),
        (b"<message><body>&lol9;</body></message>", True, b"<restricted-xml"),
    ]

    async def scenario() -> None:
        joe = await online(server, "joe", "witness")
        roland = await online(server, "roland", "witness")
        roland_inbox = events(roland)
        loop = asyncio.get_running_loop()
        for number, (payload, header, expected) in enumerate(attacks):
            answer = await loop.run_in_executor(None, raw_attack, server, payload, header)
            assert expected in answer, answer[-300:]
            assert answer.endswith(b"</stream:stream>")
            await chat(joe, "roland@falcot.com/witness", roland_inbox, f"still here after attack {number}")
        await offline(joe, roland)

    run(scenario, 45)


def test_componentExchangesWithUser(server) -> None:
    """
    If a slixmpp ComponentXMPP connects with its secret (XEP-0114), a user's message reaches it
    and its reply reaches the user.
    """
    async def scenario() -> None:
        component = ComponentXMPP(COMPONENT, COMPONENT_SECRET, "127.0.0.1", server.ports["components"])
        started = asyncio.get_running_loop().create_future()
        component.add_event_handler("session_start", lambda _: started.set_result(True))

        def echo(message: Any) -> None:
            message.reply(f"echo: {message['body']}").send()

        component.add_event_handler("message", echo)
        component.connect()
        await asyncio.wait_for(started, TIMEOUT)
        joe = await online(server, "joe", "component")
        joe_inbox = events(joe)
        joe.send_message(mto=f"echo@{COMPONENT}", mbody="hello bot", mtype="chat")
        reply = await asyncio.wait_for(joe_inbox.get(), TIMEOUT)
        assert (str(reply["from"]), reply["body"]) == (f"echo@{COMPONENT}", "echo: hello bot")
        await offline(joe, component)

    run(scenario, 45)


def test_sameResourceReplacesOldSession(server) -> None:
    """
    If a user logs in twice with the same resource, the first connection is closed (conflict) and
    messages reach the new one.
    """
    async def scenario() -> None:
        first = await online(server, "joe", "twice")
        closed = asyncio.get_running_loop().create_future()
        first.add_event_handler("disconnected", lambda _: closed.done() or closed.set_result(True))
        second = await online(server, "joe", "twice")
        await asyncio.wait_for(closed, TIMEOUT)
        roland = await online(server, "roland", "conflict")
        await chat(roland, "joe@falcot.com/twice", events(second), "to the new one")
        await offline(second, roland)

    run(scenario, 45)
    assert "joe@falcot.com/twice logged in again; closing the older session" in server.log()


def test_sslContextRejectsUntrustedServer(server) -> None:
    """
    If a client does not trust the test certificate, TLS fails: the server really presents its
    certificate on both listeners (the clients above trusted it explicitly).
    """
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", server.ports["c2s_direct_tls"]), timeout=TIMEOUT) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="falcot.com")


def read_until(connection: SSL.Connection, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_scramPlusChannelBindingOverRealTls(server, cb_type: str) -> None:
    """
    If a client (pyOpenSSL, since Python's ssl has no tls-exporter) logs in over direct TLS 1.3
    with SCRAM-SHA-256-PLUS bound to tls-exporter (RFC 9266) or tls-server-end-point (RFC 5929),
    the server advertises the type, accepts the proof and proves itself with v=.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(str(server.directory / "var" / "certificate.pem"))
    context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    with socket.create_connection(("127.0.0.1", server.ports["c2s_direct_tls"]), timeout=TIMEOUT) as sock:
        sock.settimeout(None)  # pyOpenSSL wants a blocking socket; pytest-timeout bounds the test
        connection = SSL.Connection(context, sock)
        connection.set_tlsext_host_name(b"falcot.com")
        connection.set_connect_state()
        connection.do_handshake()
        assert connection.get_protocol_version_name() == "TLSv1.3"
        connection.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                           b"xmlns:stream='http://etherx.jabber.org/streams' to='falcot.com' version='1.0'>")
        features = read_until(connection, b"</stream:features>")
        assert b"<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features
        assert f"<channel-binding type='{cb_type}'/>".encode() in features
        if cb_type == "tls-exporter":
            cb_data = connection.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        else:
            cb_data = connection.get_peer_certificate().to_cryptography().fingerprint(hashes.SHA256())
        gs2 = f"p={cb_type},,"
        bare = "n=joe,r=e2e-client-nonce"
        first = base64.b64encode((gs2 + bare).encode()).decode()
        connection.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>"
                           f"{first}</auth>".encode())
        challenge = read_until(connection, b"</challenge>")
        server_first = base64.b64decode(challenge.split(b">", 1)[1].split(b"<", 1)[0]).decode()
        final, verifier = scram_client_final(PASSWORDS["joe"], "sha256", bare, server_first, gs2.encode() + cb_data)
        connection.sendall(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                           f"{base64.b64encode(final.encode()).decode()}</response>".encode())
        answer = read_until(connection, b"</success>")
        assert answer.startswith(b"<success"), answer
        assert base64.b64decode(answer.split(b">", 1)[1].split(b"<", 1)[0]) == verifier
        connection.sendall(b"</stream:stream>")

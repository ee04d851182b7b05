"""The embedded STUN responder over TCP, on the real server (RFC 8489 §6.2.2)."""

from __future__ import annotations

import socket

from tests.e2e.harness import wait_for_port
from unirtc.turn.stun import Class, Message, Method, parse_message


def binding_over_tcp(port: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """Send one Binding request on a new connection; return (mapped address, our address)."""
    request = Message(Method.BINDING, Class.REQUEST)
    request.add_fingerprint()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(bytes(request))
        data = b""
        while len(data) < 20 or len(data) < 20 + int.from_bytes(data[2:4], "big"):
            chunk = connection.recv(4096)
            assert chunk, "connection closed before the answer"
            data += chunk
        answer = parse_message(data)
        assert answer.transaction_id == request.transaction_id
        return answer.attributes["XOR-MAPPED-ADDRESS"], connection.getsockname()


def test_bindingOverTcpAndGarbageClosesOnlyThatConnection(harness) -> None:
    """
    If a client sends a Binding request over TCP to the STUN port, it gets its own address back;
    a connection sending garbage is closed, and the next connection is answered as before.
    """
    harness.start()
    wait_for_port(harness.ports["stun"])
    mapped, local = binding_over_tcp(harness.ports["stun"])
    assert mapped == local
    with socket.create_connection(("127.0.0.1", harness.ports["stun"]), timeout=10) as junk:
        junk.sendall(b"\x16\x03\x01\x02\x00" + b"\x00" * 64)
        try:
            assert junk.recv(4096) == b""  # closed without an answer...
        except ConnectionResetError:
            pass  # ...or reset: either way, no answer and the connection is gone
    mapped, local = binding_over_tcp(harness.ports["stun"])
    assert mapped == local
    assert harness.stop() == 0

"""ALPN on every TLS listener: clients that offer it connect, and get the protocol both speak.

Twisted's default ALPN callback turned "no overlap" into an internal_error alert, so any client
offering ALPN the listener did not speak (curl, XEP-0368 clients, SIP phones) failed outright.
"""

from __future__ import annotations

import socket
import ssl

import pytest


def negotiated(harness, port_name: str, offered: list[str]) -> str | None:
    context = ssl.create_default_context(cafile=str(harness.directory / "var" / "certificate.pem"))
    context.check_hostname = False
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", harness.ports[port_name]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="falcot.com") as tls:
            return tls.selected_alpn_protocol()


@pytest.mark.parametrize("port_name, offered, expected", [
    ("c2s_direct_tls", ["xmpp-client"], "xmpp-client"),
    ("c2s_direct_tls", ["h2", "http/1.1"], None),
    ("web", ["h2", "http/1.1"], "http/1.1"),
    ("web", ["xmpp-client"], None),
])
def test_alpnNegotiatedOrSkipped(harness, port_name: str, offered: list[str], expected: str | None) -> None:
    """
    If a TLS client offers ALPN protocols, the handshake succeeds: the listener's protocol is
    selected when offered (xmpp-client on direct-TLS c2s, http/1.1 on the web listener), and
    none is selected otherwise.
    """
    harness.start(wait_for="c2s_direct_tls")
    assert negotiated(harness, port_name, offered) == expected

# -*- test-case-name: tests.protocol.test_s2s -*-
"""XMPP federation (RFC 6120 server-to-server): what incoming and outgoing links share.

A link carries stanzas one way, from an authenticated domain to one of ours (incoming,
``s2s_in.py``) or from one of ours to a remote domain (outgoing, ``s2s_out.py``);
``s2s_links.py`` makes outgoing links on demand, queues stanzas while they are set up and
bounces them when that fails. A peer authenticates with SASL EXTERNAL when its certificate
is valid for its domain (``peer_identity.py``), else with Server Dialback (``dialback.py``)
when ``[s2s] dialback`` allows it; TLS is required unless ``[s2s] require_encryption = no``.

``S2STLS`` makes the TLS connections: our certificate in both roles, the peer's certificate
requested (a server asks the connecting server for one) but never enforced by OpenSSL, so a
peer with a self-signed certificate still gets as far as dialback; the sessions decide.

Plugins see one event: ``s2s-ready`` (a ``LinkEvent``) when a link is authenticated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from zope.interface import implementer

from unirtc.plugin import HookBus
from unirtc.tls import CertificateFiles, server_context_factory
from unirtc.xmpp.dialback import NS_DIALBACK, dialback_key
from unirtc.xmpp.errors import NS_STREAMS
from unirtc.xmpp.peer_identity import PeerCheck
from unirtc.xmpp.router import Router
from unirtc.xmpp.stream import XmppStream

if TYPE_CHECKING:
    from unirtc.xmpp.s2s_links import LinkManager

NS_SERVER = "jabber:server"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
ALPN_XMPP_SERVER = b"xmpp-server"  # XEP-0368 §3
NEGOTIATION_TIMEOUT = 60.0


@dataclass
class LinkSecurity:
    """How a link is protected, for logs, ``s2s-ready`` handlers and status output."""

    tls: bool = False
    certificate: str = "none"  # "verified (DNS-ID)", "not verified: <reason>", "none"
    auth: str = "none"  # "SASL EXTERNAL", "dialback", "dialback (certificate)"

    @property
    def verified(self) -> bool:
        return self.certificate.startswith("verified")

    def record(self, check: PeerCheck) -> None:
        self.certificate = f"verified ({check.identity})" if check.valid else f"not verified: {check.reason}"

    def __str__(self) -> str:
        tls = "TLS" if self.tls else "no TLS"
        certificate = "certificate verified" if self.verified else "certificate not verified"
        return f"{tls}, {certificate}, {self.auth}"


@dataclass
class LinkEvent:
    """``s2s-ready``: ``remote`` may now exchange stanzas with ``local`` in ``direction``."""

    local: str
    remote: str
    direction: str  # "incoming" or "outgoing"
    security: LinkSecurity


@dataclass
class Federation:
    """What every s2s session shares.

    ``check_peer(chain, domain)`` judges a certificate chain (leaf first) for a domain;
    ``secret`` keys our dialback keys (random per process: a key only has to be recognised
    while the stream it was sent on lives); ``links`` is the link manager, which incoming
    sessions ask to verify dialback keys with the claimed domain's server.
    """

    router: Router
    bus: HookBus
    clock: Any
    secret: bytes
    check_peer: Callable[[list[x509.Certificate], str], PeerCheck]
    tls: S2STLS | None = None
    require_encryption: bool = True
    dialback: bool = True
    negotiation_timeout: float = NEGOTIATION_TIMEOUT
    links: LinkManager | None = field(default=None, repr=False)

    def serves(self, domain: str) -> bool:
        """Our account domain(s) and every component domain (MUC, XEP-0114) share the links."""
        return domain in self.router.hosts or domain in self.router.components

    def key(self, receiving: str, originating: str, stream_id: str) -> str:
        return dialback_key(self.secret, receiving, originating, stream_id)


def write_initial_header(stream: XmppStream, local: str, remote: str) -> None:
    """Open an outgoing stream: no ``id`` (RFC 6120 §4.7.3 leaves that to the receiver), and
    ``xmlns:db`` declared, which XEP-0220 §2.1.1 reads as dialback support."""
    header = (f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' xmlns:stream='{NS_STREAMS}' "
              f"xmlns:db='{NS_DIALBACK}' from={quoteattr(local)} to={quoteattr(remote)} "
              f"version='1.0' xml:lang='en'>")
    stream.write(header.encode("utf-8"))
    stream.header_sent = True


def peer_certificates(stream: XmppStream) -> list[x509.Certificate]:
    """The certificate chain the peer presented, leaf first; empty without TLS or certificate.

    A TLS server sees the client's leaf apart from the rest of its chain (OpenSSL leaves it out
    of ``get_peer_cert_chain`` on that side), so the leaf is put first explicitly.
    """
    connection = stream.tls_connection()
    if connection is None:
        return []
    leaf = connection.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    return [leaf, *(c for c in chain if c != leaf)]


def _accept_any(connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int) -> bool:
    """Let the handshake finish whatever the peer's certificate; ``check_peer`` judges it after."""
    return True


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes | object:
    """Accept "xmpp-server" (XEP-0368), else negotiate nothing. Twisted's own callback answers
    an empty protocol when nothing overlaps, which OpenSSL turns into an internal_error alert:
    Prosody offers ALPN "xmpp-server" even on STARTTLS, and that broke every handshake."""
    return ALPN_XMPP_SERVER if ALPN_XMPP_SERVER in offered else SSL.NO_OVERLAPPING_PROTOCOLS


class S2STLS:
    """TLS for s2s in both roles, from the ``[tls]`` certificate (read when first needed, after
    the certificate service has made sure the files exist)."""

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self._context: SSL.Context | None = None

    def context(self) -> SSL.Context:
        if self._context is None:
            context = server_context_factory(self.files).getContext()
            # VERIFY_PEER makes a server ask for the client's certificate (SASL EXTERNAL needs
            # it) and a client check the server's; _accept_any keeps either from failing here.
            context.set_verify(SSL.VERIFY_PEER, _accept_any)
            context.set_alpn_select_callback(_select_alpn)
            self._context = context
        return self._context

    def server(self) -> _ServerCreator:
        return _ServerCreator(self)

    def client(self, domain: str, direct_tls: bool = False) -> _ClientCreator:
        return _ClientCreator(self, domain, direct_tls)


def _is_ip(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        return False
    return True


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    def __init__(self, tls: S2STLS) -> None:
        self.tls = tls

    def serverConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        return SSL.Connection(self.tls.context(), None)


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """SNI names the remote domain (XEP-0368 requires it; RFC 6120 §13.7.1.2 recommends it)."""

    def __init__(self, tls: S2STLS, domain: str, direct_tls: bool) -> None:
        self.tls = tls
        self.domain = domain
        self.direct_tls = direct_tls

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.tls.context(), None)
        if not _is_ip(self.domain):  # RFC 6066 §3: SNI never carries an address
            connection.set_tlsext_host_name(self.domain.encode("idna"))
        if self.direct_tls:
            connection.set_alpn_protos([ALPN_XMPP_SERVER])
        return connection

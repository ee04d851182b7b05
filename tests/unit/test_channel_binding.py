"""Channel-binding data for SCRAM-PLUS, on real TLS connections made in memory."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from unirtc.tls import CertificateFiles, create_self_signed, server_context_factory
from unirtc.xmpp.channel_binding import binding_data, binding_types, server_end_point


def handshake(server_ctx: SSL.Context, max_version: int) -> tuple[SSL.Connection, SSL.Connection]:
    """Connect a client and a server Connection through memory BIOs until both are done."""
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_max_proto_version(max_version)
    server, client = SSL.Connection(server_ctx, None), SSL.Connection(client_ctx, None)
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        for source, sink in ((client, server), (server, client)):
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
    return client, server


class ChannelBindingTests(SynchronousTestCase):
    def setUp(self) -> None:
        folder = Path(self.mktemp())
        folder.mkdir()
        self.files = CertificateFiles(folder / "cert.pem", folder / "key.pem")
        create_self_signed(self.files, ["falcot.com"], datetime.now(timezone.utc))
        self.context = server_context_factory(self.files).getContext()

    def test_tls13ExporterMatchesClient(self) -> None:
        """
        If the connection is TLS 1.3, tls-exporter is offered first and the server's data equals
        what the client derives with the RFC 9266 label.
        """
        client, server = handshake(self.context, SSL.TLS1_3_VERSION)
        self.assertEqual(binding_types(server), ["tls-exporter", "tls-server-end-point"])
        expected = client.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        self.assertEqual(binding_data(server, "tls-exporter"), expected)

    def test_tls12OffersEndPointOnly(self) -> None:
        """
        If the connection is TLS 1.2, only tls-server-end-point is offered, and it is the SHA-256
        of the certificate the client saw (the certificate is signed with SHA-256).
        """
        client, server = handshake(self.context, SSL.TLS1_2_VERSION)
        self.assertEqual(binding_types(server), ["tls-server-end-point"])
        self.assertIsNone(binding_data(server, "tls-exporter"))
        der = client.get_peer_certificate().to_cryptography().public_bytes(Encoding.DER)
        self.assertEqual(binding_data(server, "tls-server-end-point"), hashlib.sha256(der).digest())
        self.assertIsNone(binding_data(server, "tls-unique"))

    def test_noConnectionNoBinding(self) -> None:
        """
        If there is no TLS connection, there are no binding types and no data.
        """
        self.assertEqual(binding_types(None), [])
        self.assertIsNone(binding_data(None, "tls-exporter"))

    def test_endPointUpgradesSha1(self) -> None:
        """
        If a certificate were signed with SHA-1, RFC 5929 §4.1 says hash it with SHA-256 instead.
        """
        certificate = x509.load_pem_x509_certificate(self.files.certificate.read_bytes())

        class Sha1Signed:
            signature_hash_algorithm = hashes.SHA1()

            def fingerprint(self, algorithm):
                return certificate.fingerprint(algorithm)

        self.assertEqual(server_end_point(Sha1Signed()), certificate.fingerprint(hashes.SHA256()))

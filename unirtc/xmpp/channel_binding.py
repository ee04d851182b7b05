# -*- test-case-name: tests.unit.test_channel_binding -*-
"""TLS channel-binding data for SCRAM-PLUS: tls-exporter (RFC 9266) and tls-server-end-point
(RFC 5929 §4), read from the pyOpenSSL ``Connection`` under a stream.

tls-exporter is only offered on TLS 1.3: RFC 9266 §3 allows it on TLS 1.2 only with the
extended master secret, which pyOpenSSL cannot report. tls-server-end-point works on any
version: the hash of our own certificate, with SHA-256 replacing MD5 and SHA-1.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_LENGTH = 32


def binding_types(connection: Any) -> list[str]:
    """The channel-binding types this TLS connection supports, preferred first."""
    if connection is None:
        return []
    types = []
    if connection.get_protocol_version_name() == "TLSv1.3":
        types.append("tls-exporter")
    if connection.get_certificate() is not None:
        types.append("tls-server-end-point")
    return types


def binding_data(connection: Any, cb_type: str) -> bytes | None:
    """The binding data for ``cb_type`` on this connection, or None if it has none."""
    if connection is None:
        return None
    if cb_type == "tls-exporter":
        if connection.get_protocol_version_name() != "TLSv1.3":
            return None
        return bytes(connection.export_keying_material(EXPORTER_LABEL, EXPORTER_LENGTH))
    if cb_type == "tls-server-end-point":
        certificate = connection.get_certificate()
        if certificate is None:
            return None
        return server_end_point(certificate.to_cryptography())
    return None


def server_end_point(certificate: x509.Certificate) -> bytes:
    """RFC 5929 §4.1: the certificate hashed with its signature hash, MD5/SHA-1 upgraded."""
    algorithm = certificate.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    return certificate.fingerprint(algorithm)

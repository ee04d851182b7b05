# -*- test-case-name: tests.unit.test_peer_identity -*-
"""Is a federation peer who it claims to be? Its certificate chain and its name, checked apart.

OpenSSL is told to accept any certificate during the handshake (a peer that fails here may
still authenticate with Server Dialback when ``[s2s] dialback`` allows it); afterwards the
session asks ``check_peer`` about the chain it received, for the domain the peer claims:

- the chain must lead to a trust anchor: the system store and the ``[tls] ca`` certificates
  (a site federating privately can list its partners' CA or self-signed certificates there);
- the leaf must name the domain (RFC 6120 §13.7.1.2, RFC 7590 §3.2, RFC 6125 rules): a DNS-ID
  (dNSName, wildcards allowed in the leftmost label), an SRV-ID ``_xmpp-server.<domain>``, or
  an XmppAddr (id-on-xmppAddr otherName, compared after JID preparation, no wildcards).
  The subject's CN is not used (RFC 9525 retired it; service_identity no longer reads it).

No sockets and no clock: ``now`` is passed in, so tests check expiry without waiting.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from OpenSSL import crypto
from service_identity import CertificateError as PatternError
from service_identity import VerificationError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import DNS_ID, SRV_ID, verify_service_identity

from unirtc.xmpp.jid import InvalidJID, normalize_domain

ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
MAX_ANCHOR_FILE = 4 * 1024 * 1024


class PeerIdentityError(Exception):
    """A trust anchor file that cannot be used, or a certificate that names someone else."""


@dataclass(frozen=True)
class PeerCheck:
    """The verdict on a peer's certificate: ``identity`` says which name matched (for logs)."""

    valid: bool
    reason: str
    identity: str | None = None


class TrustStore:
    """The trust anchors for federation: the system store (if asked) and extra certificates.

    OpenSSL keeps the first verification time set on a store, so each check builds a fresh
    store: the system anchors come from the hashed directory (looked up lazily, about 10 us)
    rather than the bundle file (about 6 ms to parse), unless there is no such directory.
    """

    def __init__(self, anchors: Sequence[x509.Certificate] = (), *, system: bool = False) -> None:
        self.system = system
        self._anchors = [crypto.X509.from_cryptography(anchor) for anchor in anchors]
        self._cafile: str | None = None
        self._capath: str | None = None
        if system:
            paths = ssl.get_default_verify_paths()
            for capath in (os.environ.get(paths.openssl_capath_env), paths.openssl_capath, paths.capath):
                if capath and os.path.isdir(capath):
                    self._capath = capath
                    break
            else:
                for cafile in (os.environ.get(paths.openssl_cafile_env), paths.openssl_cafile, paths.cafile):
                    if cafile and os.path.isfile(cafile):
                        self._cafile = cafile
                        break

    @property
    def extra(self) -> int:
        """How many anchors came from ``[tls] ca`` (for the startup log line)."""
        return len(self._anchors)

    def verify_chain(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                     now: datetime) -> str | None:
        """None if the chain leads to an anchor and is valid at ``now``; else OpenSSL's reason."""
        store = crypto.X509Store()
        if self._cafile or self._capath:
            store.load_locations(self._cafile, self._capath)
        for anchor in self._anchors:
            store.add_cert(anchor)
        store.set_time(_utc(now))
        context = crypto.X509StoreContext(
            store, crypto.X509.from_cryptography(leaf),
            [crypto.X509.from_cryptography(c) for c in intermediates])
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError as e:
            return str(e)
        return None


def load_anchors(path: Path) -> list[x509.Certificate]:
    """Read the PEM certificates in ``path`` (``[tls] ca``); errors name the file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ANCHOR_FILE + 1)
    except OSError as e:
        raise PeerIdentityError(f"cannot read [tls] ca file {path}: {e.strerror or e}") from None
    if len(data) > MAX_ANCHOR_FILE:
        raise PeerIdentityError(f"[tls] ca file {path} is larger than {MAX_ANCHOR_FILE} bytes")
    try:
        anchors = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise PeerIdentityError(f"[tls] ca file {path} holds no usable PEM certificate: {e}") from None
    return anchors


def xmpp_addrs(certificate: x509.Certificate) -> list[str]:
    """The id-on-xmppAddr values of the subjectAltName (RFC 6120 §13.7.1.4), malformed ones skipped."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values = []
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id == ID_ON_XMPPADDR:
            text = _der_utf8_string(name.value)
            if text is not None:
                values.append(text)
    return values


def match_identity(certificate: x509.Certificate, domain: str) -> str:
    """Which identifier of the certificate names ``domain``; raises PeerIdentityError if none does."""
    try:
        patterns = extract_patterns(certificate)
    except PatternError as e:
        raise PeerIdentityError(f"the certificate's names cannot be read: {e}") from None
    for kind, make in (("DNS-ID", lambda: DNS_ID(domain)), ("SRV-ID", lambda: SRV_ID(f"_xmpp-server.{domain}"))):
        try:
            service_id = make()
        except ValueError:  # an IP literal domain has no DNS or SRV name
            continue
        try:
            verify_service_identity(patterns, obligatory_ids=[service_id], optional_ids=[])
            return kind
        except (VerificationError, PatternError):  # a mismatch, or no DNS/SRV names at all
            pass
    for value in xmpp_addrs(certificate):
        try:
            if normalize_domain(value) == domain:
                return "XmppAddr"
        except InvalidJID:
            continue
    raise PeerIdentityError(f"the certificate does not name {domain} (no matching DNS-ID, SRV-ID or XmppAddr)")


def check_peer(store: TrustStore, chain: Sequence[x509.Certificate], domain: str, now: datetime) -> PeerCheck:
    """Verify ``chain`` (leaf first, as received) for ``domain`` at ``now``."""
    if not chain:
        return PeerCheck(False, "the peer sent no certificate")
    leaf, intermediates = chain[0], chain[1:]
    problem = store.verify_chain(leaf, intermediates, now)
    if problem is not None:
        return PeerCheck(False, f"certificate not trusted: {problem}")
    try:
        identity = match_identity(leaf, domain)
    except PeerIdentityError as e:
        return PeerCheck(False, str(e))
    return PeerCheck(True, f"certificate verified ({identity})", identity)


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def _der_utf8_string(data: bytes) -> str | None:
    """Decode a DER UTF8String (tag 12), exactly; None for anything else."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        octets = length & 0x7F
        if octets == 0 or octets > 3 or len(data) < 2 + octets:
            return None
        length, offset = int.from_bytes(data[2:2 + octets], "big"), 2 + octets
    if len(data) != offset + length:
        return None
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None

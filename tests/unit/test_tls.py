"""Tests for unirtc.tls: self-signed creation, certificate checks and the server TLS context."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from unirtc.tls import (
    ID_ON_XMPPADDR,
    CertificateError,
    CertificateFiles,
    certificate_names,
    check_certificate,
    create_self_signed,
    ensure_certificate,
    is_warning,
    server_context_factory,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
DOMAINS = ["falcot.com", "conference.falcot.com"]
# PEM framing around bytes that are not DER.
BAD_KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
BAD_CERTIFICATE_PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def _tempdir(case: SynchronousTestCase) -> Path:
    """A fresh folder outside the repository, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="unirtc-tls-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path


def _files(case: SynchronousTestCase, name: str = "tls") -> CertificateFiles:
    folder = _tempdir(case) / name
    return CertificateFiles(certificate=folder / "cert.pem", key=folder / "key.pem")


def _load_leaf(files: CertificateFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificates(files.certificate.read_bytes())[0]


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _sign(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    dns: list[str] | None = None,
    now: datetime = NOW,
) -> x509.Certificate:
    """Make certificates that create_self_signed never makes: CAs, chains, CN-only."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns is not None:
        san = x509.SubjectAlternativeName([x509.DNSName(d) for d in dns])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _chain(case: SynchronousTestCase) -> tuple[CertificateFiles, x509.Certificate]:
    """Root → intermediate → leaf for falcot.com; the file holds leaf and intermediate only."""
    root_key, inter_key, leaf_key = _ec_key(), _ec_key(), _ec_key()
    root = _sign("Falcot Root", root_key, "Falcot Root", root_key, ca=True)
    inter = _sign("Falcot Intermediate", inter_key, "Falcot Root", root_key, ca=True)
    leaf = _sign("falcot.com", leaf_key, "Falcot Intermediate", inter_key, ca=False, dns=DOMAINS)
    files = _files(case)
    files.certificate.parent.mkdir(parents=True)
    files.certificate.write_bytes(_pem(leaf) + _pem(inter))
    files.key.write_bytes(_pem_key(leaf_key))
    return files, root


def _memory_handshake(server_ctx: SSL.Context, client_ctx: SSL.Context) -> SSL.Connection:
    """Run a TLS handshake between two memory-BIO connections. Return the client side."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(b"falcot.com")
    for _ in range(50):
        moved = False
        for this, other in ((client, server), (server, client)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                data = this.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                other.bio_write(data)
                moved = True
        if not moved:
            break
    client.do_handshake()
    return client


def _client_context(max_version: int | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
        # OpenSSL's default security level forbids TLS < 1.2 even in the client.
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return ctx


class _Greeter(Protocol):
    """Sends a greeting once TLS is up and records what arrives."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.received = b""
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        transport = self.transport
        assert ITransport.providedBy(transport)
        transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.lost = reason


def _twisted_loopback(
    server_options: CertificateOptions, hostname: str, root_pem: bytes
) -> tuple[_Greeter, _Greeter]:
    """Connect TLSMemoryBIOFactory server and client protocols in memory with iosim."""
    clock = Clock()
    server_app, client_app = _Greeter(b"server greeting"), _Greeter(b"client greeting")
    server_factory = Factory.forProtocol(lambda: server_app)
    client_factory = Factory.forProtocol(lambda: client_app)
    client_options = optionsForClientTLS(hostname, trustRoot=Certificate.loadPEM(root_pem))
    server = TLSMemoryBIOFactory(server_options, False, server_factory, clock).buildProtocol(None)
    client = TLSMemoryBIOFactory(client_options, True, client_factory, clock).buildProtocol(None)
    assert server is not None and client is not None
    pump = connect(
        server, FakeTransport(server, isServer=True), client, FakeTransport(client, isServer=False),
        clock=clock,
    )
    pump.flush()
    return server_app, client_app


class CreateSelfSignedTests(SynchronousTestCase):
    def test_writesCertificateAndKey(self) -> None:
        """
        If a self-signed pair is created, both files exist in new folders and hold a PEM
        certificate and the matching PEM key.
        """
        files = _files(self, "a/b/c")
        create_self_signed(files, DOMAINS, NOW)
        certificate = _load_leaf(files)
        key = serialization.load_pem_private_key(files.key.read_bytes(), None)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        self.assertEqual(
            key.public_key().public_bytes(*spki), certificate.public_key().public_bytes(*spki)
        )

    def test_keyFileIsPrivate(self) -> None:
        """
        If a self-signed pair is created, the key file has mode 0600 even under a lax umask.
        """
        files = _files(self)
        old = os.umask(0)
        try:
            create_self_signed(files, DOMAINS, NOW)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(files.key.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(files.certificate.stat().st_mode), 0o644)

    def test_noTemporaryFilesLeft(self) -> None:
        """
        If a self-signed pair is created, only the two files remain in the folder.
        """
        files = _files(self)
        create_self_signed(files, DOMAINS, NOW)
        self.assertEqual(sorted(os.listdir(files.key.parent)), ["cert.pem", "key.pem"])

    def test_namesAreCovered(self) -> None:
        """
        If a certificate is made for several domains, the first is the CN and every domain is
        a dNSName that service_identity accepts.
        """
        files = _files(self)
        create_self_signed(files, DOMAINS, NOW)
        certificate = _load_leaf(files)
        self.assertEqual(certificate_names(files.certificate), DOMAINS)
        cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([a.value for a in cn], ["falcot.com"])
        for domain in DOMAINS:
            verify_certificate_hostname(certificate, domain)
        self.assertEqual(check_certificate(files, DOMAINS, NOW), [])

    def test_xmppAddrForEachDomain(self) -> None:
        """
        If a certificate is made, each domain has an id-on-xmppAddr otherName whose value is
        a DER UTF8String in UTF-8 form, while the dNSName holds the A-label.
        """
        files = _files(self)
        create_self_signed(files, ["falcot.com", "bücher.de"], NOW)
        san = _load_leaf(files).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        others = san.value.get_values_for_type(x509.OtherName)
        self.assertEqual([o.type_id for o in others], [ID_ON_XMPPADDR, ID_ON_XMPPADDR])
        utf8 = "bücher.de".encode()
        self.assertEqual(
            [o.value for o in others],
            [b"\x0c\x0afalcot.com", b"\x0c" + bytes([len(utf8)]) + utf8],
        )
        self.assertEqual(certificate_names(files.certificate), ["falcot.com", "xn--bcher-kva.de"])

    def test_wildcardHasNoXmppAddr(self) -> None:
        """
        If a wildcard domain is listed, it becomes a dNSName only, and it covers one label.
        """
        files = _files(self)
        create_self_signed(files, ["falcot.com", "*.falcot.com"], NOW)
        san = _load_leaf(files).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(len(san.value.get_values_for_type(x509.OtherName)), 1)
        self.assertEqual(check_certificate(files, ["conference.falcot.com"], NOW), [])
        self.assertEqual(len(check_certificate(files, ["a.b.falcot.com"], NOW)), 1)

    def test_profile(self) -> None:
        """
        If a certificate is made, it is not a CA, allows serverAuth and clientAuth, and is
        valid from shortly before now for the given number of days.
        """
        files = _files(self)
        create_self_signed(files, DOMAINS, NOW, days=30)
        certificate = _load_leaf(files)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertFalse(constraints.value.ca)
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(
            list(eku), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        self.assertLessEqual(certificate.not_valid_before_utc, NOW)
        self.assertEqual(certificate.not_valid_after_utc, NOW + timedelta(days=30))

    def test_longFirstDomainHasNoCommonName(self) -> None:
        """
        If the first domain is longer than a CN may be, the subject is empty, the SAN is
        critical and the name is still covered.
        """
        long_domain = ".".join(["a" * 60, "b" * 60, "falcot.com"])
        files = _files(self)
        create_self_signed(files, [long_domain], NOW)
        certificate = _load_leaf(files)
        self.assertEqual(len(certificate.subject), 0)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertTrue(san.critical)
        self.assertEqual(check_certificate(files, [long_domain], NOW), [])

    def test_sameFileForCertificateAndKey(self) -> None:
        """
        If certificate and key are one path, the file holds both with mode 0600 and checks clean.
        """
        path = _tempdir(self) / "combined.pem"
        files = CertificateFiles(path, path)
        create_self_signed(files, DOMAINS, NOW)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(check_certificate(files, DOMAINS, NOW), [])

    def test_badDomainsRejected(self) -> None:
        """
        If there are no domains, or a domain is not a DNS name, CertificateError is raised and
        nothing is written.
        """
        files = _files(self)
        for domains in ([], [""], ["bad domain"], ["a..b"], ["-x.com"], ["x" * 64 + ".com"]):
            self.assertRaises(CertificateError, create_self_signed, files, domains, NOW)
        self.assertFalse(files.key.exists())
        self.assertFalse(files.certificate.exists())


class EnsureCertificateTests(SynchronousTestCase):
    def test_createsWhenMissing(self) -> None:
        """
        If neither file exists and self_signed is on, a pair is created and True returned.
        """
        files = _files(self)
        self.assertTrue(ensure_certificate(files, DOMAINS, True, NOW))
        self.assertEqual(check_certificate(files, DOMAINS, NOW), [])

    def test_idempotent(self) -> None:
        """
        If both files exist, ensure_certificate returns False and leaves them byte for byte.
        """
        files = _files(self)
        ensure_certificate(files, DOMAINS, True, NOW)
        before = files.certificate.read_bytes(), files.key.read_bytes()
        self.assertFalse(ensure_certificate(files, DOMAINS, True, NOW))
        self.assertFalse(ensure_certificate(files, ["other.org"], False, NOW))
        self.assertEqual((files.certificate.read_bytes(), files.key.read_bytes()), before)

    def test_missingWithoutSelfSignedRaises(self) -> None:
        """
        If the certificate is missing and self_signed is off, CertificateError names the file
        and the setting, and nothing is written.
        """
        files = _files(self)
        with self.assertRaises(CertificateError) as raised:
            ensure_certificate(files, DOMAINS, False, NOW)
        self.assertEqual(
            str(raised.exception),
            f"certificate file {files.certificate} does not exist and [tls] self_signed = no",
        )
        self.assertFalse(files.key.exists())

    def test_certificateWithoutKeyRefused(self) -> None:
        """
        If only the certificate exists, ensure_certificate refuses to replace it.
        """
        files = _files(self)
        create_self_signed(files, DOMAINS, NOW)
        files.key.unlink()
        before = files.certificate.read_bytes()
        self.assertRaises(CertificateError, ensure_certificate, files, DOMAINS, True, NOW)
        self.assertEqual(files.certificate.read_bytes(), before)

    def test_existingKeyReused(self) -> None:
        """
        If only the key exists, a certificate is issued for that key and the key is kept.
        """
        files = _files(self)
        files.key.parent.mkdir(parents=True)
        files.key.write_bytes(_pem_key(_ec_key()))
        before = files.key.read_bytes()
        self.assertTrue(ensure_certificate(files, DOMAINS, True, NOW))
        self.assertEqual(files.key.read_bytes(), before)
        self.assertEqual(check_certificate(files, DOMAINS, NOW), [])


    def test_unusableKeyRaises(self) -> None:
        """
        If only the key exists and it is garbage, CertificateError is raised and no
        certificate is written.
        """
        files = _files(self)
        files.key.parent.mkdir(parents=True)
        files.key.write_bytes(BAD_KEY_PEM)
        self.assertRaises(CertificateError, ensure_certificate, files, DOMAINS, True, NOW)
        self.assertFalse(files.certificate.exists())


class CheckCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.files = _files(self)
        create_self_signed(self.files, DOMAINS, NOW)

    def test_missingFiles(self) -> None:
        """
        If both files are missing, each is reported as missing.
        """
        files = _files(self)
        self.assertEqual(
            check_certificate(files, DOMAINS, NOW),
            [
                f"certificate file {files.certificate} does not exist",
                f"key file {files.key} does not exist",
            ],
        )

    def test_unreadableFile(self) -> None:
        """
        If the certificate path is a folder, it is reported as unreadable.
        """
        folder = _tempdir(self)
        problems = check_certificate(CertificateFiles(folder, self.files.key), DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("cannot read certificate file", problems[0])

    def test_garbage(self) -> None:
        """
        If the files hold no PEM, or PEM framing around bad DER, each is reported.
        """
        self.files.certificate.write_bytes(b"garbage")
        self.files.key.write_bytes(BAD_KEY_PEM)
        problems = check_certificate(self.files, DOMAINS, NOW)
        self.assertEqual(len(problems), 2)
        self.assertIn("contains no PEM certificate", problems[0])
        self.assertIn("is not a usable PEM private key", problems[1])
        self.files.certificate.write_bytes(BAD_CERTIFICATE_PEM)
        self.assertIn("is not valid PEM", check_certificate(self.files, DOMAINS, NOW)[0])

    def test_oversized(self) -> None:
        """
        If the certificate file is larger than 1 MiB, it is refused unparsed.
        """
        pem = self.files.certificate.read_bytes()
        self.files.certificate.write_bytes(pem * (1024 * 1024 // len(pem) + 1))
        problems = check_certificate(self.files, DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("is larger than", problems[0])

    def test_encryptedKey(self) -> None:
        """
        If the key is encrypted, it is reported, since a server cannot ask for a passphrase.
        """
        key = _ec_key()
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        self.files.key.write_bytes(encrypted)
        problems = check_certificate(self.files, DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("is encrypted", problems[0])

    def test_mismatchedKey(self) -> None:
        """
        If the key belongs to another certificate, the mismatch is reported.
        """
        other = _files(self)
        create_self_signed(other, DOMAINS, NOW)
        files = CertificateFiles(self.files.certificate, other.key)
        self.assertEqual(
            check_certificate(files, DOMAINS, NOW),
            [f"key file {other.key} does not match certificate {self.files.certificate}"],
        )

    def test_uncoveredDomain(self) -> None:
        """
        If a domain is not in the certificate, that domain alone is reported.
        """
        problems = check_certificate(self.files, ["falcot.com", "debian.org"], NOW)
        expected = f"certificate {self.files.certificate} does not cover domain debian.org"
        self.assertEqual(problems, [expected])

    def test_noSubjectAltName(self) -> None:
        """
        If the certificate has only a CN, it covers nothing, as RFC 6125 says.
        """
        key = _ec_key()
        cn_only = _sign("falcot.com", key, "falcot.com", key, ca=False)
        self.files.certificate.write_bytes(_pem(cn_only))
        self.files.key.write_bytes(_pem_key(key))
        self.assertEqual(certificate_names(self.files.certificate), [])
        problems = check_certificate(self.files, ["falcot.com"], NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("falcot.com", problems[0])

    def test_expired(self) -> None:
        """
        If a one-day certificate made ten days ago is checked, it is reported expired.
        """
        create_self_signed(self.files, DOMAINS, NOW - timedelta(days=10), days=1)
        problems = check_certificate(self.files, DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("expired at", problems[0])
        self.assertFalse(is_warning(problems[0]))

    def test_notYetValid(self) -> None:
        """
        If the certificate starts in the future, it is reported not yet valid.
        """
        create_self_signed(self.files, DOMAINS, NOW + timedelta(days=10))
        problems = check_certificate(self.files, DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("is not valid before", problems[0])

    def test_expiringSoonIsWarning(self) -> None:
        """
        If the certificate expires within 14 days, one warning is returned and nothing else.
        """
        create_self_signed(self.files, DOMAINS, NOW, days=20)
        self.assertEqual(check_certificate(self.files, DOMAINS, NOW), [])
        problems = check_certificate(self.files, DOMAINS, NOW + timedelta(days=10))
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("warning:"))
        self.assertTrue(is_warning(problems[0]))
        self.assertIn("expires in 10 days", problems[0])

    def test_naiveNowIsUtc(self) -> None:
        """
        If now is naive, it is read as UTC rather than raising.
        """
        self.assertEqual(check_certificate(self.files, DOMAINS, NOW.replace(tzinfo=None)), [])

    def test_chain(self) -> None:
        """
        If the file holds leaf then intermediate, it checks clean; if they are swapped, the
        order is reported.
        """
        files, _ = _chain(self)
        self.assertEqual(check_certificate(files, DOMAINS, NOW), [])
        leaf, inter = x509.load_pem_x509_certificates(files.certificate.read_bytes())
        files.certificate.write_bytes(_pem(leaf) + _pem(leaf))
        problems = check_certificate(files, DOMAINS, NOW)
        self.assertEqual(len(problems), 1)
        self.assertIn("out of order or incomplete", problems[0])

    def test_certificateNamesRaisesOnMissingFile(self) -> None:
        """
        If certificate_names is given a missing file, CertificateError is raised.
        """
        missing = self.files.certificate.with_name("no.pem")
        self.assertRaises(CertificateError, certificate_names, missing)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from([b"", b"-----BEGIN CERTIFICATE-----\n"]))
def test_checkCertificateNeverRaises(data: bytes, prefix: bytes) -> None:
    """If the certificate file holds arbitrary bytes, check_certificate reports, never raises."""
    folder = Path(tempfile.mkdtemp(prefix="unirtc-tls-"))
    try:
        files = CertificateFiles(folder / "cert.pem", folder / "key.pem")
        files.certificate.write_bytes(prefix + data)
        problems = check_certificate(files, DOMAINS, NOW)
        assert any("certificate file" in p for p in problems)
    finally:
        shutil.rmtree(folder)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=3))
def test_checkCertificateDomainsNeverRaise(domains: list[str]) -> None:
    """If the domains are arbitrary text, check_certificate reports, never raises."""
    folder = Path(tempfile.mkdtemp(prefix="unirtc-tls-"))
    try:
        key = _ec_key()
        files = CertificateFiles(folder / "cert.pem", folder / "key.pem")
        leaf = _sign("falcot.com", key, "falcot.com", key, ca=False, dns=DOMAINS)
        files.certificate.write_bytes(_pem(leaf))
        files.key.write_bytes(_pem_key(key))
        problems = check_certificate(files, domains, NOW)
        assert len(problems) <= len(domains)
    finally:
        shutil.rmtree(folder)


class ServerContextFactoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.files = _files(self)
        create_self_signed(self.files, DOMAINS, NOW)

    def test_twistedHandshakeVerifiesHostname(self) -> None:
        """
        If a Twisted client that trusts the self-signed certificate connects through
        TLSMemoryBIOFactory, both sides exchange data, and a client expecting another
        hostname is refused.
        """
        options = server_context_factory(self.files)
        root = self.files.certificate.read_bytes()
        server, client = _twisted_loopback(options, "conference.falcot.com", root)
        self.assertEqual(client.received, b"server greeting")
        self.assertEqual(server.received, b"client greeting")
        server, client = _twisted_loopback(options, "debian.org", root)
        self.assertEqual(client.received, b"")
        self.assertIsNotNone(client.lost)

    def test_fullChainSent(self) -> None:
        """
        If the certificate file holds leaf and intermediate, a client trusting only the root
        verifies the server and receives both certificates.
        """
        files, root = _chain(self)
        options = server_context_factory(files)
        server, client = _twisted_loopback(options, "falcot.com", _pem(root))
        self.assertEqual(client.received, b"server greeting")
        connection = _memory_handshake(options.getContext(), _client_context())
        chain = connection.get_peer_cert_chain(as_cryptography=True)
        self.assertEqual(
            [c.subject.rfc4514_string() for c in chain or []],
            ["CN=falcot.com", "CN=Falcot Intermediate"],
        )

    def test_contextOptions(self) -> None:
        """
        If the context is built, compression is off, the server picks the cipher and TLS
        1.0 and 1.1 are disabled.
        """
        ctx = server_context_factory(self.files).getContext()
        current = ctx.set_options(0)
        flags = (
            SSL.OP_NO_COMPRESSION,
            SSL.OP_CIPHER_SERVER_PREFERENCE,
            SSL.OP_NO_TLSv1,
            SSL.OP_NO_TLSv1_1,
        )
        for flag in flags:
            self.assertTrue(current & flag, hex(flag))

    def test_tls12Accepted(self) -> None:
        """
        If a client offers at most TLS 1.2, the handshake succeeds with TLS 1.2.
        """
        ctx = server_context_factory(self.files).getContext()
        connection = _memory_handshake(ctx, _client_context(SSL.TLS1_2_VERSION))
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")

    def test_tls11Refused(self) -> None:
        """
        If a client offers at most TLS 1.1, the handshake fails, although the same client
        gets TLS 1.1 from a server that allows it.
        """
        key = serialization.load_pem_private_key(self.files.key.read_bytes(), None)
        lax = SSL.Context(SSL.TLS_METHOD)
        lax.use_certificate(_load_leaf(self.files))
        lax.use_privatekey(key)  # type: ignore[arg-type]
        lax.set_min_proto_version(SSL.TLS1_VERSION)
        lax.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        try:
            control = _memory_handshake(lax, _client_context(SSL.TLS1_1_VERSION))
        except SSL.Error:
            control = None  # an OpenSSL without TLS 1.1 at all: the refusal below still must hold
        if control is not None:
            self.assertEqual(control.get_protocol_version_name(), "TLSv1.1")
        ctx = server_context_factory(self.files).getContext()
        self.assertRaises(SSL.Error, _memory_handshake, ctx, _client_context(SSL.TLS1_1_VERSION))

    def test_badFilesRaise(self) -> None:
        """
        If a file is missing or the key does not match, CertificateError is raised at once.
        """
        other = _files(self)
        self.assertRaises(CertificateError, server_context_factory, other)
        create_self_signed(other, DOMAINS, NOW)
        mixed = CertificateFiles(self.files.certificate, other.key)
        self.assertRaises(CertificateError, server_context_factory, mixed)

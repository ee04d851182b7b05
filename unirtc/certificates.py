"""The server's certificate as a service: made ready before any TLS listener binds.

twistd binds ports in ``privilegedStartService`` (possibly as root, before ``--uid``), so the
certificate is created and loaded there too; listeners only hold a reference to this object
and ask it for a context when a connection arrives.
"""

from __future__ import annotations

from datetime import datetime, timezone

from OpenSSL.SSL import Connection, Context
from twisted.application.service import Service
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from unirtc.logging import get_logger
from unirtc.tls import CertificateFiles, certificate_names, ensure_certificate, server_context_factory

log = get_logger("unirtc.tls")


@implementer(IOpenSSLServerConnectionCreator)
class CertificateService(Service):
    name = "certificate"

    def __init__(self, files: CertificateFiles, domains: list[str], self_signed: bool) -> None:
        self.files = files
        self.domains = domains
        self.self_signed = self_signed
        self._options = None

    def privilegedStartService(self) -> None:
        if ensure_certificate(self.files, self.domains, self.self_signed, datetime.now(timezone.utc)):
            log.warn(
                "Created a self-signed certificate {path} for {domains}; clients will not trust it "
                "until you install one from a CA ([tls] certificate and key)",
                path=str(self.files.certificate), domains=", ".join(self.domains),
            )
        self._options = server_context_factory(self.files)
        log.info("TLS certificate {path} for {names}", path=str(self.files.certificate),
                 names=", ".join(certificate_names(self.files.certificate)))
        super().privilegedStartService()

    def getContext(self) -> Context:
        """The OpenSSL context for server-side TLS, loaded in ``privilegedStartService``."""
        if self._options is None:
            raise RuntimeError("TLS requested before the certificate service started")
        return self._options.getContext()

    def serverConnectionForTLS(self, tls_protocol) -> Connection:
        return Connection(self.getContext(), None)

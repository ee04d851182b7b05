"""What ``unirtc-ctl check`` reports for browsers, from configuration files and certificates."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import load_settings
from unirtc.tls import CertificateFiles, create_self_signed
from unirtc.web.readiness import browser_readiness

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


class ReadinessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()

    def report(self, ini: str = "") -> list:
        (self.folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        return browser_readiness(load_settings(self.folder / "u.ini"), NOW)

    def texts(self, ini: str = "") -> list[str]:
        return [finding.text for finding in self.report(ini)]

    def test_urlsAndDefaults(self) -> None:
        """
        If the defaults are kept, the report names the phone page and both WebSocket URLs on the
        web listener's port, the allowed Origins, the certificate to come, and warns that without
        a TURN secret browsers behind NATs get no media; nothing is a failure.
        """
        findings = self.report("[web]\nlisten = tcp:8443\n")
        texts = [f.text for f in findings]
        self.assertEqual(texts[:3], ["Web phone: https://falcot.com:8443/phone/",
                                     "SIP over WebSocket: wss://falcot.com:8443/sip-websocket",
                                     "XMPP over WebSocket: wss://falcot.com:8443/xmpp-websocket"])
        self.assertIn("Pages allowed to open WebSockets ([web] origins): https://falcot.com, "
                      "https://falcot.com:8443", texts)
        self.assertTrue(any(t.startswith("Certificate for falcot.com: none yet") for t in texts), texts)
        self.assertTrue(any(t.startswith("TURN: no [turn] secret") for t in texts), texts)
        self.assertFalse(any(f.problem for f in findings))

    def test_defaultPortIsLeftOutAndPlainHttpExplained(self) -> None:
        """
        If the listener is on 443 the URLs carry no port (and a click-to-call target is named);
        with tls = no they are http:// and ws:// and the report says browsers need a TLS proxy.
        """
        texts = self.texts("[web]\nlisten = tcp:443\nclick_to_call = sip:sales@falcot.com\n")
        self.assertEqual(texts[:2], ["Web phone: https://falcot.com/phone/",
                                     "Click-to-call: visitors without an account may call sip:sales@falcot.com "
                                     "from https://falcot.com/phone/ (rate-limited per address)"])
        texts = self.texts("[web]\nlisten = tcp:8080\ntls = no\n")
        self.assertEqual(texts[1], "SIP over WebSocket: ws://falcot.com:8080/sip-websocket")
        self.assertTrue(any(t.startswith("Plain HTTP ([web] tls = no)") for t in texts), texts)

    def test_noListenerOrNoSipWebSocket(self) -> None:
        """
        If there is no web listener, the report says there is nothing for browsers; with [sip]
        websocket empty, it says the phone cannot call.
        """
        self.assertEqual(self.texts("[web]\nlisten =\n"),
                         ["No [web] listen: no web phone and no WebSockets for browsers"])
        self.assertIn("SIP over WebSocket: off ([sip] websocket is empty); /phone cannot call",
                      self.texts("[sip]\nwebsocket =\n"))

    def test_certificates(self) -> None:
        """
        If the certificate is self-signed for the domain, browsers are said to refuse it (a
        warning); if it names another host, or is missing with self_signed = no, check fails.
        """
        files = CertificateFiles(self.folder / "cert.pem", self.folder / "key.pem")
        create_self_signed(files, ["falcot.com"], NOW)
        ini = "[tls]\ncertificate = cert.pem\nkey = key.pem\n"
        [finding] = [f for f in self.report(ini) if f.text.startswith("Certificate")]
        self.assertIn("self-signed; browsers refuse it", finding.text)
        self.assertFalse(finding.problem)
        create_self_signed(files, ["falcot.org"], NOW)
        [finding] = [f for f in self.report(ini) if f.text.startswith("Certificate")]
        self.assertTrue(finding.problem)
        self.assertIn("does not cover domain falcot.com", finding.text)
        files.certificate.unlink()
        [finding] = [f for f in self.report(ini + "self_signed = no\n") if f.text.startswith("Certificate")]
        self.assertTrue(finding.problem)
        self.assertIn("is missing", finding.text)

    def test_turnAndJssip(self) -> None:
        """
        If a TURN secret and turn: URIs are configured, the report lists them with the credential
        lifetime; a secret without turn: URIs is a warning; a missing JsSIP says how to install it.
        """
        texts = self.texts("[turn]\nsecret = s\nttl = 600\nuris = stun:t.falcot.com turn:t.falcot.com?transport=udp\n")
        self.assertIn("TURN: turn:t.falcot.com?transport=udp, REST credentials valid 600 s from the issuer "
                      "(coturn needs use-auth-secret with the same secret)", texts)
        texts = self.texts("[turn]\nsecret = s\nuris = stun:t.falcot.com\n[web]\njssip = gone/jssip\n")
        self.assertIn("TURN: a secret but no turn: URI in [turn] uris: browsers get no relay", texts)
        self.assertTrue(any("JsSIP for /phone: not found" in t and "npm ci" in t for t in texts), texts)

"""[web] origins and [xmpp] websocket in the configuration loader."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import ConfigError, load_settings, normalize_origin


class WebOriginsTests(SynchronousTestCase):
    def load(self, ini: str):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        return load_settings(folder / "u.ini")

    def test_defaultOriginsAreDomainAndListenHost(self) -> None:
        """
        If no origins are configured, the account domain and the listen interface are allowed over
        https, with and without the listener's port.
        """
        settings = self.load("[web]\nlisten = tcp:8443:interface=127.0.0.1\n")
        self.assertEqual(settings.web.origins, ("https://falcot.com", "https://127.0.0.1",
                                                "https://falcot.com:8443", "https://127.0.0.1:8443"))

    def test_defaultOriginsWithoutTlsAndOnEveryInterface(self) -> None:
        """
        If the listener is plain HTTP on every interface, the defaults are the domain over http
        only; an IPv6 interface is bracketed.
        """
        self.assertEqual(self.load("[web]\nlisten = tcp:80\ntls = no\n").web.origins, ("http://falcot.com",))
        origins = self.load("[web]\nlisten = tcp:8443:interface=\\:\\:1\n").web.origins
        self.assertIn("https://[::1]:8443", origins)

    def test_configuredOriginsAreNormalised(self) -> None:
        """
        If origins are listed, they replace the defaults, lower-cased, without default ports or a
        trailing slash; ``*`` is kept as is.
        """
        settings = self.load("[web]\norigins = HTTPS://Phone.Falcot.com:443/ https://falcot.com:8443 *\n")
        self.assertEqual(settings.web.origins, ("https://phone.falcot.com", "https://falcot.com:8443", "*"))

    def test_invalidOriginNamesTheKey(self) -> None:
        """
        If an origin has a path, another scheme or no host, the error names [web] origins.
        """
        for word in ("https://falcot.com/phone", "ftp://falcot.com", "falcot.com", "https://"):
            with self.assertRaises(ConfigError) as caught:
                self.load(f"[web]\norigins = {word}\n")
            self.assertEqual((caught.exception.section, caught.exception.key), ("web", "origins"), word)

    def test_normalizeOrigin(self) -> None:
        """
        If browsers' Origin values are normalised, equal origins compare equal and junk is None.
        """
        self.assertEqual(normalize_origin("http://Falcot.com:80"), "http://falcot.com")
        self.assertEqual(normalize_origin("https://falcot.com:8443"), "https://falcot.com:8443")
        self.assertIsNone(normalize_origin("null"))
        self.assertIsNone(normalize_origin("https://falcot.com\r\nX: y"))

    def test_websocketPath(self) -> None:
        """
        If ``[xmpp] websocket`` is unset the path is xmpp-websocket; a path is stored without its
        slash; empty means none; a nested path or one without a slash is an error.
        """
        self.assertEqual(self.load("").xmpp.websocket, "xmpp-websocket")
        self.assertEqual(self.load("[xmpp]\nwebsocket = /ws\n").xmpp.websocket, "ws")
        self.assertEqual(self.load("[xmpp]\nwebsocket =\n").xmpp.websocket, "")
        for value in ("/a/b", "ws", "/"):
            with self.assertRaises(ConfigError) as caught:
                self.load(f"[xmpp]\nwebsocket = {value}\n")
            self.assertEqual(caught.exception.key, "websocket")

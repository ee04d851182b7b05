"""The web phone's settings: [sip] websocket, [web] jssip and [web] click_to_call."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import ConfigError, load_settings


class PhoneSettingsTests(SynchronousTestCase):
    def load(self, ini: str):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        return load_settings(folder / "u.ini")

    def test_defaults(self) -> None:
        """
        If nothing is set, SIP over WebSocket is at /sip-websocket, JsSIP comes from the default
        place, and no click-to-call is offered.
        """
        settings = self.load("")
        self.assertEqual((settings.sip.websocket, settings.web.jssip, settings.web.click_to_call),
                         ("sip-websocket", None, ""))

    def test_websocketPath(self) -> None:
        """
        If [sip] websocket is set, it is stored without its slash; empty turns it off; a path
        with several segments or odd characters names the key.
        """
        self.assertEqual(self.load("[sip]\nwebsocket = /ws\n").sip.websocket, "ws")
        self.assertEqual(self.load("[sip]\nwebsocket =\n").sip.websocket, "")
        for bad in ("/a/b", "ws", "/sip ws"):
            with self.assertRaises(ConfigError) as caught:
                self.load(f"[sip]\nwebsocket = {bad}\n")
            self.assertEqual((caught.exception.section, caught.exception.key), ("sip", "websocket"))

    def test_jssipPathIsResolvedAgainstTheFile(self) -> None:
        """
        If [web] jssip is relative, it is made absolute against the config file's folder.
        """
        settings = self.load("[web]\njssip = js/jssip.min.js\n")
        self.assertEqual(settings.web.jssip, settings.path.parent / "js" / "jssip.min.js")

    def test_clickToCall(self) -> None:
        """
        If [web] click_to_call names a user on a served SIP domain, it is kept with the domain in
        lower case; another domain, a non-SIP URI or junk is an error naming the key.
        """
        settings = self.load("[sip]\ndomains = sip.falcot.com\n[web]\nclick_to_call = sip:sales@SIP.Falcot.com\n")
        self.assertEqual(settings.web.click_to_call, "sip:sales@sip.falcot.com")
        for bad in ("sip:sales@example.org", "tel:+3312345678", "sales", "sip:@falcot.com",
                    "sip:a;b@falcot.com", "sip:" + "x" * 65 + "@falcot.com", "sip:sales@falcot.com;transport=tcp"):
            with self.assertRaises(ConfigError) as caught:
                self.load(f"[web]\nclick_to_call = {bad}\n")
            self.assertEqual((caught.exception.section, caught.exception.key), ("web", "click_to_call"), bad)

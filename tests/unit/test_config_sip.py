"""[sip] outbound in the configuration loader."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import ConfigError, load_settings


class SipOutboundTests(SynchronousTestCase):
    def load(self, ini: str):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        return load_settings(folder / "u.ini")

    def test_outboundIsOffByDefault(self) -> None:
        """
        If [sip] says nothing about outbound (or leaves it empty), requests to foreign domains
        are not relayed.
        """
        self.assertFalse(self.load("").sip.outbound)
        self.assertFalse(self.load("[sip]\noutbound =\n").sip.outbound)

    def test_outboundYesAndNo(self) -> None:
        """
        If [sip] outbound is yes (or true/on/1), relaying is enabled; no turns it off.
        """
        for word in ("yes", "true", "on", "1", "YES"):
            self.assertTrue(self.load(f"[sip]\noutbound = {word}\n").sip.outbound, word)
        self.assertFalse(self.load("[sip]\noutbound = no\n").sip.outbound)

    def test_outboundNotABooleanNamesTheKey(self) -> None:
        """
        If [sip] outbound is neither yes nor no, the error names [sip] outbound.
        """
        with self.assertRaises(ConfigError) as caught:
            self.load("[sip]\noutbound = sometimes\n")
        self.assertEqual((caught.exception.section, caught.exception.key), ("sip", "outbound"))

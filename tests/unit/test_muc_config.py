"""The [muc] section: service domain, room creation policy and per-room limits."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import ConfigError, load_settings
from unirtc.settings import MUCSettings

SAMPLE = Path(__file__).parent.parent.parent / "etc" / "falcot.ini"


class MucConfigTests(SynchronousTestCase):
    def load(self, muc: str):
        path = Path(self.mktemp()).absolute()
        path.mkdir()
        (path / "unirtc.ini").write_text(f"[server]\ndomain = falcot.com\n[muc]\n{muc}")
        return load_settings(path / "unirtc.ini").muc

    def test_defaults(self) -> None:
        """
        If [muc] is empty, the service is conference.<domain>, only local users create rooms,
        and the limits are 20 messages of history, 100 occupants, 60 messages a minute, bursts of 10.
        """
        self.assertEqual(self.load(""), MUCSettings("conference.falcot.com", "local", 20, 100, 60, 10))

    def test_values(self) -> None:
        """
        If every [muc] key is set, each is read (the policy case-insensitively); 0 history is allowed.
        """
        muc = self.load("domain = rooms.falcot.com\nrestrict_room_creation = Admins\nmax_history = 0\n"
                        "max_occupants = 500\nmessage_rate = 120\nmessage_burst = 3\n")
        self.assertEqual(muc, MUCSettings("rooms.falcot.com", "admins", 0, 500, 120, 3))

    def test_errorsNameTheKey(self) -> None:
        """
        If a [muc] value is wrong, ConfigError names the section and key.
        """
        for text, key in (("restrict_room_creation = everyone", "restrict_room_creation"),
                          ("max_occupants = 0", "max_occupants"), ("message_rate = fast", "message_rate"),
                          ("max_history = -1", "max_history"), ("rooms = 3", "rooms")):
            error = self.assertRaises(ConfigError, self.load, text + "\n")
            self.assertEqual((error.section, error.key), ("muc", key))

    def test_sampleDocumentsEveryKey(self) -> None:
        """
        If the sample configuration is read, it loads, and it mentions every [muc] key.
        """
        text = SAMPLE.read_text()
        section = text.split("[muc]", 1)[1].split("\n[", 1)[0]
        for key in ("domain", "restrict_room_creation", "max_history", "max_occupants", "message_rate",
                    "message_burst"):
            self.assertIn(f"{key} =", section)
        self.assertEqual(load_settings(SAMPLE).muc.restrict_room_creation, "local")

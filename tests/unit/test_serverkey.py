"""Tests for unirtc.serverkey: the persistent 32-byte key behind SIP nonces."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.serverkey import KEY_SIZE, ServerKeyError, load_or_create


class ServerKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = Path(self.mktemp()) / "state"

    def test_createdPrivateAndStable(self) -> None:
        """
        If no key exists, a 32-byte key is created mode 0600 (folder included), and later
        calls return the same key; no temporary file is left behind.
        """
        key = load_or_create(self.state)
        self.assertEqual(len(key), KEY_SIZE)
        path = self.state / "server.key"
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(load_or_create(self.state), key)
        self.assertEqual(sorted(p.name for p in self.state.iterdir()), ["server.key"])
        self.assertNotEqual(load_or_create(Path(self.mktemp())), key)

    def test_existingKeyKeptWhenRaceLost(self) -> None:
        """
        If another process created the key between the check and the link, its key is used.
        """
        self.state.mkdir(parents=True)
        theirs = os.urandom(KEY_SIZE)
        original_link = os.link

        def racing_link(source: str, target: str) -> None:
            Path(target).write_bytes(theirs)
            os.chmod(target, 0o600)
            original_link(source, target)

        self.patch(os, "link", racing_link)
        self.assertEqual(load_or_create(self.state), theirs)
        self.assertEqual(sorted(p.name for p in self.state.iterdir()), ["server.key"])

    def test_badKeyFilesRefused(self) -> None:
        """
        If the key file has the wrong size, is readable by others or is not a regular file,
        ServerKeyError says so instead of using it.
        """
        self.state.mkdir(parents=True)
        path = self.state / "server.key"
        path.write_bytes(b"short")
        path.chmod(0o600)
        self.assertIn("5 bytes", str(self.assertRaises(ServerKeyError, load_or_create, self.state)))
        path.write_bytes(os.urandom(KEY_SIZE))
        path.chmod(0o644)
        self.assertIn("chmod 600", str(self.assertRaises(ServerKeyError, load_or_create, self.state)))
        path.unlink()
        path.mkdir()
        self.assertRaises(ServerKeyError, load_or_create, self.state)

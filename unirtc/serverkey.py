# -*- test-case-name: tests.unit.test_serverkey -*-
"""The server's own secret key: 32 random bytes in ``<state_dir>/server.key``.

Stateless SIP digest nonces are HMACs under this key, so it must outlive a restart (or every
phone's nonce would turn stale at once) and be shared by nothing else.  It is created on first
use, atomically and readable by the server's user only, so two processes starting together
(the server and ``unirtc-ctl``) end up with the same key.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

KEY_FILE = "server.key"
KEY_SIZE = 32


class ServerKeyError(Exception):
    """The key file exists but cannot be used (wrong size, readable by others, not a file)."""


def _check(path: Path) -> bytes:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ServerKeyError(f"{path} is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerKeyError(f"{path} is accessible to other users; run: chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != KEY_SIZE:
        raise ServerKeyError(f"{path} holds {len(key)} bytes, expected {KEY_SIZE}; "
                             f"delete it to create a new key (current SIP nonces turn stale)")
    return key


def load_or_create(state_dir: Path) -> bytes:
    """The key in ``state_dir/server.key``, creating the folder and the key if missing.

    The new key is written to a private temporary file and hard-linked into place, which
    fails if another process got there first; the loser then reads the winner's key.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    if path.exists() or path.is_symlink():
        return _check(path)
    temporary = state_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_SIZE))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _check(path)

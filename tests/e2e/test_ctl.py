"""``unirtc-ctl`` as a subprocess: every command, and every error path, changes nothing when it fails."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time

import pytest

from tests.e2e.harness import BIN
from unirtc.directory import store
from unirtc.directory.engine import make_engine
from unirtc.directory.secrets import verify_scram_password


def credentials(harness, local: str):
    engine = make_engine(f"sqlite:///{harness.directory / 'var' / 'unirtc.sqlite'}")
    try:
        with store.transaction(engine) as session:
            return store.get_credentials(session, local, "falcot.com")
    finally:
        engine.dispose()


def run_on_tty(argv: list[str], answers: list[str], cwd, env) -> tuple[int, str]:
    """Run a command on a new pseudo-terminal, answering each prompt, as an admin would type."""
    master, slave = os.openpty()

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                               preexec_fn=controlling_tty)
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip().endswith(b":"):
                os.write(master, pending.pop(0).encode() + b"\n")
                output += b"<answered>"
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=30), output.decode(errors="replace")


def test_adduserByPromptWithoutEcho(harness) -> None:
    """
    If an admin runs adduser on a terminal, the password is asked twice without echo and the
    account is created with secrets that verify it.
    """
    status, output = run_on_tty([str(BIN / "unirtc-ctl"), "-c", str(harness.ini), "adduser", "joe@falcot.com"],
                                ["tty-Secret-1", "tty-Secret-1"], harness.directory, harness.env)
    assert status == 0, output
    assert output.count("password:") == 2
    assert "tty-Secret-1" not in output
    assert "Created account joe@falcot.com" in output
    assert verify_scram_password(credentials(harness, "joe").scram["sha256"], "tty-Secret-1")


def test_adduserMismatchedPromptsChangeNothing(harness) -> None:
    """
    If the two typed passwords differ, adduser fails with one line and creates nothing.
    """
    status, output = run_on_tty([str(BIN / "unirtc-ctl"), "-c", str(harness.ini), "adduser", "joe@falcot.com"],
                                ["one", "two"], harness.directory, harness.env)
    assert status == 1
    assert "passwords do not match" in output
    assert credentials(harness, "joe") is None


@pytest.mark.parametrize("jid, message", [
    ("@falcot.com", "localpart is empty"),
    ("jo e@falcot.com", "invalid JID"),
    ("a" * 1024 + "@falcot.com", "longer than 1023 bytes"),
    ("joe<@falcot.com", "forbidden character"),
    ("falcot.com", "not an account address"),
    ("joe@falcot.com/phone", "not an account address"),
    ("joe@example.org", "does not serve accounts on example.org"),
    ("joe@", "invalid JID"),
])
def test_adduserRejectsBadAddresses(harness, jid: str, message: str) -> None:
    """
    If the address is not a valid RFC 7622 account JID on this server's domain, adduser exits 1
    with one line on stderr naming the problem.
    """
    result = harness.ctl("adduser", jid, "--password-stdin", input="pw\n")
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert harness.ctl("users").stdout == ""


def test_adduserExistingAndEmptyPassword(harness) -> None:
    """
    If the account exists, or the password is empty, adduser exits 1 and the account keeps its password.
    """
    harness.adduser("joe@falcot.com", "first")
    again = harness.ctl("adduser", "Joe@Falcot.COM", "--password-stdin", input="second\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    empty = harness.ctl("adduser", "roland@falcot.com", "--password-stdin", input="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr
    assert verify_scram_password(credentials(harness, "joe").scram["sha1"], "first")
    assert credentials(harness, "roland") is None


def test_passwdDeluserUsersDisable(harness) -> None:
    """
    If passwd, disable, users and deluser run, each does what it says: the old password stops
    verifying, the listing shows accounts and the disabled flag, deletion needs confirmation.
    """
    harness.adduser("joe@falcot.com", "old")
    harness.adduser("roland@falcot.com", "pw")
    assert harness.ctl("passwd", "joe@falcot.com", "--password-stdin", input="new\n").returncode == 0
    secret = credentials(harness, "joe").scram["sha256"]
    assert verify_scram_password(secret, "new") and not verify_scram_password(secret, "old")
    assert harness.ctl("passwd", "nobody@falcot.com", "--password-stdin", input="x\n").returncode == 1
    assert harness.ctl("disable", "roland@falcot.com").returncode == 0
    assert harness.ctl("users").stdout == "joe@falcot.com\nroland@falcot.com  (disabled)\n"
    assert harness.ctl("users", "other.org").stdout == ""
    refused = harness.ctl("deluser", "roland@falcot.com", input="n\n")
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert credentials(harness, "roland") is not None
    assert harness.ctl("deluser", "roland@falcot.com", input="y\n").returncode == 0
    assert harness.ctl("deluser", "joe@falcot.com", "--yes").returncode == 0
    assert harness.ctl("users").stdout == ""
    missing = harness.ctl("deluser", "joe@falcot.com", "--yes")
    assert missing.returncode == 1 and "no account joe@falcot.com" in missing.stderr


def test_passwordNeverInDatabaseFiles(harness) -> None:
    """
    If accounts are created and their passwords changed, no database file (WAL included) holds
    any of the passwords.
    """
    harness.adduser("joe@falcot.com", "Unique-Pass-123")
    harness.ctl("passwd", "joe@falcot.com", "--password-stdin", input="Other-Pass-456\n")
    files = list((harness.directory / "var").glob("unirtc.sqlite*"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert b"Unique-Pass-123" not in data and b"Other-Pass-456" not in data


def test_unreachableDatabase(harness) -> None:
    """
    If the database cannot be reached, commands exit 1 with one line saying so.
    """
    harness.sections["server"]["database"] = "postgresql+psycopg://unirtc@127.0.0.1:1/unirtc"
    harness.write_config()
    result = harness.ctl("adduser", "joe@falcot.com", "--password-stdin", input="pw\n")
    assert result.returncode == 1
    assert result.stderr.startswith("unirtc-ctl: cannot use the database:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_configResolution(harness) -> None:
    """
    If -c is absent, $UNIRTC_CONFIG is used; if that is absent too, /etc/unirtc/unirtc.ini is
    named in the error when it does not exist.
    """
    env = dict(harness.env, UNIRTC_CONFIG=str(harness.ini))
    result = subprocess.run([str(BIN / "unirtc-ctl"), "users"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if not os.path.exists("/etc/unirtc/unirtc.ini"):
        result = harness.ctl("users", config=False)
        assert result.returncode == 1
        assert "/etc/unirtc/unirtc.ini: configuration file not found" in result.stderr


def test_checkAndDbUpgradeAndVersion(harness) -> None:
    """
    If check runs before the first start it reports an empty database and the certificate to come,
    prints the SRV records; after db upgrade and a certificate mismatch it fails.
    """
    check = harness.ctl("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Database: empty" in check.stdout
    assert f"_xmpp-client._tcp.falcot.com. 3600 IN SRV 0 5 {harness.ports['c2s']} falcot.com." in check.stdout
    assert harness.ctl("db", "upgrade").returncode == 0
    harness.start()
    harness.stop()
    check = harness.ctl("check")
    assert check.returncode == 0 and "Database schema: up to date" in check.stdout
    assert "Certificate" in check.stdout and ": ok for falcot.com" in check.stdout
    harness.sections["server"]["domain"] = "falcot.org"
    harness.write_config()
    check = harness.ctl("check")
    assert check.returncode == 1
    assert "falcot.org" in check.stdout
    version = harness.ctl("version")
    assert version.returncode == 0 and version.stdout.startswith("unirtc ")

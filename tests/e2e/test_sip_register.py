"""SIP registration end to end: SIPp and sipsak register with digest against the real server.

The clients are Debian's ``sip-tester`` (SIPp) and ``sipsak``; both answer only MD5 challenges,
which is why the server offers MD5 first.  Bindings are checked in the server's database (as
``unirtc-ctl sip-bindings`` would list them) and through a REGISTER query after a restart.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from unirtc.config import load_settings
from unirtc.directory.bindings_store import BindingRecord, list_bindings
from unirtc.directory.engine import make_engine
from unirtc.directory.store import transaction

SCENARIOS = Path(__file__).parent / "sipp"
PASSWORD = "Tr0ub4dor&3"

def stored_bindings(harness) -> list[BindingRecord]:
    """The server's stored bindings, read from its database as unirtc-ctl would."""
    engine = make_engine(load_settings(harness.ini).server.database)
    try:
        with transaction(engine) as session:
            return list_bindings(session, time.time())
    finally:
        engine.dispose()


def sipp(harness, workdir: Path, scenario: str, user: str = "joe", password: str = PASSWORD,
         transport: str = "u1", domain: str = "falcot.com") -> subprocess.CompletedProcess:
    """One SIPp call of ``scenario`` against the server's SIP port; its logs land in workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        "sipp", f"127.0.0.1:{harness.ports['sip']}", "-sf", str(SCENARIOS / scenario),
        "-s", user, "-key", "domain", domain, "-au", user, "-ap", password,
        "-auth_uri", domain,  # SIPp writes sip:<this>; its default is the server's address
        "-t", transport, "-i", "127.0.0.1", "-m", "1", "-nostdin",
        "-timeout", "20s", "-timeout_error", "-max_socket", "10",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        "-trace_msg", "-message_file", str(workdir / "messages.log"),
    ]
    return subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=60)


def messages(workdir: Path) -> str:
    path = workdir / "messages.log"
    return path.read_text(errors="replace") if path.exists() else ""


def start(harness, aliases: str = "sip.falcot.com") -> None:
    harness.sections["sip"]["domains"] = aliases
    harness.write_config()
    harness.adduser("joe@falcot.com", PASSWORD)
    harness.start(wait_for="sip")


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sippRegistersWithDigest(harness, tmp_path, transport) -> None:
    """
    If SIPp registers joe over UDP or TCP answering the 401 with MD5 digest, the 200 OK lists
    its contact and the binding is stored in the directory database.
    """
    start(harness)
    result = sipp(harness, tmp_path / "sipp", "register.xml", transport=transport)
    log = messages(tmp_path / "sipp")
    assert result.returncode == 0, log + result.stdout[-2000:]
    assert "WWW-Authenticate: Digest" in log and "SIP/2.0 200 OK" in log
    [binding] = stored_bindings(harness)
    assert binding.aor == ("joe", "falcot.com")
    assert binding.contact.startswith("sip:joe@127.0.0.1:")
    assert 3500 < binding.expires_at - time.time() <= 3600
    listed = harness.ctl("sip-bindings", "joe@falcot.com")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"joe@falcot.com {binding.contact} q=")
    assert "via 127.0.0.1:" in listed.stdout
    assert harness.ctl("sip-bindings", "roland@falcot.com").stdout == ""


def test_sippAliasDomain(harness, tmp_path) -> None:
    """
    If SIPp registers sip:joe@sip.falcot.com (a [sip] domains alias), the binding belongs to
    the account joe@falcot.com.
    """
    start(harness)
    result = sipp(harness, tmp_path / "sipp", "register.xml", domain="sip.falcot.com")
    assert result.returncode == 0, messages(tmp_path / "sipp")
    assert [b.aor for b in stored_bindings(harness)] == [("joe", "falcot.com")]


def test_sippWrongPasswordRefused(harness, tmp_path) -> None:
    """
    If SIPp answers the challenge with a wrong password, the server refuses with 401 (or 403),
    the registration scenario fails and nothing is bound.
    """
    start(harness)
    refused = sipp(harness, tmp_path / "refused", "register_rejected.xml", password="wrong")
    assert refused.returncode == 0, messages(tmp_path / "refused")
    attempt = sipp(harness, tmp_path / "attempt", "register.xml", password="wrong")
    assert attempt.returncode != 0
    assert "SIP/2.0 200 OK" not in messages(tmp_path / "attempt")
    assert stored_bindings(harness) == []


def test_registrationSurvivesRestart(harness, tmp_path) -> None:
    """
    If joe registers and the server is restarted, a REGISTER query after the restart still
    lists his binding.
    """
    start(harness)
    assert sipp(harness, tmp_path / "register", "register.xml").returncode == 0
    [before] = stored_bindings(harness)
    assert harness.stop() == 0
    harness.start(wait_for="sip")
    query = sipp(harness, tmp_path / "query", "register_query.xml")
    log = messages(tmp_path / "query")
    assert query.returncode == 0, log
    assert f"<{before.contact}>;expires=" in log


def test_sipsakRegisters(harness) -> None:
    """
    If sipsak registers sip:joe@127.0.0.1 (the address listed as a [sip] domains alias) with
    the right password it gets 200 OK and a binding; with a wrong one its authorisation fails
    with 401.
    """
    start(harness, aliases="sip.falcot.com 127.0.0.1")
    target = f"sip:joe@127.0.0.1:{harness.ports['sip']}"
    base = ["sipsak", "-U", "-i", "-s", target, "-u", "joe", "-x", "300", "-vvv"]
    good = subprocess.run([*base, "-a", PASSWORD], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "SIP/2.0 200 OK" in good.stdout and "completed successful" in good.stdout
    assert [b.aor for b in stored_bindings(harness)] == [("joe", "falcot.com")]
    bad = subprocess.run([*base, "-a", "wrong"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    output = bad.stdout + bad.stderr
    assert "SIP/2.0 401 Unauthorized" in output and "authorization failed" in output

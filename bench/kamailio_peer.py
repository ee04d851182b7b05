"""Kamailio 5.6 (Debian) as the reference SIP registrar/proxy for the benchmarks, run from a temp dir.

The benchmarks compare unirtc with the configuration Debian ships: the stock
``/etc/kamailio/kamailio.cfg`` with ``WITH_AUTH`` (digest against the ``subscriber`` table)
and ``WITH_USRLOCDB`` (bindings written back to the database), on an SQLite file holding the
same users and passwords as the unirtc directory.  Only these edits are made to the stock
file, each checked to have applied: the three defines, ``loadmodule "db_sqlite.so"``, UDP and
TCP listeners on one free loopback port, ``alias`` for the SIP domain, ``auto_aliases=no``,
and the control sockets moved into the temp dir (so no ``/run/kamailio`` is needed).

Kamailio runs in the foreground (``-DD``, logging to stderr with ``-E``) in its own process
group, never as the system service, and :meth:`Kamailio.stop` ends that group.

Install (Debian bookworm): ``apt-get install -y kamailio kamailio-sqlite-modules``.  The
package enables a systemd unit; nothing here uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

STOCK_CFG = Path("/etc/kamailio/kamailio.cfg")
SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
SCHEMAS = ("standard-create.sql", "auth_db-create.sql", "usrloc-create.sql")


def installed() -> str | None:
    """Why Kamailio cannot run here, or None when it can."""
    for path in (STOCK_CFG, SCHEMA_DIR / "auth_db-create.sql"):
        if not path.exists():
            return f"{path} is missing (apt-get install -y kamailio kamailio-sqlite-modules)"
    if subprocess.run(["sh", "-c", "command -v kamailio"], capture_output=True).returncode:
        return "no kamailio binary (apt-get install -y kamailio kamailio-sqlite-modules)"
    return None


def version() -> str:
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
    match = re.search(r"version: kamailio (\S+)", out)
    return match.group(1) if match else "unknown"


def write_database(path: Path, users: dict[str, str], domain: str) -> None:
    """The subscriber/location tables from Debian's schema files, one row per user.

    The stock config verifies digest from the plaintext ``password`` column
    (``calculate_ha1 yes``), as ``kamctl add USER PASSWORD`` stores it; ha1/ha1b are filled
    too.  WAL mode lets auth reads proceed while usrloc's timer writes bindings back.
    """
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        for name in SCHEMAS:
            connection.executescript((SCHEMA_DIR / name).read_text())
        rows = []
        for user, password in users.items():
            ha1 = hashlib.md5(f"{user}:{domain}:{password}".encode()).hexdigest()
            ha1b = hashlib.md5(f"{user}@{domain}:{domain}:{password}".encode()).hexdigest()
            rows.append((user, domain, password, ha1, ha1b))
        connection.executemany(
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)", rows)
        connection.commit()
    finally:
        connection.close()


def _edit(text: str, old: str, new: str) -> str:
    """Replace the one whole line ``old``; the stock file must contain it exactly once."""
    pattern = re.compile(rf"^{re.escape(old)}$", re.MULTILINE)
    text, count = pattern.subn(lambda _: new, text)
    if count != 1:
        raise RuntimeError(f"{STOCK_CFG}: expected one line {old!r}, found {count}")
    return text


def make_config(stock: str, rundir: Path, port: int, domain: str) -> str:
    """The stock config with WITH_AUTH + WITH_USRLOCDB on SQLite, listening on 127.0.0.1:port."""
    first, rest = stock.split("\n", 1)
    text = "\n".join([first, "#!define WITH_AUTH", "#!define WITH_USRLOCDB",
                      f'#!define DBURL "sqlite:///{rundir}/kamailio.sqlite"', rest])
    text = _edit(text, "# listen=udp:10.0.0.10:5060",
                 f"listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}")
    text = _edit(text, '# alias="sip.mydomain.com"', f'alias="{domain}"')
    text = _edit(text, "# auto_aliases=no", "auto_aliases=no")
    text = _edit(text, 'loadmodule "jsonrpcs.so"', 'loadmodule "db_sqlite.so"\nloadmodule "jsonrpcs.so"')
    for module, key, name in (("jsonrpcs", "fifo_name", "kamailio_rpc.fifo"),
                              ("jsonrpcs", "dgram_socket", "kamailio_rpc.sock")):
        text = _edit(text, f'# modparam("{module}", "{key}", "/run/kamailio/{name}")',
                     f'modparam("{module}", "{key}", "{rundir}/{name}")')
    text = _edit(text, '# modparam("ctl", "binrpc", "unix:/run/kamailio/kamailio_ctl")',
                 f'modparam("ctl", "binrpc", "unix:{rundir}/kamailio_ctl")')
    return text


class Kamailio:
    """One Kamailio instance in ``rundir`` serving ``users`` (name -> password) of ``domain``."""

    def __init__(self, rundir: Path, port: int, users: dict[str, str], domain: str) -> None:
        self.rundir = Path(rundir)
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.cfg = self.rundir / "kamailio.cfg"
        self.log_path = self.rundir / "kamailio.log"
        self.process: subprocess.Popen[bytes] | None = None
        write_database(self.rundir / "kamailio.sqlite", users, domain)
        self.cfg.write_text(make_config(STOCK_CFG.read_text(), self.rundir, port, domain))

    def start(self, timeout: float = 30.0) -> None:
        check = subprocess.run(["kamailio", "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c rejected {self.cfg}:\n{check.stderr[-3000:]}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["kamailio", "-DD", "-E", "-f", str(self.cfg), "-P", str(self.rundir / "kamailio.pid"),
                 "-w", str(self.rundir)],
                cwd=self.rundir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if self._answers_options():
                return
            time.sleep(0.1)
        raise TimeoutError(f"kamailio did not answer on 127.0.0.1:{self.port}:\n{self.log()[-3000:]}")

    def _answers_options(self) -> bool:
        """The stock config answers OPTIONS to itself with 200 Keepalive once its workers run."""
        from bench.sip_load import options_rtt

        return options_rtt(self.port, timeout=0.5) is not None

    def stop(self) -> None:
        """SIGTERM to Kamailio's own process group (main process and its workers), then SIGKILL."""
        if self.process is None or self.process.returncode is not None:
            return
        group = self.process.pid  # start_new_session: Kamailio leads its own group
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        try:
            os.killpg(group, signal.SIGKILL)  # workers that outlived the main process
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

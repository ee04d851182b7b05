"""Prosody 0.12 (Debian) as the reference XMPP server for the benchmarks, run from a temp dir.

The configuration is the one used for the Prosody baseline on this kind of machine
(``shared/peers/prosody/prosody.cfg.lua.template``): loopback only, c2s with STARTTLS
required, the same module list, no s2s, no mod_limits, ``internal_hashed`` accounts (SCRAM with
Prosody's default 10,000 iterations), log level warn, ``tcp_backlog = 1024``. Only the paths
and the c2s port change, and ``password_hash = "SHA-256"`` is added when the benchmark uses
SCRAM-SHA-256 (Prosody 0.12 offers one SCRAM hash per host: SHA-1 by default).

Accounts are written as ``internal_hashed`` store files directly (what ``prosodyctl register``
writes, without its ~35 ms per account). Prosody refuses to run as root and, unlike
``prosodyctl start``, does not switch users itself, so when this runs as root the files are
chowned to ``prosody`` and the server is started as that user; it runs in the foreground
(``-F``) as a direct child, so its pid is the server's own (for /proc/PID/status).

Install (Debian bookworm): ``apt-get install -y prosody``; nothing here uses its system service.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

CONFIG = """\
-- Prosody 0.12 benchmark configuration (LOOPBACK ONLY), from shared/peers/prosody/.
local base = "{base}"
pidfile   = base .. "/run/prosody.pid"
data_path = base .. "/data"

interfaces       = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
component_ports = {{ }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{ }}; https_ports = {{ }}
http_interfaces = {{ "127.0.0.1" }}; https_interfaces = {{ "127.0.0.1" }}
admin_socket = base .. "/run/prosody.sock"
network_settings = {{ tcp_backlog = 1024; nagle = false; }}

modules_enabled = {{
	"roster"; "saslauth"; "tls"; "disco"; "carbons"; "pep"; "private";
	"blocklist"; "vcard4"; "vcard_legacy"; "bookmarks"; "smacks";
	"csi_simple"; "ping"; "time"; "uptime"; "version";
	"admin_shell"; "posix";
}}
modules_disabled = {{ "s2s"; "dialback"; "s2s_auth_certs"; }}
allow_registration = false

c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
{password_hash}
storage = "internal"

log = {{ warn = base .. "/log/prosody.log"; }}

certificates = base .. "/certs"
ssl = {{
	certificate = base .. "/certs/{domain}.crt";
	key = base .. "/certs/{domain}.key";
}}

VirtualHost "{domain}"

Component "conference.{domain}" "muc"
	modules_enabled = {{ }}
	restrict_room_creation = false
	max_history_messages = 20
	muc_room_default_history_length = 0
	muc_max_nick_length = 64
"""

ITERATIONS = 10000  # Prosody 0.12's default_iteration_count
HASHES = {"sha1": "SHA-1", "sha256": "SHA-256"}


def installed() -> str | None:
    """Why Prosody cannot run here, or None when it can."""
    if shutil.which("prosody") is None:
        return "no prosody binary (apt-get install -y prosody)"
    return None


def version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "prosody"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _scram(hash_name: str, password: str, salt: str) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey), RFC 5802 §3, for Prosody's salt string."""
    import hmac

    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt.encode(), ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return client_key, hashlib.new(hash_name, client_key).digest(), server_key


class Prosody:
    """One Prosody instance in ``folder`` with c2s on 127.0.0.1:``port``."""

    def __init__(self, folder: Path, port: int, domain: str, certificate: Path, key: Path,
                 hash_name: str = "sha1") -> None:
        self.base = Path(folder)
        self.port = port
        self.domain = domain
        self.hash_name = hash_name
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("certs", "data", "run", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for name in (domain, f"conference.{domain}"):
            shutil.copy(certificate, self.base / "certs" / f"{name}.crt")
            shutil.copy(key, self.base / "certs" / f"{name}.key")
        option = "" if hash_name == "sha1" else f'password_hash = "{HASHES[hash_name]}"'
        self.cfg = self.base / "prosody.cfg.lua"
        self.cfg.write_text(CONFIG.format(base=self.base, port=port, domain=domain, password_hash=option))
        self.log_path = self.base / "log" / "stdout.log"

    def add_users(self, users: dict[str, str]) -> dict[tuple[bytes, int], tuple[bytes, bytes, bytes]]:
        """Write ``internal_hashed`` account files; return the SCRAM client keys by (salt, i)."""
        accounts = self.base / "data" / self.domain.replace(".", "%2e") / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        keys = {}
        for user, password in users.items():
            salt = str(uuid.uuid4())
            client_key, stored_key, server_key = _scram(self.hash_name, password, salt)
            keys[(salt.encode(), ITERATIONS)] = (client_key, stored_key, server_key)
            (accounts / f"{user}.dat").write_text(
                "return {\n"
                f'\t["iteration_count"] = {ITERATIONS};\n'
                f'\t["salt"] = "{salt}";\n'
                f'\t["server_key"] = "{server_key.hex()}";\n'
                f'\t["stored_key"] = "{stored_key.hex()}";\n'
                "};\n")
        return keys

    def start(self, timeout: float = 30.0) -> None:
        from tests.e2e.harness import wait_for_port

        as_user = {}
        if os.geteuid() == 0:  # Prosody will not run as root: hand it its folder and drop to 'prosody'
            for folder in (self.base, *self.base.parents):  # a temp dir is 0700: let prosody through
                mode = folder.stat().st_mode
                if mode & 0o001 == 0:
                    folder.chmod(mode | 0o711)
            subprocess.run(["chown", "-R", "prosody:prosody", str(self.base)], check=True)
            as_user = {"user": "prosody", "group": "prosody", "extra_groups": []}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["prosody", "-F", "--config", str(self.cfg)], cwd=self.base, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, **as_user)
        try:
            wait_for_port(self.port, timeout=timeout, process=self.process)
        except BaseException as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- prosody log ---\n{self.log()[-3000:]}") from None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Prosody shuts down cleanly on it), then SIGKILL."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        texts = [p.read_text(errors="replace") for p in (self.log_path, self.base / "log" / "prosody.log")
                 if p.exists()]
        return "\n".join(texts)


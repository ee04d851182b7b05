"""The end-to-end harness every e2e test uses: a real ``twistd -n unirtc`` on loopback.

It writes a temporary config with free ports for every listener, creates users with the real
``unirtc-ctl``, starts the server as a subprocess, waits until it listens, and stops it with
SIGTERM.  Protocol clients nobody here wrote (slixmpp, SIPp, sipsak, turnutils) then talk to
``harness.ports[...]``.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (SIP listens on both with one number)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class ServerHarness:
    """One server instance in ``directory``; ``config`` overrides or adds INI values."""

    def __init__(self, directory: Path, domain: str = "falcot.com",
                 config: dict[str, dict[str, str]] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.ini = self.directory / "unirtc.ini"
        self.log_path = self.directory / "twistd.log"
        self.process: subprocess.Popen | None = None
        self.ports = {name: free_port() for name in (
            "c2s", "c2s_direct_tls", "s2s", "components", "sip", "sip_tls", "stun", "web")}
        loopback = ":interface=127.0.0.1"
        self.sections: dict[str, dict[str, str]] = {
            "server": {"domain": domain, "admins": f"admin@{domain}", "log_level": "debug"},
            "xmpp": {
                "c2s": f"tcp:{self.ports['c2s']}{loopback}",
                "c2s_direct_tls": f"tcp:{self.ports['c2s_direct_tls']}{loopback}",
                "s2s": f"tcp:{self.ports['s2s']}{loopback}",
            },
            "components": {"listen": f"tcp:{self.ports['components']}{loopback}"},
            "sip": {"listen": f"udp:{self.ports['sip']}{loopback} tcp:{self.ports['sip']}{loopback} "
                              f"tls:{self.ports['sip_tls']}{loopback}"},
            "turn": {"stun": f"udp:{self.ports['stun']}{loopback}"},
            "web": {"listen": f"tcp:{self.ports['web']}{loopback}"},
        }
        for section, values in (config or {}).items():
            self.sections.setdefault(section, {}).update(values)
        self.write_config()

    def write_config(self) -> None:
        lines = []
        for section, values in self.sections.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {value}" for key, value in values.items()]
            lines.append("")
        self.ini.write_text("\n".join(lines))

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("UNIRTC_CONFIG", None)
        return env

    def ctl(self, *args: str, input: str | None = None, config: bool = True) -> subprocess.CompletedProcess:
        """Run the real ``unirtc-ctl`` console script against this server's config."""
        argv = [str(BIN / "unirtc-ctl"), *(["-c", str(self.ini)] if config else []), *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env,
                              cwd=self.directory, timeout=120)

    def adduser(self, jid: str, password: str) -> None:
        result = self.ctl("adduser", jid, "--password-stdin", input=password + "\n")
        if result.returncode != 0:
            raise RuntimeError(f"unirtc-ctl adduser {jid} failed: {result.stderr}")

    def start(self, wait_for: str = "web") -> None:
        """Start ``twistd -n unirtc -c unirtc.ini`` and wait until the ``wait_for`` port accepts."""
        self.process = subprocess.Popen(
            [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "unirtc", "-c", str(self.ini)],
            cwd=self.directory, env=self.env,
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.ports[wait_for], process=self.process)
        except Exception as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- server log ---\n{self.log()}") from None

    def run_to_exit(self, timeout: float = 60) -> int:
        """Start the server expecting it to refuse; return its exit status."""
        self.process = subprocess.Popen(
            [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "unirtc", "-c", str(self.ini)],
            cwd=self.directory, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
        )
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as systemd and ``kill`` send; returns the exit status."""
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

    def https(self, path: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request to the web listener, verified against the server's own certificate.

        Returns (status, headers with lower-case names, body).
        """
        context = ssl.create_default_context(cafile=str(self.directory / "var" / "certificate.pem"))
        context.check_hostname = False
        connection = http.client.HTTPSConnection("127.0.0.1", self.ports["web"], context=context, timeout=10)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

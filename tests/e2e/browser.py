"""Real browser pages for e2e tests: Debian's Chromium, driven by playwright-core from Node.

``browser_driver.mjs`` runs Chromium headless and answers JSON requests, one per line, on its
stdin/stdout; ``Browser`` and ``Page`` are the Python side. Nothing is installed here:
``make test-deps`` installs Chromium (apt) and node_modules/ (``npm ci``: playwright-core,
strophe.js); a missing piece fails the test naming that command.

Pages are usually served by the test itself (``Page.serve``: the browser's request for the URL
is answered from the test, so a page can have any origin, e.g. ``https://falcot.com:PORT``),
and reach the real server through ``host_map`` (Chromium's host resolver rules). The server's
self-signed certificate is trusted by its public key (``trust``), not by ignoring every
certificate error. Calls may come from several threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "node_modules"
DRIVER = Path(__file__).with_name("browser_driver.mjs")
# python.md's flags: without the background-networking ones Chromium keeps calling Google's hosts.
# Local Network Access checks are off because a page served by the test has no address, so
# Chromium counts it as public and would block its connections to the server on loopback.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--disable-features=LocalNetworkAccessChecks")
SETUP = "run `make test-deps` (Debian chromium and nodejs/npm, then npm ci into node_modules/)"


class BrowserError(Exception):
    """The driver could not start, or a browser operation failed (the page's error text)."""


def missing_prerequisites() -> str | None:
    """What is missing to run browser tests, or None."""
    if shutil.which("node") is None:
        return f"node is not installed; {SETUP}"
    if shutil.which("chromium") is None:
        return f"chromium is not installed; {SETUP}"
    for package in ("playwright-core", "strophe.js"):
        if not (NODE_MODULES / package / "package.json").is_file():
            return f"node_modules/{package} is missing; {SETUP}"
    return None


def spki_sha256(certificate_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes to trust that one key."""
    certificate = x509.load_pem_x509_certificate(certificate_pem.read_bytes())
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode("ascii")


class Browser:
    """One headless Chromium; ``with Browser(...) as browser: page = browser.new_page("joe")``.

    ``artifacts`` receives screenshots; ``trust`` is a PEM certificate whose key is trusted;
    ``host_map`` maps host names to addresses (``{"falcot.com": "127.0.0.1"}``); ``extra_args``
    are more Chromium flags (e.g. ``--use-fake-device-for-media-stream``).
    """

    def __init__(self, artifacts: Path, *, trust: Path | None = None, host_map: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), timeout: float = 30.0) -> None:
        self.artifacts = Path(artifacts)
        self.timeout = timeout
        args = list(CHROMIUM_FLAGS)
        if trust is not None:
            args.append(f"--ignore-certificate-errors-spki-list={spki_sha256(trust)}")
        if host_map:
            rules = ", ".join(f"MAP {host} {address}" for host, address in host_map.items())
            args.append(f"--host-resolver-rules={rules}")
        args += extra_args
        self.args = args
        self.events: list[dict[str, Any]] = []  # console, pageerror and websocket events, all pages
        self._process: subprocess.Popen[str] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._ready: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: list[str] = []

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        problem = missing_prerequisites()
        if problem is not None:
            raise BrowserError(problem)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        options = {"executablePath": shutil.which("chromium"), "args": self.args}
        self._process = subprocess.Popen(
            ["node", str(DRIVER), json.dumps(options)], cwd=REPO, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            ready = self._ready.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise BrowserError(f"Chromium did not start in {self.timeout} s: {self.stderr()}") from None
        if ready.get("event") != "ready":
            self.close()
            raise BrowserError(f"the browser driver failed to start: {self.stderr()}")
        self.version = ready.get("text", "")

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.events.append({"event": "stdout", "text": line.rstrip()})
                continue
            if "id" in message:
                waiting = self._waiting.get(message["id"])
                if waiting is not None:
                    waiting.put(message)
            elif message.get("event") == "ready":
                self._ready.put(message)
            else:
                self.events.append(message)
        self._ready.put({"event": "exited"})
        for waiting in list(self._waiting.values()):
            waiting.put({"error": f"the browser driver exited: {self.stderr()}"})

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line.rstrip())

    def stderr(self) -> str:
        return "\n".join(self._stderr[-30:])

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """Run one driver operation and return its result; BrowserError with the page's text."""
        if self._process is None or self._process.poll() is not None:
            raise BrowserError(f"the browser is not running: {self.stderr()}")
        request_id = next(self._ids)
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        self._waiting[request_id] = answer
        try:
            with self._lock:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps({"id": request_id, "op": op, **args}) + "\n")
                self._process.stdin.flush()
            try:
                message = answer.get(timeout=(timeout or self.timeout) + 5)
            except queue.Empty:
                raise BrowserError(f"{op} got no answer in time") from None
        finally:
            self._waiting.pop(request_id, None)
        if "error" in message:
            raise BrowserError(f"{op}: {message['error']}")
        return message.get("result")

    def new_page(self, name: str) -> Page:
        self.call("newPage", page=name)
        return Page(self, name)

    def log(self, page: str | None = None) -> list[str]:
        """The console, error and WebSocket events seen so far, of one page or all."""
        return [f"[{e.get('page', '-')}] {e.get('event')}: {e.get('text')}" for e in self.events
                if page is None or e.get("page") == page]

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                process.stdin.close()
            process.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


class Page:
    """One tab, in a browser context of its own (its own cookies and storage)."""

    def __init__(self, browser: Browser, name: str) -> None:
        self.browser = browser
        self.name = name

    def serve(self, url: str, body: str, content_type: str = "text/html; charset=utf-8") -> None:
        """Answer the page's requests for ``url`` (a glob) with ``body``, from the test."""
        self.browser.call("route", page=self.name, url=url, body=body, contentType=content_type)

    def goto(self, url: str) -> int | None:
        return self.browser.call("goto", page=self.name, url=url)

    def add_script(self, path: Path) -> None:
        """Load a script file (e.g. from node_modules/) into the page."""
        self.browser.call("addScript", page=self.name, path=str(path))

    def evaluate(self, source: str, arg: Any = None, timeout: float | None = None) -> Any:
        """Call the JavaScript function ``source`` (text) with ``arg`` in the page; a returned
        promise is awaited; the JSON-able result comes back."""
        return self.browser.call("evaluate", timeout, page=self.name, source=source, arg=arg)

    def wait_for(self, source: str, arg: Any = None, timeout: float = 10.0) -> Any:
        """Poll the function ``source`` until it returns something truthy, and return that."""
        return self.browser.call("waitFor", timeout, page=self.name, source=source, arg=arg,
                                 timeoutMs=int(timeout * 1000))

    def text(self, selector: str = "body") -> str:
        """The visible text of the element, as a person would read it."""
        return self.browser.call("text", page=self.name, selector=selector)

    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG into the artifacts folder and return its path."""
        path = self.browser.artifacts / f"{self.name}-{name}.png"
        self.browser.call("screenshot", page=self.name, path=str(path))
        return path

    def close(self) -> None:
        self.browser.call("closePage", page=self.name)

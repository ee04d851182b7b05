"""The web phone end to end: /phone in headless Chromium (JsSIP, fake microphone) against the real
server under twistd, media through Debian's coturn, and SIPp desk phones on UDP.

- joe and roland log in on two pages, joe calls roland, roland answers, and both pages show the
  call with an RTCPeerConnection connected through the coturn relay (``?ice=relay``: the page
  sets ``iceTransportPolicy: 'relay'``); roland hangs up and both pages show the call ended;
- a browser calls a SIPp phone registered over UDP (WSS <-> UDP through the proxy, which
  Record-Routes twice), and a SIPp phone calls a browser; the SIPp SDP is WebRTC-shaped but
  static, so no media flows on those calls: the SIP dialogs complete;
- a visitor without an account calls the click-to-call extension (sales, logged in on a page)
  with "Call sales@falcot.com", anonymously, media through the relay;
- a wrong password is refused on the page; a page of another site cannot open the SIP WebSocket;
- screenshots (logged in, in a call) are saved, and what a person would read is asserted.

The page's Content-Security-Policy forbids eval, which Playwright's waitForFunction needs, so the
tests poll with ``evaluate`` instead.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import NODE_MODULES, Browser, Page
from tests.e2e.harness import ServerHarness, free_port
from tests.e2e.test_sip_call import Sipp
from tests.e2e.test_turn import Coturn

SECRET = "e2e-phone-turn-secret"
DOMAIN = "falcot.com"
PASSWORDS = {"joe": "joe-Secret-1", "roland": "roland-Secret-2", "bob": "bob-Desk-3", "sales": "sales-Desk-4"}
MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
TIMEOUT = 20.0


LOGIN = """({user, password}) => {
  document.getElementById('user').value = user;
  document.getElementById('password').value = password;
  document.getElementById('login-button').click();
  return true;
}"""

STATE = """() => ({registration: window.phone.registration, call: window.phone.callState,
  ice: window.phone.ice, session: !!window.phone.session})"""

# The selected candidate pair of the call's peer connection, as getStats reports it.
SELECTED_PAIR = """async () => {
  const stats = await window.phone.pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
  if (!pair) return null;
  return {state: pair.state, local: stats.get(pair.localCandidateId).candidateType,
          remote: stats.get(pair.remoteCandidateId).candidateType,
          relayProtocol: stats.get(pair.localCandidateId).relayProtocol || null};
}"""

TRY_WEBSOCKET = """({url}) => new Promise((resolve) => {
  const ws = new WebSocket(url, 'sip');
  ws.onopen = () => { ws.close(); resolve({opened: true, protocol: ws.protocol}); };
  ws.onclose = (event) => resolve({opened: false, code: event.code});
})"""


@pytest.fixture(scope="module")
def coturn(tmp_path_factory):
    relay = Coturn(tmp_path_factory.mktemp("coturn"), SECRET)
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, coturn, request):
    harness = ServerHarness(tmp_path_factory.mktemp("phone") / "server", config={
        "turn": {"secret": SECRET, "ttl": "3600", "uris": f"turn:127.0.0.1:{coturn.port}?transport=udp"},
        "web": {"click_to_call": f"sip:sales@{DOMAIN}"},
    })
    for user, password in PASSWORDS.items():
        harness.adduser(f"{user}@{DOMAIN}", password)
    harness.start(wait_for="web")
    yield harness
    status = harness.stop()
    if request.session.testsfailed:
        print(f"--- server log ({harness.log_path}) ---\n{harness.log()[-20000:]}")
        print(f"--- coturn log ---\n{coturn.log()[-5000:]}")
    assert status == 0


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory, request):
    assert (NODE_MODULES / "jssip" / "package.json").is_file(), "run make test-deps (npm ci installs JsSIP)"
    artifacts = tmp_path_factory.mktemp("phone-screenshots")
    with Browser(artifacts, trust=server.directory / "var" / "certificate.pem", extra_args=MEDIA,
                 host_map={DOMAIN: "127.0.0.1", "evil.example": "127.0.0.1"}) as chromium:
        yield chromium
        if request.session.testsfailed:
            print("--- browser log ---\n" + "\n".join(chromium.log()[-200:]))
    print(f"screenshots in {artifacts}")


def origin(server: ServerHarness) -> str:
    return f"https://{DOMAIN}:{server.ports['web']}"


class Phone:
    """One page of /phone, driven the way a person would: fill in, click, read."""

    def __init__(self, browser: Browser, server: ServerHarness, name: str) -> None:
        self.page: Page = browser.new_page(name)
        assert self.page.goto(f"{origin(server)}/phone/?ice=relay") == 200

    def login(self, user: str, password: str | None = None) -> None:
        self.page.evaluate(LOGIN, {"user": user, "password": password or PASSWORDS[user]})

    def wait(self, source: str, arg: Any = None, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(source, arg)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {source}\nstate: {self.state()}\npage:\n{self.page.text()}")
            time.sleep(0.1)

    def registered(self) -> None:
        self.wait("() => window.phone.registration === 'registered'")

    def click(self, button: str) -> None:
        self.page.evaluate("(id) => { document.getElementById(id).click(); return true; }", button)

    def call(self, target: str) -> None:
        self.page.evaluate("(t) => { document.getElementById('target').value = t; return true; }", target)
        self.click("call-button")

    def call_state(self, prefix: str, timeout: float = TIMEOUT) -> str:
        return self.wait("(p) => window.phone.callState.startsWith(p) && window.phone.callState", prefix, timeout)

    def media_connected(self) -> dict[str, Any]:
        self.wait("() => window.phone.ice === 'connected' || window.phone.ice === 'completed'")
        return self.wait(SELECTED_PAIR)

    def state(self) -> dict[str, Any]:
        return self.page.evaluate(STATE)

    def text(self, selector: str = "body") -> str:
        return self.page.text(selector)

    def close(self) -> None:
        self.page.close()


def test_browsersCallEachOtherThroughTheRelay(server, browser, coturn) -> None:
    """
    If joe and roland log in on /phone and joe calls roland, roland's page rings with joe's
    address; once roland answers, both pages read "in call", with a peer connection whose ICE
    state is connected on a relay <-> relay pair (coturn allocated for both, with credentials the
    issuer signed); when roland hangs up, both pages read that the call ended.
    """
    joe, roland = Phone(browser, server, "joe"), Phone(browser, server, "roland")
    joe.login("joe")
    roland.login("roland")
    joe.registered()
    roland.registered()
    assert "Logged in as joe <sip:joe@falcot.com>" in joe.text()
    assert "Registration: registered" in joe.text()
    joe.page.screenshot("logged-in")

    joe.call("roland")
    roland.call_state("incoming call from sip:joe@falcot.com")
    assert "Incoming call from joe <sip:joe@falcot.com>" in roland.text("#incoming")
    roland.click("answer-button")
    joe.call_state("in call with sip:roland@falcot.com")
    roland.call_state("in call with sip:joe@falcot.com")
    for phone in (joe, roland):
        pair = phone.media_connected()
        assert pair["state"] == "succeeded" and (pair["local"], pair["remote"]) == ("relay", "relay"), pair
    text = joe.text()
    assert "Call: in call with sip:roland@falcot.com" in text
    assert re.search(r"Media: (connected|completed) \(through the TURN relay\)", text), text
    joe.page.screenshot("in-call")
    roland.page.screenshot("in-call")

    roland.click("hangup-button")
    assert roland.call_state("call ended") == "call ended (Terminated)"
    assert joe.call_state("call ended") == "call ended (Terminated)"
    assert "Call: call ended" in joe.text()
    assert joe.state()["session"] is False

    log = coturn.log()
    for user in ("joe", "roland"):
        assert re.search(rf"user <\d+:{user}@falcot\.com>: incoming packet ALLOCATE processed, success", log), user
        assert re.search(rf"user <\d+:{user}@falcot\.com>: incoming packet CREATE_PERMISSION processed, success",
                         log), user
    server_log = server.log()
    assert "Web phone login for joe@falcot.com from 127.0.0.1" in server_log
    for phone in (joe, roland):
        phone.close()


def sipp_messages(folder: Path, scenario: str) -> str:
    logs = sorted(folder.glob(f"{Path(scenario).stem}_*_messages.log"))
    return "\n".join(log.read_text(errors="replace") for log in logs)


def test_browserCallsSippPhoneOverUdp(server, browser, tmp_path) -> None:
    """
    If bob's desk phone (SIPp) is registered over UDP and joe calls "bob" from the page, the
    INVITE reaches the phone over UDP carrying two Record-Routes, the UDP side and the WSS side;
    the page reads "in call", and when joe hangs up the phone gets the BYE (SIPp exits 0 only if
    every message came as its scenario says).
    """
    sipp = Sipp(server, tmp_path)
    desk = free_port()
    sipp.run("register_contact.xml", free_port(), "-s", "bob", "-au", "bob", "-ap", PASSWORDS["bob"],
             "-auth_uri", DOMAIN, "-key", "contact_port", str(desk))
    argv = sipp.argv("uas_webrtc.xml", desk, "-trace_msg", client=False)
    answering = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # SIPp binds its port
        joe = Phone(browser, server, "joe-to-desk")
        joe.login("joe")
        joe.registered()
        joe.call("bob")
        joe.call_state("in call with sip:bob@falcot.com")
        assert "Call: in call with sip:bob@falcot.com" in joe.text()
        joe.click("hangup-button")
        joe.call_state("call ended")
    finally:
        sipp.finish(answering, "uas_webrtc.xml")
    trace = sipp_messages(tmp_path, "uas_webrtc.xml")
    invite = trace[trace.index("INVITE sip:"):]
    invite = invite[:invite.index("\n\n")]
    routes = re.findall(r"^Record-Route: (.+)$", invite, re.M)
    assert len(routes) == 2, invite
    assert routes[0].endswith(f"@127.0.0.1:{server.ports['sip']};transport=udp;lr>"), routes
    assert routes[1].endswith(f"@127.0.0.1:{server.ports['web']};transport=wss;lr>"), routes
    assert re.search(r"<sip:wss-[0-9a-f]{16}@", routes[0]), routes
    joe.close()


def test_sippPhoneCallsBrowser(server, browser, tmp_path) -> None:
    """
    If roland is logged in on the page and bob's desk phone (SIPp, authenticating with digest)
    calls sip:roland@falcot.com over UDP, roland's page rings; roland answers, the phone gets the
    200 and ACKs it through the proxy over roland's WebSocket, then hangs up, and the page reads
    that the call ended.
    """
    roland = Phone(browser, server, "roland-from-desk")
    roland.login("roland")
    roland.registered()
    sipp = Sipp(server, tmp_path)
    argv = sipp.argv("uac_webrtc.xml", free_port(), "-s", "roland", "-key", "caller", "bob", "-au", "bob",
                     "-ap", PASSWORDS["bob"], "-auth_uri", f"roland@{DOMAIN}")
    calling = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        roland.call_state("incoming call from sip:bob@falcot.com")
        assert "Incoming call from sip:bob@falcot.com" in roland.text("#incoming")
        roland.click("answer-button")
        roland.call_state("in call with sip:bob@falcot.com")
        assert roland.call_state("call ended") == "call ended (Terminated)"
    finally:
        sipp.finish(calling, "uac_webrtc.xml")
    roland.close()


def test_guestCallsTheClickToCallExtension(server, browser, coturn) -> None:
    """
    If [web] click_to_call is sip:sales@falcot.com, a visitor's page offers "Call
    sales@falcot.com" without an account; clicking it rings sales (logged in on another page) from
    the anonymous identity; once sales answers both pages are in the call with media through the
    relay under a guest TURN name; when the guest hangs up, sales reads that the call ended and
    the guest's page is back at the start.
    """
    sales = Phone(browser, server, "sales")
    sales.login("sales")
    sales.registered()
    guest = Phone(browser, server, "guest")
    guest.wait("() => !document.getElementById('guest').hidden")
    assert "No account? Call sales@falcot.com" in guest.text("#guest")
    guest.click("guest-button")
    sales.call_state("incoming call from sip:anonymous@anonymous.invalid")
    sales.click("answer-button")
    guest.call_state("in call with sip:sales@falcot.com")
    sales.call_state("in call with sip:anonymous@anonymous.invalid")
    pair = guest.media_connected()
    assert (pair["local"], pair["remote"]) == ("relay", "relay"), pair
    assert "Calling sales@falcot.com as a guest" in guest.text()
    assert guest.page.evaluate("() => document.getElementById('dial').hidden") is True
    guest.page.screenshot("in-call")
    guest.click("hangup-button")
    assert sales.call_state("call ended") == "call ended (Terminated)"
    guest.wait("() => document.getElementById('status').textContent.startsWith('Call ended')")
    assert guest.page.evaluate("() => !document.getElementById('login').hidden && "
                               "!document.getElementById('guest').hidden") is True
    assert re.search(r"user <\d+:guest-[0-9a-f]{12}>: incoming packet ALLOCATE processed, success", coturn.log())
    assert "Web phone: guest session from 127.0.0.1 to call sip:sales@falcot.com" in server.log()
    sales.close()
    guest.close()


def test_wrongPasswordIsRefused(server, browser) -> None:
    """
    If someone logs in on /phone with a wrong password, the page says the login was refused and
    stays on the login form, with no SIP connection opened.
    """
    phone = Phone(browser, server, "intruder")
    phone.login("joe", "not-joes-password")
    phone.wait("() => document.getElementById('status').textContent.startsWith('Login refused')")
    assert "Login refused: wrong account or password" in phone.text("#status")
    assert phone.page.evaluate("() => document.getElementById('login').hidden") is False
    assert phone.page.evaluate("() => window.phone.ua") is None
    phone.page.screenshot("refused")
    assert "Web phone: failed login for joe@falcot.com from 127.0.0.1" in server.log()
    phone.close()


def test_pageOfAnotherSiteCannotOpenTheSipWebSocket(server, browser) -> None:
    """
    If a page of another site (evil.example) opens a WebSocket to /sip-websocket, the server
    refuses the upgrade and it never opens; from /phone's own origin it opens with subprotocol sip.
    """
    url = f"wss://{DOMAIN}:{server.ports['web']}/sip-websocket"
    evil = browser.new_page("evil")
    evil.serve("https://evil.example/", "<!doctype html><title>evil</title><p>elsewhere</p>")
    evil.goto("https://evil.example/")
    assert evil.evaluate(TRY_WEBSOCKET, {"url": url}, TIMEOUT) == {"opened": False, "code": 1006}
    good = Phone(browser, server, "same-origin")
    assert good.page.evaluate(TRY_WEBSOCKET, {"url": url}, TIMEOUT) == {"opened": True, "protocol": "sip"}
    assert "WebSocket from Origin https://evil.example refused" in server.log()
    evil.close()
    good.close()


def test_screenshotsShowThePhone(browser) -> None:
    """
    If the phone tests ran, their screenshots (logged in, in a call, a guest's call, refused) are
    PNG files.
    """
    shots = {p.name for p in Path(browser.artifacts).glob("*.png")}
    assert {"joe-logged-in.png", "joe-in-call.png", "roland-in-call.png", "guest-in-call.png",
            "intruder-refused.png"} <= shots, shots
    for name in shots:
        assert (Path(browser.artifacts) / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""/phone over a real twisted.web Site on StringTransports: the page, JsSIP, and the login that
hands out the phone's configuration with fresh TURN credentials."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from unirtc.config import load_settings
from unirtc.plugin import PluginContext, PluginManager
from unirtc.turn.credentials import check_rest_credentials
from unirtc.web.phone import GUEST_IDENTITY, GUEST_TTL, PHONE_TTL, PhoneResource, phone_config, websocket_url
from unirtc.xmpp.jid import JID

NOW = 1_700_000_000
PASSWORD = "joe-Secret-1"
URIS = "stun:turn.falcot.com:3478 turn:turn.falcot.com:3478?transport=udp"


class FakeDirectory:
    def __init__(self) -> None:
        self.passwords = {("joe", "falcot.com"): PASSWORD}
        self.broken = False
        self.pending: list[Deferred] | None = None

    def verify_password(self, localpart: str, domain: str, password: str) -> Deferred:
        if self.broken:
            return fail(RuntimeError("database is gone"))
        if self.pending is not None:
            d: Deferred = Deferred()
            self.pending.append(d)
            return d
        return succeed(self.passwords.get((localpart, domain)) == password)


@implementer(ISSLTransport)
class TLSStringTransport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> dict:
        return json.loads(self.body)


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    data = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        data, body = data + body[:size], body[size + 2:]
    return data


class PhoneTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.directory = FakeDirectory()
        self.folder = Path(self.mktemp())
        self.folder.mkdir()
        self.use(self.load())

    def load(self, extra: str = "", turn: str = "secret = north\nttl = 86400\n") -> object:
        (self.folder / "u.ini").write_text(
            "[server]\ndomain = falcot.com\n[web]\nlisten = tcp:8443\n" + extra
            + f"[turn]\n{turn}uris = {URIS}\n")
        return load_settings(self.folder / "u.ini")

    def use(self, settings) -> None:
        self.settings = settings
        self.resource = PhoneResource(settings, self.directory, self.reactor)
        root = Resource()
        root.putChild(b"phone", self.resource)
        self.site = Site(root, reactor=self.reactor)

    def request(self, path: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
                peer: str = "192.0.2.5", secure: bool = True) -> StringTransport:
        address = IPv4Address("TCP", peer, 40000)
        transport = (TLSStringTransport if secure else StringTransport)(peerAddress=address)
        channel = self.site.buildProtocol(address)
        channel.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.1", "Host: falcot.com:8443", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        transport.channel = channel
        return transport

    def get(self, path: str, **kwargs) -> Response:
        return Response(self.request(path, **kwargs).value())

    def login(self, user: str = "joe", password: str = PASSWORD, content_type: str = "application/json",
              **kwargs) -> Response:
        body = json.dumps({"user": user, "password": password}).encode()
        return self.get("/phone/session", method="POST", body=body, headers={"Content-Type": content_type},
                        **kwargs)


class PageTests(PhoneTestCase):
    def test_pageAndItsFiles(self) -> None:
        """
        If a browser opens /phone, it is redirected to /phone/, the page, which loads jssip.js and
        phone.js from beside it; every file carries a CSP allowing only this origin's scripts.
        """
        redirect = self.get("/phone")
        self.assertEqual((redirect.status, redirect.headers["location"]), (302, "phone/"))
        page = self.get("/phone/")
        self.assertEqual((page.status, page.headers["content-type"]), (200, "text/html; charset=utf-8"))
        self.assertIn(b'<script src="jssip.js" defer></script>', page.body)
        self.assertIn(b'<form id="login"', page.body)
        self.assertIn("script-src 'self'", page.headers["content-security-policy"])
        self.assertEqual(page.headers["x-frame-options"], "DENY")
        script = self.get("/phone/phone.js")
        self.assertEqual(script.headers["content-type"], "text/javascript; charset=utf-8")
        self.assertIn(b"new JsSIP.UA(", script.body)
        self.assertEqual(self.get("/phone/phone.css").headers["content-type"], "text/css; charset=utf-8")
        self.assertEqual(self.get("/phone/nothing.js").status, 404)

    def test_configuredJsSipFileIsServedWithEtag(self) -> None:
        """
        If [web] jssip names a browser build, /phone/jssip.js serves it, gzipped when asked, with
        an ETag that a revalidation turns into 304.
        """
        (self.folder / "jssip.min.js").write_text("window.JsSIP = {version: 'test'};\n")
        self.use(self.load("jssip = jssip.min.js\n"))
        first = self.get("/phone/jssip.js")
        self.assertEqual((first.status, first.body), (200, b"window.JsSIP = {version: 'test'};\n"))
        again = self.get("/phone/jssip.js", headers={"If-None-Match": first.headers["etag"]})
        self.assertEqual((again.status, again.body), (304, b""))
        zipped = self.get("/phone/jssip.js", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(zipped.headers["content-encoding"], "gzip")
        self.assertEqual(gzip.decompress(dechunk(zipped.body)), first.body)

    def test_packageFolderIsBundled(self) -> None:
        """
        If [web] jssip names an npm package folder, /phone/jssip.js is its browser bundle.
        """
        package = self.folder / "node_modules" / "jssip"
        (package / "lib").mkdir(parents=True)
        (package / "package.json").write_text('{"main": "lib/JsSIP.js"}')
        (package / "lib" / "JsSIP.js").write_text("module.exports = { version: require('./v') };\n")
        (package / "lib" / "v.js").write_text("module.exports = '3.test';\n")
        self.use(self.load("jssip = node_modules/jssip\n"))
        script = self.get("/phone/jssip.js")
        self.assertEqual(script.status, 200)
        self.assertIn(b'window["JsSIP"] = load(0);', script.body)
        self.assertIn(b"module.exports = '3.test';", script.body)

    def test_missingJsSipIs503(self) -> None:
        """
        If JsSIP is not installed where configured, /phone/jssip.js answers 503 with a script that
        logs why, and the page can say so.
        """
        self.use(self.load("jssip = nowhere/jssip\n"))
        response = self.get("/phone/jssip.js")
        self.assertEqual(response.status, 503)
        self.assertIn(b"console.error", response.body)


class LoginTests(PhoneTestCase):
    def test_loginGivesTheConfiguration(self) -> None:
        """
        If joe logs in over HTTPS, he gets his SIP identity, the WSS URI on the host he loaded the
        page from, and ICE servers whose TURN credentials coturn would accept, valid for at most
        PHONE_TTL and to be refreshed before that; his password is not in the answer.
        """
        response = self.login()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["cache-control"], "no-store")
        config = response.json()
        self.assertEqual(config["account"], "joe@falcot.com")
        self.assertEqual(config["sip"], {"uri": "sip:joe@falcot.com", "authorization_user": "joe",
                                         "websocket": "wss://falcot.com:8443/sip-websocket",
                                         "domain": "falcot.com"})
        stun, turn = config["iceServers"]
        self.assertEqual(stun, {"urls": ["stun:turn.falcot.com:3478"]})
        self.assertEqual(turn["urls"], ["turn:turn.falcot.com:3478?transport=udp"])
        self.assertTrue(check_rest_credentials("north", turn["username"], turn["credential"], NOW))
        self.assertEqual(config["turn"], {"ttl": PHONE_TTL, "expires": NOW + PHONE_TTL,
                                          "refresh": PHONE_TTL * 4 // 5})
        self.assertNotIn(PASSWORD, response.body.decode())

    def test_wrongPasswordAndThrottling(self) -> None:
        """
        If the password is wrong, the answer is 401 JSON without a Basic challenge (no browser
        dialog); after repeated failures the account is throttled with 429 and Retry-After, even
        for the right password.
        """
        wrong = self.login(password="guess")
        self.assertEqual((wrong.status, wrong.json()), (401, {"error": "wrong account or password"}))
        self.assertNotIn("www-authenticate", wrong.headers)
        statuses = [self.login(password=f"guess{i}").status for i in range(5)]
        self.assertEqual(statuses, [401] * 5)
        throttled = self.login()
        self.assertEqual(throttled.status, 429)
        self.assertGreaterEqual(int(throttled.headers["retry-after"]), 1)
        self.assertEqual(self.login("nobody@example.org").status, 401)

    def test_badRequests(self) -> None:
        """
        If the login is not JSON, not application/json, too big, missing a field, not a POST, or
        sent in clear from another host, it is refused with 400, 415, 405 or 403.
        """
        self.assertEqual(self.login(content_type="application/x-www-form-urlencoded").status, 415)
        post = dict(method="POST", headers={"Content-Type": "application/json"})
        self.assertEqual(self.get("/phone/session", body=b"{not json", **post).status, 400)
        self.assertEqual(self.get("/phone/session", body=b'{"user": "joe"}', **post).status, 400)
        self.assertEqual(self.get("/phone/session", body=b'["joe", "pw"]', **post).status, 400)
        self.assertEqual(self.get("/phone/session", body=b"\xff\xfe", **post).status, 400)
        big = json.dumps({"user": "joe", "password": "x" * 5000}).encode()
        self.assertEqual(self.get("/phone/session", body=big, **post).status, 400)
        got = self.get("/phone/session")
        self.assertEqual((got.status, got.headers["allow"]), (405, "POST"))
        self.assertEqual(self.login(secure=False).status, 403)
        self.assertEqual(self.login(secure=False, peer="127.0.0.1").status, 200)

    def test_directoryFailureIs503(self) -> None:
        """
        If the directory cannot be read, the login gets 503.
        """
        self.directory.broken = True
        self.assertEqual(self.login().status, 503)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_clientGoneBeforeTheCheck(self) -> None:
        """
        If the browser goes away while its password is being checked, nothing is written later.
        """
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.directory.pending = []
        transport = self.request("/phone/session", method="POST", body=json.dumps(
            {"user": "joe", "password": PASSWORD}).encode(), headers={"Content-Type": "application/json"})
        transport.channel.connectionLost(Failure(ConnectionDone()))
        written = transport.value()
        self.directory.pending[0].callback(True)
        self.assertEqual(transport.value(), written)

    def test_withoutTurnSecretOnlyStun(self) -> None:
        """
        If no TURN secret is configured, the login still works, with the stun: servers only and no
        TURN credentials.
        """
        self.use(self.load(turn=""))
        config = self.login().json()
        self.assertEqual((config["iceServers"], config["turn"]), ([{"urls": ["stun:turn.falcot.com:3478"]}], None))


class GuestTests(PhoneTestCase):
    def guest(self, **kwargs) -> Response:
        return self.get("/phone/guest", method="POST", body=b"{}", headers={"Content-Type": "application/json"},
                        **kwargs)

    def test_clickToCallOffer(self) -> None:
        """
        If [web] click_to_call names sales, GET /phone/guest offers it; a guest POST gets the
        anonymous identity (RFC 3323), the target, the WSS URI and TURN credentials valid an hour
        under a guest name, never an account's.
        """
        self.use(self.load("click_to_call = sip:sales@falcot.com\n"))
        self.assertEqual(self.get("/phone/guest").json(), {"enabled": True, "target": "sip:sales@falcot.com"})
        response = self.guest()
        self.assertEqual(response.status, 200)
        config = response.json()
        self.assertEqual((config["guest"], config["account"], config["target"]), (True, None, "sip:sales@falcot.com"))
        self.assertEqual(config["sip"]["uri"], GUEST_IDENTITY)
        self.assertEqual(config["sip"]["websocket"], "wss://falcot.com:8443/sip-websocket")
        turn = config["iceServers"][-1]
        self.assertRegex(turn["username"], rf"^{NOW + GUEST_TTL}:guest-[0-9a-f]{{12}}$")
        self.assertTrue(check_rest_credentials("north", turn["username"], turn["credential"], NOW))
        self.assertEqual(config["turn"]["refresh"], None)

    def test_guestsAreRateLimited(self) -> None:
        """
        If one address asks for guest sessions again and again, the fourth within the hour gets
        429 with Retry-After; another address still gets one; the limit wears off with time.
        """
        self.use(self.load("click_to_call = sip:sales@falcot.com\n"))
        self.assertEqual([self.guest().status for _ in range(3)], [200, 200, 200])
        refused = self.guest()
        self.assertEqual(refused.status, 429)
        self.assertEqual(int(refused.headers["retry-after"]), 30)
        self.assertEqual(self.guest(peer="198.51.100.9").status, 200)
        self.reactor.advance(4 * 3600)
        self.assertEqual(self.guest().status, 200)

    def test_noClickToCallConfigured(self) -> None:
        """
        If no click-to-call target is configured, GET says so and POST is 404; a POST that is not
        JSON is 415.
        """
        self.assertEqual(self.get("/phone/guest").json(), {"enabled": False, "target": None})
        self.assertEqual(self.guest().status, 404)
        self.use(self.load("click_to_call = sip:sales@falcot.com\n"))
        self.assertEqual(self.get("/phone/guest", method="POST", body=b"x").status, 415)


class ConfigTests(PhoneTestCase):
    def test_websocketUrlFollowsAllowedHostsOnly(self) -> None:
        """
        If the page was loaded from an allowed origin, the WebSocket URI uses that host; from any
        other Host header, the account domain and the listener's port; with [sip] websocket
        empty, there is none.
        """
        self.assertEqual(websocket_url(self.settings, "falcot.com:8443", True), "wss://falcot.com:8443/sip-websocket")
        self.assertEqual(websocket_url(self.settings, "evil.example", True), "wss://falcot.com:8443/sip-websocket")
        self.assertEqual(websocket_url(self.settings, "falcot.com", False), "ws://falcot.com:8443/sip-websocket")
        (self.folder / "u.ini").write_text("[server]\ndomain = falcot.com\n[sip]\nwebsocket =\n")
        self.assertIsNone(websocket_url(load_settings(self.folder / "u.ini"), "falcot.com", True))

    def test_shortTurnTtlIsKept(self) -> None:
        """
        If [turn] ttl is shorter than PHONE_TTL, the phone's credentials last [turn] ttl.
        """
        settings = self.load(turn="secret = north\nttl = 600\n")
        config = phone_config(settings, JID.parse("joe@falcot.com"), NOW, None)
        self.assertEqual(config["turn"], {"ttl": 600, "expires": NOW + 600, "refresh": 480})

    def test_pluginMountsPhone(self) -> None:
        """
        If the phone plugin is loaded, /phone is an http-path item; unloading removes it.
        """
        context = PluginContext(settings=self.settings, directory=self.directory, reactor=self.reactor)
        manager = PluginManager(["phone"], (), context)
        manager.startService()
        [(name, resource)] = context.items.get("http-path")
        self.assertEqual(name, "phone")
        self.assertIsInstance(resource, PhoneResource)
        manager.stopService()
        self.assertEqual(context.items.get("http-path"), [])

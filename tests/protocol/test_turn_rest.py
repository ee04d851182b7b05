"""GET /turn over a real twisted.web Site on a StringTransport: auth, parameters, throttling, JSON."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from unirtc.config import load_settings
from unirtc.throttle import FailureThrottle
from unirtc.turn.credentials import check_rest_credentials
from unirtc.turn.issuer import issue
from unirtc.web import turn
from unirtc.web.turn import MAX_IN_FLIGHT, TurnCredentialsResource, account_of, basic_credentials

NOW = 1_700_000_000
PASSWORD = "s3cret-Passw0rd"
URIS = "stun:turn.falcot.com:3478 turn:turn.falcot.com:3478?transport=udp turns:turn.falcot.com:5349?transport=tcp"


class FakeDirectory:
    """verify_password against a dict; ``pending`` makes checks wait for the test to fire them."""

    def __init__(self) -> None:
        self.passwords = {("joe", "falcot.com"): PASSWORD, ("ann", "falcot.com"): "ann-password"}
        self.calls: list[tuple[str, str]] = []
        self.pending: list[Deferred] | None = None
        self.broken = False

    def verify_password(self, localpart: str, domain: str, password: str) -> Deferred:
        self.calls.append((localpart, domain))
        if self.broken:
            return fail(RuntimeError("database is gone"))
        ok = self.passwords.get((localpart, domain)) == password
        if self.pending is not None:
            d: Deferred = Deferred()
            self.pending.append(d)
            d.result_to_send = ok
            return d
        return succeed(ok)


@implementer(ISSLTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport a Request sees as TLS (``request.isSecure()``)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> dict:
        return json.loads(self.body)


class TurnRestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.directory = FakeDirectory()
        self.events: list[dict] = []
        self.patch(turn, "log", Logger(namespace="test", observer=self.events.append))
        self.settings = self.load()
        self.use(self.settings)

    def load(self, turn_section: str = "secret = north\nttl = 3600\n") -> object:
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text(f"[server]\ndomain = falcot.com\n[turn]\n{turn_section}uris = {URIS}\n")
        return load_settings(folder / "u.ini")

    def use(self, settings, **throttles) -> None:
        self.resource = TurnCredentialsResource(settings, self.directory, self.reactor, **throttles)
        root = Resource()
        root.putChild(b"turn", self.resource)
        self.site = Site(root, reactor=self.reactor)

    def request(self, path: str = "/turn", authorization: str | None = None, method: str = "GET",
                host: str = "192.0.2.5", secure: bool = True, ipv6: bool = False) -> StringTransport:
        """Send one request; returns the transport, whose value() is the response once answered."""
        peer = IPv6Address("TCP", host, 40000) if ipv6 else IPv4Address("TCP", host, 40000)
        transport = (TLSStringTransport if secure else StringTransport)(peerAddress=peer)
        channel = self.site.buildProtocol(peer)
        channel.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.1", "Host: falcot.com"]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        transport.channel = channel
        return transport

    def get(self, *args, **kwargs) -> Response:
        return Response(self.request(*args, **kwargs).value())

    def test_issuesCredentialsToAnAuthenticatedAccount(self) -> None:
        """
        If an account authenticates with HTTP Basic over TLS, the answer is 200 JSON with the
        REST API fields for the bare JID, valid for the configured ttl, whose password is the
        HMAC coturn recomputes; it must not be cached.
        """
        response = self.get(authorization=basic("joe@falcot.com", PASSWORD))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.headers["cache-control"], "no-store")
        body = response.json()
        self.assertEqual(body["username"], f"{NOW + 3600}:joe@falcot.com")
        self.assertEqual(body["ttl"], 3600)
        self.assertEqual(body["uris"], URIS.split())
        self.assertTrue(check_rest_credentials("north", body["username"], body["password"], NOW))
        self.assertEqual(body, issue(self.settings.turn, "joe@falcot.com", NOW).as_json())

    def test_iceServersForBrowsers(self) -> None:
        """
        If credentials are issued, iceServers holds the stun: URIs alone and the turn:/turns: URIs
        with username and credential, as RTCPeerConnection takes them.
        """
        body = self.get(authorization=basic("joe", PASSWORD)).json()
        self.assertEqual(body["iceServers"], [
            {"urls": ["stun:turn.falcot.com:3478"]},
            {"urls": ["turn:turn.falcot.com:3478?transport=udp", "turns:turn.falcot.com:5349?transport=tcp"],
             "username": body["username"], "credential": body["password"]},
        ])

    def test_userPartFormsNameTheSameAccount(self) -> None:
        """
        If the Basic user part is "joe", "joe@falcot.com" or "JOE@falcot.com", the credentials name
        the same canonical bare JID.
        """
        for user in ("joe", "joe@falcot.com", "JOE@falcot.com"):
            body = self.get(authorization=basic(user, PASSWORD)).json()
            self.assertEqual(body["username"].split(":", 1)[1], "joe@falcot.com")
        self.assertEqual(self.directory.calls, [("joe", "falcot.com")] * 3)

    def test_shorterTtlOnRequest(self) -> None:
        """
        If ?ttl= asks for a lifetime up to the configured one, the credentials last that long.
        """
        body = self.get("/turn?ttl=60&service=turn", authorization=basic("joe", PASSWORD)).json()
        self.assertEqual(body["ttl"], 60)
        self.assertEqual(body["username"], f"{NOW + 60}:joe@falcot.com")

    def test_badParametersAre400(self) -> None:
        """
        If ?ttl= is not one number in 1..[turn] ttl, or ?service= is not turn, the answer is 400
        with a JSON error, and no password is checked.
        """
        for query in ("ttl=0", "ttl=3601", "ttl=abc", "ttl=-5", "ttl=%2B5", "ttl=", "ttl=1&ttl=2",
                      "ttl=99999999999999999999", "service=stun"):
            response = self.get(f"/turn?{query}", authorization=basic("joe", PASSWORD))
            self.assertEqual(response.status, 400, query)
            self.assertIn("error", response.json())
        self.assertEqual(self.directory.calls, [])

    def test_noCredentialsIs401WithChallenge(self) -> None:
        """
        If the request carries no Authorization, the answer is 401 with a Basic challenge naming
        the domain, and the directory is not asked.
        """
        response = self.get()
        self.assertEqual(response.status, 401)
        self.assertEqual(response.headers["www-authenticate"], 'Basic realm="falcot.com", charset="UTF-8"')
        self.assertEqual(self.directory.calls, [])

    def test_wrongOrMalformedCredentialsAre401(self) -> None:
        """
        If the password is wrong, the account unknown or foreign, or the header malformed (bad
        base64, no colon, another scheme), the answer is 401 with the challenge.
        """
        for authorization in (basic("joe", "wrong"), basic("nobody", PASSWORD), basic("joe@example.org", PASSWORD),
                              basic("joe@falcot.com/phone", PASSWORD), "Basic !!!notbase64", "Basic " +
                              base64.b64encode(b"joe-no-colon").decode(), "Bearer abc", "Basic " +
                              base64.b64encode(b"\xff\xfe:x").decode(), basic("", PASSWORD)):
            response = self.get(authorization=authorization)
            self.assertEqual(response.status, 401, authorization)
            self.assertTrue(response.headers["www-authenticate"].startswith("Basic realm="))

    def test_otherMethodsAre405(self) -> None:
        """
        If the method is not GET or HEAD (POST, PUT, DELETE, PATCH, OPTIONS), the answer is 405
        with Allow, and nothing is issued.
        """
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            response = self.get(method=method, authorization=basic("joe", PASSWORD))
            self.assertEqual((response.status, response.headers["allow"]), (405, "GET, HEAD"), method)
        self.assertEqual(self.directory.calls, [])

    def test_noSecretIs503(self) -> None:
        """
        If no [turn] secret is configured, the answer is 503: the server cannot sign credentials.
        """
        self.use(self.load("ttl = 3600\n"))
        response = self.get(authorization=basic("joe", PASSWORD))
        self.assertEqual(response.status, 503)
        self.assertEqual(self.directory.calls, [])

    def test_plainHttpOnlyFromLoopback(self) -> None:
        """
        If the request came without TLS from another host, it is refused (403) before any password
        check; from loopback (a local reverse proxy) it is served.
        """
        self.assertEqual(self.get(authorization=basic("joe", PASSWORD), secure=False).status, 403)
        self.assertEqual(self.directory.calls, [])
        response = self.get(authorization=basic("joe", PASSWORD), secure=False, host="127.0.0.1")
        self.assertEqual(response.status, 200)

    def test_accountThrottledAfterRepeatedFailures(self) -> None:
        """
        If an account fails five times free and a sixth time, the next attempt, even with the right
        password, gets 429 with Retry-After and no password check; once the delay passed, the
        right password works and clears the account's record.
        """
        for _ in range(6):
            self.assertEqual(self.get(authorization=basic("joe", "guess")).status, 401)
        calls = len(self.directory.calls)
        response = self.get(authorization=basic("joe", PASSWORD))
        self.assertEqual(response.status, 429)
        self.assertEqual(response.headers["retry-after"], "1")
        self.assertEqual(len(self.directory.calls), calls)
        self.assertEqual(self.get(authorization=basic("ann", "ann-password")).status, 200)
        self.reactor.advance(1)
        self.assertEqual(self.get(authorization=basic("joe", PASSWORD)).status, 200)
        self.assertEqual(self.resource.accounts.score("joe@falcot.com", self.reactor.seconds()), 0.0)

    def test_addressThrottledAcrossAccounts(self) -> None:
        """
        If one address fails for many different accounts, that address gets 429 for any account,
        while another address is still served.
        """
        self.use(self.settings, addresses=FailureThrottle(free_failures=2, base_delay=5, max_delay=5))
        for user in ("joe", "ann", "bob"):
            self.assertEqual(self.get(authorization=basic(user, "guess")).status, 401)
        response = self.get(authorization=basic("ann", "ann-password"))
        self.assertEqual((response.status, response.headers["retry-after"]), (429, "5"))
        self.assertEqual(self.get(authorization=basic("ann", "ann-password"), host="192.0.2.6").status, 200)

    def test_ipv6AddressesThrottledByPrefix(self) -> None:
        """
        If failures come from one IPv6 /64, another address of the same /64 is throttled too.
        """
        self.use(self.settings, addresses=FailureThrottle(free_failures=0, base_delay=5, max_delay=5))
        self.get(authorization=basic("joe", "guess"), host="2001:db8::1", ipv6=True)
        response = self.get(authorization=basic("joe", PASSWORD), host="2001:db8::2", ipv6=True)
        self.assertEqual(response.status, 429)

    def test_parallelChecksPerAddressBounded(self) -> None:
        """
        If an address has MAX_IN_FLIGHT password checks running, one more attempt gets 429 at
        once; when the checks end, the address is served again.
        """
        self.directory.pending = []
        transports = [self.request(authorization=basic("joe", PASSWORD)) for _ in range(MAX_IN_FLIGHT)]
        self.assertEqual(Response(self.request(authorization=basic("joe", PASSWORD)).value()).status, 429)
        for d in self.directory.pending:
            d.callback(d.result_to_send)
        self.assertEqual({Response(t.value()).status for t in transports}, {200})
        self.directory.pending = None
        self.assertEqual(self.get(authorization=basic("joe", PASSWORD)).status, 200)

    def test_clientGoneBeforeTheCheckEnds(self) -> None:
        """
        If the client disconnects while its password is checked, nothing is written, and a failed
        check still counts for throttling.
        """
        self.directory.pending = []
        transport = self.request(authorization=basic("joe", "guess"))
        transport.channel.connectionLost(Failure(ConnectionDone()))
        written = transport.value()
        self.directory.pending[0].callback(False)
        self.assertEqual(transport.value(), written)
        self.assertEqual(self.resource.accounts.score("joe@falcot.com", self.reactor.seconds()), 1.0)

    def test_directoryFailureIs503(self) -> None:
        """
        If the directory cannot be read, the answer is 503 and the failure is logged.
        """
        self.directory.broken = True
        self.assertEqual(self.get(authorization=basic("joe", PASSWORD)).status, 503)
        self.assertTrue(any("log_failure" in event for event in self.events))

    def test_passwordsNeverLogged(self) -> None:
        """
        If logins fail (to throttling) and succeed, the log names accounts but never the account
        password nor the issued TURN password.
        """
        for _ in range(8):
            self.get(authorization=basic("joe", "guess-password"))
        self.reactor.advance(3600)
        issued = self.get(authorization=basic("joe", PASSWORD)).json()["password"]
        text = "\n".join(formatEvent(event) for event in self.events)
        self.assertIn("failed login for joe@falcot.com from 192.0.2.5", text)
        self.assertIn("refused for", text)
        self.assertIn("Issued TURN credentials to joe@falcot.com", text)
        for secret in (PASSWORD, "guess-password", issued, "north"):
            self.assertNotIn(secret, text)


class HelperTests(SynchronousTestCase):
    def test_basicCredentials(self) -> None:
        """
        If the header is Basic with base64 UTF-8 "user:password", it splits at the first colon
        (passwords may hold colons); anything else is None.
        """
        header = b"Basic " + base64.b64encode("jo\u00e9:pa:ss".encode())
        self.assertEqual(basic_credentials(header), ("jo\u00e9", "pa:ss"))
        self.assertEqual(basic_credentials(b"basic  " + base64.b64encode(b"a:b")), ("a", "b"))
        for bad in (None, b"Basic", b"Digest a=b", b"Basic " + b"A" * 3000):
            self.assertIsNone(basic_credentials(bad))

    def test_accountOf(self) -> None:
        """
        If the user part is a local name or a bare JID of this domain it names an account;
        other domains, full JIDs and invalid JIDs do not.
        """
        self.assertEqual(str(account_of("joe", "falcot.com")), "joe@falcot.com")
        for bad in ("joe@example.org", "joe@falcot.com/res", "jo e@", "@falcot.com", "a" * 2000):
            self.assertIsNone(account_of(bad, "falcot.com"))

"""Tests for unirtc.sip.registrar: RFC 3261 §10.3 on a fake directory and a fake clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_auth_helpers import (
    NOW,
    FakeDirectory,
    authorization,
    challenges,
    request,
    settings,
    with_header,
)
from unirtc.directory.bindings_store import BindingRecord
from unirtc.sip.bindings import Binding, BindingStore
from unirtc.sip.digest import DigestAuthenticator, domain_map
from unirtc.sip.message import SipResponse
from unirtc.sip.registrar import Registrar
from unirtc.sip.uri import parse_name_addr
from unirtc.throttle import FailureThrottle

JOE = ("joe", "falcot.com")
SOURCE = ("192.0.2.10", 5060)


class RegistrarTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = FakeDirectory()
        self.directory.add("joe")
        self.directory.add("ann")
        realm_for = domain_map(settings())
        self.auth = DigestAuthenticator(self.directory, b"s" * 32, self.clock, realm_for,
                                        account_throttle=FailureThrottle(free_failures=2))
        self.store = BindingStore(clock=self.clock)
        self.changes: list[tuple[tuple[str, str], list[Binding]]] = []
        self.registrar = Registrar(self.auth, self.store, self.clock, realm_for,
                                   on_change=lambda aor, b: self.changes.append((aor, b)))
        self.cseq = 0

    def register(
        self,
        contacts: list[str] | None = None,
        expires: int | None = None,
        user: str = "joe",
        to: str = "<sip:joe@falcot.com>",
        call_id: str = "reg-1@192.0.2.10",
        cseq: int | None = None,
        extra: list[str] | None = None,
        password: str = "correct horse",
        source: tuple[str, int] = SOURCE,
        flow: str | None = None,
    ) -> SipResponse:
        """An authenticated REGISTER as a phone sends it after the 401, and its response."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        headers = [f"Contact: {c}" for c in contacts or []] + (extra or [])
        if expires is not None:
            headers.append(f"Expires: {expires}")
        req = request(to=to, call_id=call_id, cseq=cseq, extra=headers)
        challenge = challenges(self.auth.challenge(req))[0]
        signed = with_header(req, "Authorization",
                             authorization(challenge, req, username=user, password=password))
        return self.successResultOf(self.registrar.handle(signed, source, flow))

    def contacts(self, response: SipResponse) -> dict[str, dict[str, str | None]]:
        parsed = [parse_name_addr(v) for v in response.headers.get_all("Contact")]
        return {str(c.uri): c.params for c in parsed}


class AuthenticationTests(RegistrarTestCase):
    def test_unauthenticatedIsChallenged(self) -> None:
        """
        If a REGISTER has no credentials, the answer is 401 with both challenges and nothing
        is bound.
        """
        req = request(extra=["Contact: <sip:joe@192.0.2.10>"])
        response = self.successResultOf(self.registrar.handle(req, SOURCE, None))
        self.assertEqual(response.status, 401)
        self.assertEqual([c["algorithm"] for c in challenges(response)], ["MD5", "SHA-256"])
        self.assertEqual(self.store.lookup(JOE, NOW), [])

    def test_registerAndListBinding(self) -> None:
        """
        If joe registers a contact, the 200 lists it with the default expires of 3600 and a
        Date; the binding records source, flow, Call-ID, CSeq and User-Agent.
        """
        response = self.register(["<sip:joe@192.0.2.10:5062;transport=tcp>"], flow="tcp:f1",
                                 extra=["User-Agent: Linphone/5.2"])
        self.assertEqual(response.status, 200)
        self.assertEqual(self.contacts(response),
                         {"sip:joe@192.0.2.10:5062;transport=tcp": {"expires": "3600"}})
        self.assertIn("GMT", response.headers.get("Date") or "")
        [binding] = self.store.lookup(JOE, NOW)
        self.assertEqual((binding.source, binding.flow, binding.call_id, binding.cseq),
                         (SOURCE, "tcp:f1", "reg-1@192.0.2.10", 1))
        self.assertEqual((binding.expires_at, binding.user_agent), (NOW + 3600, "Linphone/5.2"))
        self.assertEqual(self.changes, [(JOE, [binding])])

    def test_aliasDomainAndFullUsername(self) -> None:
        """
        If joe registers sip:joe@sip.falcot.com with the digest username joe@falcot.com, the
        binding belongs to the account joe@falcot.com.
        """
        response = self.register(["<sip:joe@192.0.2.10>"], to="<sip:joe@sip.falcot.com>",
                                 user="joe@falcot.com")
        self.assertEqual(response.status, 200)
        self.assertEqual(len(self.store.lookup(JOE, NOW)), 1)

    def test_foreignAddressOfRecordForbidden(self) -> None:
        """
        If joe authenticates but the To header names ann, the answer is 403 and ann has no
        binding.
        """
        response = self.register(["<sip:joe@192.0.2.10>"], to="<sip:ann@falcot.com>")
        self.assertEqual(response.status, 403)
        self.assertEqual(self.store.lookup(("ann", "falcot.com"), NOW), [])

    def test_unservedDomainNotFound(self) -> None:
        """
        If the To domain is not served here (or To has no user), the answer is 404 without a
        challenge.
        """
        for to in ("<sip:joe@example.org>", "<sip:falcot.com>", "<tel:+331234>"):
            req = request(to=to, extra=["Contact: <sip:joe@192.0.2.10>"])
            response = self.successResultOf(self.registrar.handle(req, SOURCE, None))
            self.assertEqual(response.status, 404, to)
            self.assertEqual(response.headers.get_all("WWW-Authenticate"), [])

    def test_wrongPasswordThenThrottled(self) -> None:
        """
        If the password is wrong the answer is a new 401; once the account has failed too
        often, the answer is 403 with Retry-After.
        """
        self.assertEqual(self.register(["<sip:joe@192.0.2.10>"], password="bad").status, 401)
        self.register(["<sip:joe@192.0.2.10>"], password="bad")
        req = request(extra=["Contact: <sip:joe@192.0.2.10>"], cseq=50)
        signed = with_header(req, "Authorization", authorization(
            challenges(self.auth.challenge(req))[0], req, password="bad"))
        self.registrar.handle(signed, ("198.51.100.1", 5060), None)
        response = self.register(["<sip:joe@192.0.2.10>"], source=("198.51.100.2", 5060))
        self.assertEqual((response.status, response.headers.get("Retry-After")), (403, "1"))
        self.assertEqual(self.store.lookup(JOE, NOW), [])

    def test_disabledAccountForbidden(self) -> None:
        """
        If the account is disabled, a REGISTER with the right password gets 403.
        """
        self.directory.add("joe", disabled=True)
        self.assertEqual(self.register(["<sip:joe@192.0.2.10>"]).status, 403)

    def test_requireUnsupportedAndOtherMethods(self) -> None:
        """
        If a REGISTER requires an extension, the answer is 420 naming it; a request that is
        not REGISTER gets 405 with Allow.
        """
        response = self.register(["<sip:joe@192.0.2.10>"], extra=["Require: gruu, path"])
        self.assertEqual((response.status, response.headers.get("Unsupported")), (420, "gruu, path"))
        options = request("OPTIONS")
        response = self.successResultOf(self.registrar.handle(options, SOURCE, None))
        self.assertEqual((response.status, response.headers.get("Allow")), (405, "REGISTER"))


class ExpiryTests(RegistrarTestCase):
    def test_expiresParamHeaderDefaultAndCap(self) -> None:
        """
        If contacts carry an expires parameter it wins over the Expires header, which wins
        over the default; values over 86400 are capped.
        """
        response = self.register(["<sip:a@192.0.2.10>;expires=120", "<sip:b@192.0.2.10>",
                                  "<sip:c@192.0.2.10>;expires=999999"], expires=600)
        self.assertEqual({uri: p["expires"] for uri, p in self.contacts(response).items()},
                         {"sip:a@192.0.2.10": "120", "sip:b@192.0.2.10": "600",
                          "sip:c@192.0.2.10": "86400"})

    def test_intervalTooBrief(self) -> None:
        """
        If a contact asks for less than 60 s (but not 0), the whole REGISTER gets 423 with
        Min-Expires: 60 and nothing is bound.
        """
        response = self.register(["<sip:a@192.0.2.10>", "<sip:b@192.0.2.10>;expires=30"])
        self.assertEqual((response.status, response.headers.get("Min-Expires")), (423, "60"))
        self.assertEqual(response.reason, "Interval Too Brief")
        self.assertEqual(self.store.lookup(JOE, NOW), [])

    def test_bindingsExpireAndArePurged(self) -> None:
        """
        If a binding's time passes it is no longer looked up, and purge removes it from the
        table.
        """
        self.register(["<sip:a@192.0.2.10>"], expires=60)
        self.clock.advance(61)
        self.assertEqual(self.store.lookup(JOE, self.clock.seconds()), [])
        self.assertEqual(len(self.store.table), 1)
        self.store.purge()
        self.assertEqual(len(self.store.table), 0)

    def test_zeroRemovesOne(self) -> None:
        """
        If a contact is registered again with expires=0, only that binding is removed.
        """
        self.register(["<sip:a@192.0.2.10>", "<sip:b@192.0.2.10>"])
        response = self.register(["<sip:a@192.0.2.10>;expires=0"])
        self.assertEqual(list(self.contacts(response)), ["sip:b@192.0.2.10"])


class BindingRulesTests(RegistrarTestCase):
    def test_severalContactsAndQueries(self) -> None:
        """
        If joe registers from two phones with separate Call-IDs, both bindings are listed,
        highest q first, and a REGISTER without Contact lists them without changing them.
        """
        self.register(["<sip:desk@192.0.2.20>;q=0.5"], call_id="desk")
        self.register(["<sip:mobile@198.51.100.7>;q=0.9"], call_id="mobile")
        response = self.register()
        self.assertEqual(response.status, 200)
        self.assertEqual(list(self.contacts(response)),
                         ["sip:mobile@198.51.100.7", "sip:desk@192.0.2.20"])
        self.assertEqual(self.contacts(response)["sip:desk@192.0.2.20"]["q"], "0.5")
        self.assertEqual(len(self.changes), 2)

    def test_refreshByCallIdAndCseq(self) -> None:
        """
        If the same Call-ID refreshes with a higher CSeq the binding is updated; with a CSeq
        not above the stored one the REGISTER fails with 500 and nothing changes; another
        Call-ID may update it whatever its CSeq.
        """
        self.register(["<sip:a@192.0.2.10>"], expires=600, cseq=10)
        self.clock.advance(100)
        self.assertEqual(self.register(["<sip:a@192.0.2.10>"], expires=600, cseq=11).status, 200)
        [binding] = self.store.lookup(JOE, NOW)
        self.assertEqual((binding.cseq, binding.expires_at), (11, NOW + 700))
        for stale in (11, 5):
            response = self.register(["<sip:a@192.0.2.10>"], expires=3000, cseq=stale)
            self.assertEqual(response.status, 500)
        self.assertEqual(self.store.lookup(JOE, NOW)[0].expires_at, NOW + 700)
        response = self.register(["<sip:a@192.0.2.10>"], expires=900, cseq=1, call_id="other")
        self.assertEqual(response.status, 200)
        self.assertEqual(self.store.lookup(JOE, NOW)[0].call_id, "other")

    def test_contactUriEquivalence(self) -> None:
        """
        If a contact is registered again under an equivalent URI (host case), it refreshes the
        same binding rather than adding one.
        """
        self.register(["<sip:a@PHONE.example.com>"])
        self.register(["<sip:a@phone.example.com>"])
        self.assertEqual(len(self.store.lookup(JOE, NOW)), 1)

    def test_instanceAndRegIdReplaceAcrossAddresses(self) -> None:
        """
        If a phone comes back on a new address with the same +sip.instance and reg-id, its
        binding is replaced; another reg-id is another flow; both are echoed in the 200.
        """
        instance = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'
        self.register([f"<sip:joe@192.0.2.10:5060>;{instance};reg-id=1"], call_id="x")
        self.register([f"<sip:joe@192.0.2.77:6000>;{instance};reg-id=1"], call_id="y")
        response = self.register([f"<sip:joe@192.0.2.77:6000>;{instance};reg-id=2"], call_id="z")
        contacts = [parse_name_addr(v) for v in response.headers.get_all("Contact")]
        self.assertEqual([str(c.uri) for c in contacts], ["sip:joe@192.0.2.77:6000"] * 2)
        self.assertEqual({c.params["reg-id"] for c in contacts}, {"1", "2"})
        self.assertEqual({c.params["+sip.instance"] for c in contacts},
                         {'"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'})
        self.assertEqual(self.store.lookup(JOE, NOW)[0].instance,
                         "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")

    def test_instanceWithoutRegIdReplaces(self) -> None:
        """
        If a contact carries +sip.instance without reg-id, a new URI with that instance
        replaces the old binding (RFC 5627 style); reg-id alone is ignored.
        """
        instance = '+sip.instance="<urn:uuid:1>"'
        self.register([f"<sip:joe@192.0.2.10>;{instance}"], call_id="x")
        self.register([f"<sip:joe@192.0.2.11>;{instance}"], call_id="y")
        self.register(["<sip:joe@192.0.2.12>;reg-id=4"], call_id="z")
        bindings = self.store.lookup(JOE, NOW)
        self.assertEqual([b.contact for b in bindings], ["sip:joe@192.0.2.11", "sip:joe@192.0.2.12"])
        self.assertIsNone(bindings[1].reg_id)

    def test_wildcardRemovesAll(self) -> None:
        """
        If Contact: * comes with Expires: 0, every binding is removed; with the same Call-ID
        and a CSeq not above a stored one it fails with 500 instead.
        """
        self.register(["<sip:a@192.0.2.10>"], call_id="one", cseq=5)
        self.register(["<sip:b@192.0.2.10>"], call_id="two", cseq=5)
        self.assertEqual(self.register(["*"], expires=0, call_id="one", cseq=5).status, 500)
        self.assertEqual(len(self.store.lookup(JOE, NOW)), 2)
        response = self.register(["*"], expires=0, call_id="one", cseq=6)
        self.assertEqual((response.status, response.headers.get_all("Contact")), (200, []))
        self.assertEqual(self.store.lookup(JOE, NOW), [])

    def test_badWildcardRequests(self) -> None:
        """
        If Contact: * comes without Expires or with a non-zero Expires, the answer is 400.
        """
        self.register(["<sip:a@192.0.2.10>"], call_id="keep")
        self.assertEqual(self.register(["*"]).status, 400)
        self.assertEqual(self.register(["*"], expires=3600).status, 400)
        self.assertEqual(len(self.store.lookup(JOE, NOW)), 1)

    def test_malformedContacts(self) -> None:
        """
        If a contact is not sip/sips, has a bad q or reg-id, or its URI is over-long, the
        answer is 400 and nothing is bound.
        """
        instance = '+sip.instance="<urn:uuid:1>"'
        for contact in ("<tel:+33123456>", "<mailto:joe@falcot.com>", "<sip:a@192.0.2.1>;q=1.5",
                        "<sip:a@192.0.2.1>;q=abc", f"<sip:a@192.0.2.1>;{instance};reg-id=0",
                        f"<sip:{'a' * 2100}@192.0.2.1>", '<sip:a@192.0.2.1>;+sip.instance=""'):
            self.assertEqual(self.register([contact]).status, 400, contact)
        self.assertEqual(self.store.lookup(JOE, NOW), [])

    def test_tooManyContacts(self) -> None:
        """
        If an account would have more than 16 bindings, the REGISTER is refused with 403.
        """
        for i in range(16):
            self.register([f"<sip:p{i}@192.0.2.10>"], call_id=f"c{i}")
        response = self.register(["<sip:extra@192.0.2.10>"], call_id="extra")
        self.assertEqual(response.status, 403)
        self.assertEqual(len(self.store.lookup(JOE, NOW)), 16)


class _FailingDirectory:
    """A Directory whose writes fail until told otherwise (load returns nothing)."""

    def __init__(self) -> None:
        self.failing = True
        self.writes: list[dict] = []

    def run(self, operation, *args):
        if operation.__name__ == "load_bindings":
            return succeed([])
        if self.failing:
            return fail(RuntimeError("database down"))
        self.writes.append(args[0])
        return succeed(None)


class StorageFailureTests(RegistrarTestCase):
    def test_storageFailureIs500ThenRetried(self) -> None:
        """
        If the database write fails the REGISTER gets 500 with Retry-After, failed retries do
        not stop the periodic purge, and it writes the bindings once the database is back.
        """
        database = _FailingDirectory()
        self.store = BindingStore(database, self.clock)
        self.store.startService()
        self.addCleanup(self.store.stopService)
        self.registrar = Registrar(self.auth, self.store, self.clock, domain_map(settings()))
        response = self.register(["<sip:a@192.0.2.10>"])
        self.assertEqual((response.status, response.headers.get("Retry-After")), (500, "10"))
        self.flushLoggedErrors(RuntimeError)
        self.clock.advance(30)
        self.assertEqual(database.writes, [])
        self.flushLoggedErrors(RuntimeError)
        database.failing = False
        self.clock.advance(30)
        self.assertEqual(len(database.writes), 1)
        self.assertEqual([r.contact for r in database.writes[0][JOE]], ["sip:a@192.0.2.10"])


class StartupTests(RegistrarTestCase):
    def test_waitsUntilBindingsAreLoaded(self) -> None:
        """
        If a REGISTER arrives before the stored bindings are loaded, it is answered only once
        they are, and the answer lists the stored binding too.
        """
        loading: Deferred = Deferred()

        class Database:
            def run(self, operation, *args):
                return loading if operation.__name__ == "load_bindings" else succeed(None)

        self.store = BindingStore(Database(), self.clock)
        self.store.startService()
        self.addCleanup(self.store.stopService)
        self.registrar = Registrar(self.auth, self.store, self.clock, domain_map(settings()))
        req = request(extra=["Contact: <sip:new@192.0.2.10>"])
        signed = with_header(req, "Authorization",
                             authorization(challenges(self.auth.challenge(req))[0], req))
        d = self.registrar.handle(signed, SOURCE, None)
        self.assertNoResult(d)
        stored = BindingRecord("joe", "falcot.com", "sip:old@192.0.2.9", NOW + 600, 1.0, "old", 1)
        loading.callback([stored])
        response = self.successResultOf(d)
        self.assertEqual(sorted(self.contacts(response)), ["sip:new@192.0.2.10", "sip:old@192.0.2.9"])

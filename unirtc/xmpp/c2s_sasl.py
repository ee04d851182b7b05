# -*- test-case-name: tests.protocol.test_c2s_sasl -*-
"""SASL negotiation on a client stream (RFC 6120 §6): elements in, mechanisms from sasl.py,
secrets from the directory, failures throttled per address and per account.

``sasl.py`` holds the pure mechanisms; this module drives one of them over a stream: it
advertises what the stream allows (PLAIN and -PLUS only on TLS, with XEP-0440's channel-binding
list), fetches the account's secret without blocking, refuses attempts while the address or the
account is throttled (answered without checking the password), turns a correct password on a
disabled account into ``<account-disabled/>``, and ends the stream after repeated failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.directory.store import Credentials
from unirtc.logging import get_logger
from unirtc.throttle import FailureThrottle, address_key
from unirtc.xmpp import sasl
from unirtc.xmpp.channel_binding import binding_data, binding_types
from unirtc.xmpp.jid import JID, InvalidJID, normalize_localpart

log = get_logger("unirtc.xmpp.auth")

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
MAX_FAILURES_PER_STREAM = 5  # RFC 6120 §6.4.5: "at least 2 and no more than 5" retries


@dataclass
class AuthSettings:
    """What every SASL negotiation on one server shares."""

    domain: str
    credentials: Callable[[str, str], Deferred[Credentials | None]]
    throttle: FailureThrottle
    clock: Any
    fake_salt_key: bytes


def _element(name: str, text: str | None = None) -> domish.Element:
    element = domish.Element((NS_SASL, name))
    if text:
        element.addContent(text)
    return element


def _prepare_username(username: str, domain: str) -> str | None:
    """The account's localpart, or None if no account could have this name.

    Some clients send the bare JID as the SASL username; accept it for our own domain.
    """
    if "@" in username:
        local, _, host = username.rpartition("@")
        if host.lower() != domain:
            return None
        username = local
    try:
        return normalize_localpart(username)
    except InvalidJID:
        return None


class SaslNegotiation:
    """One stream's SASL state; ``on_success(localpart)`` runs after ``<success/>`` is sent."""

    def __init__(self, settings: AuthSettings, stream: Any, on_success: Callable[[str], None]) -> None:
        self.settings = settings
        self.stream = stream
        self.on_success = on_success
        self.failures = 0
        self._mech: sasl.ScramServer | sasl.PlainServer | None = None
        self._started = False
        self._localpart: str | None = None
        self._credentials: Credentials | None = None

    # -- advertising -------------------------------------------------------------------------

    def _cb_types(self) -> list[str]:
        return binding_types(self.stream.tls_connection())

    def mechanisms(self) -> list[str]:
        return sasl.mechanisms(self.stream.secure, self._cb_types())

    def features(self) -> list[domish.Element]:
        """``<mechanisms/>`` and, when -PLUS is offered, XEP-0440 ``<sasl-channel-binding/>``."""
        mechanisms = domish.Element((NS_SASL, "mechanisms"))
        for name in self.mechanisms():
            mechanisms.addElement("mechanism", content=name)
        features = [mechanisms]
        cb_types = self._cb_types()
        if cb_types:
            bindings = domish.Element((NS_SASL_CB, "sasl-channel-binding"))
            for cb_type in cb_types:
                bindings.addElement("channel-binding")["type"] = cb_type
            features.append(bindings)
        return features

    # -- the exchange ------------------------------------------------------------------------

    def handle(self, element: domish.Element) -> Deferred[None] | None:
        """Handle ``<auth/>``, ``<response/>`` or ``<abort/>``."""
        if element.name == "auth":
            return self._auth(element)
        if element.name == "abort":
            self._mech = None
            self._send_failure(sasl.Failure("aborted"), counted=False)
            return None
        if element.name == "response" and self._mech is not None:
            payload = sasl.decode_payload(str(element))
            if isinstance(payload, sasl.Failure):
                return self._fail(payload)
            return self._step(payload or b"")
        self._send_failure(sasl.Failure("malformed-request", "unexpected element"), counted=False)
        return None

    def _auth(self, element: domish.Element) -> Deferred[None] | None:
        name = element.getAttribute("mechanism") or ""
        cb_types = self._cb_types()
        refused = sasl.check_mechanism(name, self.stream.secure, cb_types)
        if refused is not None:
            return self._fail(refused, counted=False)
        payload = sasl.decode_payload(str(element))
        if isinstance(payload, sasl.Failure):
            return self._fail(payload, counted=False)
        if name == "PLAIN":
            self._mech = sasl.PlainServer()
        else:
            hash_name, plus = sasl.SCRAM_MECHANISMS[name]
            connection = self.stream.tls_connection()
            self._mech = sasl.ScramServer(
                hash_name, plus, cb_types, lambda cb_type: binding_data(connection, cb_type),
                fake_salt_key=self.settings.fake_salt_key,
                advertised_mechanisms=self.mechanisms(),
            )
        self._started = False
        if payload is None:  # RFC 6120 §6.4.2: no initial response, ask for it
            self._send("challenge", sasl.encode_payload(b""))
            return None
        return self._step(payload)

    def _step(self, data: bytes) -> Deferred[None] | None:
        mech = self._mech
        if not self._started:
            self._started = True
            if isinstance(mech, sasl.PlainServer):
                request = mech.start(data)
                if isinstance(request, sasl.Failure):
                    return self._fail(request, counted=False)
                return self._then(request.username,
                                  lambda credentials: self._plain_finish(mech, credentials, request.password))
            assert isinstance(mech, sasl.ScramServer)
            username = mech.start(data)
            if isinstance(username, sasl.Failure):
                return self._fail(username, counted=False)
            return self._then(username, lambda credentials: self._scram_first(mech, credentials))
        if isinstance(mech, sasl.ScramServer):
            result = mech.final(data)
            if isinstance(result, sasl.Failure):
                return self._fail(result)
            self._succeed(result)
            return None
        return self._fail(sasl.Failure("malformed-request", "unexpected response"), counted=False)

    def _then(self, username: str, action: Callable[[Credentials | None], None]) -> Deferred[None] | None:
        """Look the account up, then ``action(credentials)``; refused while throttled."""
        localpart = _prepare_username(username, self.settings.domain)
        self._localpart = localpart or username
        now = self.settings.clock.seconds()
        keys = [("address", address_key(self.stream.peer_host)), ("account", self._localpart)]
        wait = max(self.settings.throttle.retry_after(key, now) for key in keys)
        if wait > 0:
            log.warn("Login for {user} from {host} refused for {wait:.0f} s after repeated failures",
                     user=self._account(), host=self.stream.peer_host, wait=wait)
            text = f"too many failures; retry in {wait:.0f} s"
            return self._fail(sasl.Failure("temporary-auth-failure", text), counted=False)
        if localpart is None:
            action(None)
            return None
        lookup = self.settings.credentials(localpart, self.settings.domain)
        lookup.addCallback(action)
        lookup.addErrback(self._lookup_failed)
        return lookup

    def _lookup_failed(self, failure: Any) -> None:
        log.failure("Reading the credentials of {user} failed", failure, user=self._account())
        self._fail(sasl.Failure("temporary-auth-failure"), counted=False)

    def _scram_first(self, mech: sasl.ScramServer, credentials: Credentials | None) -> None:
        self._credentials = credentials
        secret = credentials.scram.get(mech.hash_name) if credentials is not None else None
        reply = mech.first(secret, self._localpart)
        if isinstance(reply, sasl.Failure):
            self._fail(reply)
            return
        self._send("challenge", sasl.encode_payload(reply.data))

    def _plain_finish(self, mech: sasl.PlainServer, credentials: Credentials | None, password: str) -> None:
        self._credentials = credentials
        secret = credentials.scram.get("sha256") if credentials is not None else None
        result = mech.finish(secret, password)
        if isinstance(result, sasl.Failure):
            self._fail(result)
        else:
            self._succeed(result)

    def _succeed(self, success: sasl.Success) -> None:
        credentials = self._credentials
        if credentials is None:  # a fake secret never verifies; this is belt and braces
            self._fail(sasl.Failure("not-authorized"))
            return
        own = f"{credentials.localpart}@{credentials.domain}"
        checked = sasl.check_authzid(success, own, lambda text: JID.parse(text).bare.full)
        if isinstance(checked, sasl.Failure):
            self._fail(checked, counted=False)
            return
        if credentials.disabled:
            log.info("Refused login to disabled account {user} from {host}", user=own, host=self.stream.peer_host)
            self._fail(sasl.Failure("account-disabled"), counted=False)
            return
        self.settings.throttle.reset(("account", credentials.localpart))
        mechanism = self._mech.name if self._mech is not None else "?"
        self._mech = None
        log.info("{user} authenticated from {host} with {mechanism}", user=own,
                 host=self.stream.peer_host, mechanism=mechanism)
        self._send("success", sasl.encode_payload(success.data))
        self.on_success(credentials.localpart)

    def _fail(self, failure: sasl.Failure, counted: bool = True) -> None:
        self._send_failure(failure, counted)

    def _send_failure(self, failure: sasl.Failure, counted: bool) -> None:
        self._mech = None
        element = _element("failure")
        element.addElement(failure.condition)
        if failure.text:
            element.addElement("text", content=failure.text)
        self.stream.send(element)
        self.failures += 1
        if counted and failure.condition == "not-authorized":
            now = self.settings.clock.seconds()
            host = self.stream.peer_host
            delay = max(
                self.settings.throttle.failure(("address", address_key(host)), now),
                self.settings.throttle.failure(("account", self._localpart or ""), now),
            )
            log.warn("Authentication failed for {user} from {host}{throttled}", user=self._account(),
                     host=host, throttled=f"; throttled for {delay:.0f} s" if delay else "")
        if self.failures >= MAX_FAILURES_PER_STREAM:
            self.stream.fail("not-authorized", "too many failed authentication attempts")

    def _account(self) -> str:
        return f"{self._localpart or '?'}@{self.settings.domain}"

    def _send(self, name: str, text: str) -> None:
        self.stream.send(_element(name, text))

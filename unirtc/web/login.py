"""Password checks for web endpoints (``GET /turn``, ``POST /phone/session``), throttled.

Both endpoints take an account and password over HTTPS and check them against the directory, so
both need the same defences against guessing: failures counted per source address and per
account (``unirtc.throttle``), a bound on parallel checks per address, and an honest 429 with
Retry-After (RFC 6585) for a throttled attempt, answered at once and *without* checking the
password.  ``PasswordGate`` holds that state; each resource keeps its own request parsing,
answers and log wording.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable

from twisted.python.failure import Failure
from twisted.web.server import Request

from unirtc.throttle import FailureThrottle
from unirtc.xmpp.jid import JID

# Parallel password checks per source address: throttling counts failures only when a check
# ends, so without this bound a burst of simultaneous guesses would all be checked.
MAX_IN_FLIGHT = 8

# report(account or "(none)", host, reason, delay): the resource logs a failed login its own way.
Report = Callable[[str, str, str, float], None]


def account_throttle() -> FailureThrottle:
    """Five free failures per account, then 1 s, 2 s, 4 s... up to a minute."""
    return FailureThrottle(free_failures=5, max_delay=60.0, half_life=600.0)


def address_throttle() -> FailureThrottle:
    """More free failures per address: an office behind one NAT shares it."""
    return FailureThrottle(free_failures=20, max_delay=60.0, half_life=600.0)


def throttled(request: Request, seconds: float) -> dict[str, Any]:
    """Set Retry-After for a 429 and return its JSON body; the caller writes the answer."""
    wait = max(1, math.ceil(seconds))
    request.setHeader(b"retry-after", str(wait).encode("ascii"))
    return {"error": f"too many failed attempts; retry in {wait} s"}


class Reply:
    """A request waiting for a password check: nothing is written once its client has gone."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._gone: list[Failure] = []
        request.notifyFinish().addErrback(self._gone.append)

    @property
    def gone(self) -> bool:
        return bool(self._gone)

    def send(self, body: bytes) -> None:
        if not self._gone:
            self.request.setHeader(b"content-length", str(len(body)).encode("ascii"))
            self.request.write(body)
            self.request.finish()


class PasswordGate:
    """Failure throttles per address and account, and the parallel checks per address."""

    def __init__(self, directory: Any, clock: Any, report: Report,
                 accounts: FailureThrottle | None = None, addresses: FailureThrottle | None = None) -> None:
        self.directory = directory
        self.clock = clock
        self.accounts = accounts if accounts is not None else account_throttle()
        self.addresses = addresses if addresses is not None else address_throttle()
        self._report = report
        self._in_flight: Counter[str] = Counter()

    def address_wait(self, address: str, now: float) -> float | None:
        """None if ``address`` may try a password now, else the seconds to say in Retry-After
        (0 when only the parallel checks are full: ``throttled`` rounds that up to 1)."""
        wait = self.addresses.retry_after(address, now)
        if wait > 0 or self._in_flight[address] >= MAX_IN_FLIGHT:
            return wait
        return None

    def account_wait(self, account: JID, now: float) -> float | None:
        """None if ``account`` may be tried now, else the seconds to say in Retry-After."""
        wait = self.accounts.retry_after(str(account), now)
        return wait if wait > 0 else None

    def failed(self, address: str, account: str | None, host: str, reason: str) -> None:
        """Count a failed login against the address (and the account, if one was named)."""
        now = self.clock.seconds()
        delays = [self.addresses.failure(address, now)]
        if account is not None:
            delays.append(self.accounts.failure(account, now))
        self._report(account or "(none)", host, reason, max(delays))

    def verify(self, request: Request, account: JID, password: str, address: str, host: str,
               ok: Callable[[Reply], None], wrong: Callable[[Reply], None],
               error: Callable[[Reply, Failure], None]) -> None:
        """Check ``password`` in the directory, then call ``ok`` (the account's failures are
        forgiven), ``wrong`` (the failure is counted) or ``error`` (the directory could not be
        read, or ``ok``/``wrong`` raised).  The check counts as in flight for ``address`` until
        the directory answers."""
        reply = Reply(request)
        self._in_flight[address] += 1

        def checked(valid: bool) -> None:
            if not valid:
                self.failed(address, str(account), host, "wrong password or disabled account")
                wrong(reply)
                return
            self.accounts.reset(str(account))
            ok(reply)

        def done(result: object) -> object:
            self._in_flight[address] -= 1
            if self._in_flight[address] <= 0:
                del self._in_flight[address]
            return result

        d = self.directory.verify_password(account.local, account.domain, password)
        d.addBoth(done).addCallback(checked).addErrback(lambda failure: error(reply, failure))

"""Tests for unirtc.throttle: free failures, doubling delays, decay, reset, bounded memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.throttle import FailureThrottle, address_key


class FailureThrottleTests(SynchronousTestCase):
    def test_freeFailuresCostNothing(self) -> None:
        """
        If a key fails no more than ``free_failures`` times, no delay is imposed and attempts
        may be checked at once.
        """
        throttle = FailureThrottle(free_failures=3)
        self.assertEqual([throttle.failure("joe", now=100.0) for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertEqual(throttle.retry_after("joe", now=100.0), 0.0)

    def test_delayDoublesThenCaps(self) -> None:
        """
        If failures go on past the free ones, each imposes twice the previous delay, starting at
        ``base_delay`` and never above ``max_delay``.
        """
        throttle = FailureThrottle(free_failures=2, base_delay=1.0, max_delay=10.0, half_life=1e9)
        delays = [throttle.failure("joe", now=0.0) for _ in range(8)]
        self.assertEqual([round(d, 6) for d in delays], [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0])

    def test_retryAfterCountsDown(self) -> None:
        """
        If a key is blocked for a delay, ``retry_after`` is the time left, and 0 once it passed.
        """
        throttle = FailureThrottle(free_failures=0, base_delay=4.0, max_delay=4.0)
        self.assertEqual(throttle.failure("10.0.0.1", now=50.0), 4.0)
        self.assertEqual(throttle.retry_after("10.0.0.1", now=51.0), 3.0)
        self.assertEqual(throttle.retry_after("10.0.0.1", now=54.0), 0.0)
        self.assertEqual(throttle.retry_after("10.0.0.2", now=51.0), 0.0)

    def test_scoreDecaysWithHalfLife(self) -> None:
        """
        If no failure happens for one half-life, the key's score halves; after many half-lives a
        new failure is free again.
        """
        throttle = FailureThrottle(free_failures=3, half_life=100.0)
        for _ in range(4):
            throttle.failure("joe", now=0.0)
        self.assertAlmostEqual(throttle.score("joe", now=100.0), 2.0)
        self.assertEqual(throttle.failure("joe", now=2000.0), 0.0)

    def test_clockGoingBackForgivesNothing(self) -> None:
        """
        If ``now`` is earlier than the last failure (a clock step), the score does not grow nor
        decay, rather than being inflated by a negative exponent.
        """
        throttle = FailureThrottle(half_life=10.0)
        throttle.failure("joe", now=100.0)
        self.assertEqual(throttle.score("joe", now=0.0), 1.0)

    def test_resetForgetsOneKey(self) -> None:
        """
        If a key is reset (a successful login), its score and block are gone; other keys keep theirs.
        """
        throttle = FailureThrottle(free_failures=0)
        throttle.failure("joe", now=0.0)
        throttle.failure("ann", now=0.0)
        throttle.reset("joe")
        throttle.reset("never-seen")
        self.assertEqual(throttle.retry_after("joe", now=0.0), 0.0)
        self.assertGreater(throttle.retry_after("ann", now=0.0), 0.0)

    def test_memoryIsBoundedLeastRecentFirst(self) -> None:
        """
        If more keys fail than ``max_keys``, the least recently failed are forgotten first and the
        most recent stay tracked.
        """
        throttle = FailureThrottle(max_keys=3, half_life=1e9)
        for i in range(10):
            throttle.failure(f"user{i}", now=float(i))
        throttle.failure("user8", now=10.0)
        throttle.failure("new", now=11.0)
        self.assertEqual(len(throttle), 3)
        self.assertAlmostEqual(throttle.score("user9", now=11.0), 1.0)
        self.assertAlmostEqual(throttle.score("user8", now=11.0), 2.0)
        self.assertEqual(throttle.score("user7", now=11.0), 0.0)

    def test_pruneDropsForgivenKeys(self) -> None:
        """
        If a key's score decayed to almost nothing and its block passed, ``prune`` drops it.
        """
        throttle = FailureThrottle(half_life=1.0)
        throttle.failure("old", now=0.0)
        throttle.failure("fresh", now=100.0)
        throttle.prune(now=100.0)
        self.assertEqual(len(throttle), 1)
        self.assertEqual(throttle.score("fresh", now=100.0), 1.0)

    def test_hugeScoresStayAtTheCap(self) -> None:
        """
        If a score is far beyond the free failures, the delay is the cap (no overflow).
        """
        throttle = FailureThrottle(free_failures=0, max_delay=30.0)
        self.assertEqual(throttle.delay_for(10_000.0), 30.0)

    def test_rejectsNonsenseParameters(self) -> None:
        """
        If the parameters cannot make a throttle (negative or zero delays, half-life, capacity),
        construction raises ValueError.
        """
        for kwargs in ({"base_delay": 0}, {"max_delay": 0.5}, {"half_life": 0},
                       {"max_keys": 0}, {"free_failures": -1}):
            self.assertRaises(ValueError, FailureThrottle, **kwargs)


class AddressKeyTests(SynchronousTestCase):
    def test_ipv4AndMappedAreTheSameKey(self) -> None:
        """
        If a client connects over IPv4 or as an IPv4-mapped IPv6 address, the key is the IPv4 address.
        """
        self.assertEqual(address_key("192.0.2.7"), "192.0.2.7")
        self.assertEqual(address_key("::ffff:192.0.2.7"), "192.0.2.7")

    def test_ipv6KeyedByPrefix(self) -> None:
        """
        If a client connects over IPv6, every address of its /64 (scope ids too) shares one key.
        """
        self.assertEqual(address_key("2001:db8:1:2::1"), "2001:db8:1:2::/64")
        self.assertEqual(address_key("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64")
        self.assertEqual(address_key("fe80::1%eth0"), "fe80::/64")

    def test_nonAddressIsItsOwnKey(self) -> None:
        """
        If the peer is not an IP address (a UNIX socket path), it is used unchanged.
        """
        self.assertEqual(address_key("/run/unirtc.sock"), "/run/unirtc.sock")


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1e6)), max_size=60))
def test_delayIsAlwaysWithinBounds(events: list[tuple[str, float]]) -> None:
    """If failures arrive for any keys at any times, delays stay in [0, max_delay] and memory in max_keys."""
    throttle = FailureThrottle(free_failures=1, base_delay=0.5, max_delay=20.0, half_life=30.0, max_keys=2)
    for key, now in events:
        delay = throttle.failure(key, now)
        assert 0.0 <= delay <= 20.0
        assert 0.0 <= throttle.retry_after(key, now) <= 20.0
        assert len(throttle) <= 2

"""Tests for unirtc.dns: the SRV and NAPTR records printed for the sample and variants of it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import load_settings
from unirtc.settings import Settings
from unirtc.dns import endpoint_port, zone_records

SAMPLE = Path(__file__).parent.parent.parent / "etc" / "falcot.ini"
MINIMAL = "[server]\ndomain = falcot.com\n"
_RECORD = re.compile(
    r'\S+\. 3600 IN (SRV \d+ \d+ \d+ [a-z0-9.-]+\.|NAPTR \d+ 0 "s" "SIPS?\+D2[TU]" "" \S+\.)'
)


class _ZoneCase(SynchronousTestCase):
    def setUp(self) -> None:
        # trial's mktemp() is relative to the working directory (the checkout, under pytest).
        scratch = tempfile.mkdtemp(prefix="unirtc-dns-")
        self.addCleanup(shutil.rmtree, scratch, True)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(scratch)

    def load(self, extra: str) -> Settings:
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        (folder / "unirtc.ini").write_text(MINIMAL + extra, encoding="utf-8")
        return load_settings(folder / "unirtc.ini")

    def records(self, extra: str) -> list[str]:
        return zone_records(self.load(extra))


class SampleZoneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.records = zone_records(load_settings(SAMPLE))

    def test_xmppRecords(self) -> None:
        """
        If the sample is loaded, clients find falcot.com on 5222 (STARTTLS) and 5223 (direct TLS),
        and servers find both falcot.com and conference.falcot.com on 5269.
        """
        for record in ("_xmpp-client._tcp.falcot.com. 3600 IN SRV 0 5 5222 falcot.com.",
                       "_xmpps-client._tcp.falcot.com. 3600 IN SRV 0 5 5223 falcot.com.",
                       "_xmpp-server._tcp.falcot.com. 3600 IN SRV 0 5 5269 falcot.com.",
                       "_xmpp-server._tcp.conference.falcot.com. 3600 IN SRV 0 5 5269 falcot.com."):
            self.assertIn(record, self.records)
        self.assertFalse([r for r in self.records if r.startswith("_xmpp-client._tcp.conference")])

    def test_sipNaptrAndSrvPerTransportAndDomain(self) -> None:
        """
        If the sample is loaded, each SIP domain gets a NAPTR and an SRV record per transport,
        SIPS over TLS first, then TCP, then UDP, with the listeners' ports.
        """
        for domain in ("falcot.com", "sip.falcot.com"):
            expected = [
                f'{domain}. 3600 IN NAPTR 10 0 "s" "SIPS+D2T" "" _sips._tcp.{domain}.',
                f"_sips._tcp.{domain}. 3600 IN SRV 0 5 5061 sip.falcot.com.",
                f'{domain}. 3600 IN NAPTR 20 0 "s" "SIP+D2T" "" _sip._tcp.{domain}.',
                f"_sip._tcp.{domain}. 3600 IN SRV 0 5 5060 sip.falcot.com.",
                f'{domain}. 3600 IN NAPTR 30 0 "s" "SIP+D2U" "" _sip._udp.{domain}.',
                f"_sip._udp.{domain}. 3600 IN SRV 0 5 5060 sip.falcot.com.",
            ]
            positions = [self.records.index(record) for record in expected]
            self.assertEqual(positions, sorted(positions))
        self.assertEqual(len([r for r in self.records if " NAPTR " in r]), 6)

    def test_stunRecord(self) -> None:
        """
        If the sample is loaded, the embedded STUN responder is published on udp 3478.
        """
        self.assertIn("_stun._udp.falcot.com. 3600 IN SRV 0 5 3478 falcot.com.", self.records)

    def test_turnRecordsFromUris(self) -> None:
        """
        If the sample is loaded, its TURN URIs become UDP and TCP records for
        turn-server.falcot.com on port 3467.
        """
        turn = [r for r in self.records if r.startswith("_turn")]
        self.assertEqual(turn, [
            "_turn._udp.falcot.com. 3600 IN SRV 0 5 3467 turn-server.falcot.com.",
            "_turn._tcp.falcot.com. 3600 IN SRV 0 5 3467 turn-server.falcot.com.",
        ])

    def test_recordsAreZoneLinesWithoutDuplicates(self) -> None:
        """
        If the sample is loaded, every record is one SRV or NAPTR zone-file line, each only once.
        """
        self.assertEqual(len(self.records), 19)
        self.assertEqual(len(set(self.records)), len(self.records))
        for record in self.records:
            self.assertTrue(_RECORD.fullmatch(record), record)


class ListenerZoneTests(_ZoneCase):
    def test_disabledListenerHasNoRecord(self) -> None:
        """
        If a listener is disabled, its service has no record, and the others keep theirs.
        """
        records = self.records("[xmpp]\nc2s_direct_tls =\ns2s =\n[turn]\nstun =\n")
        disabled = ("_xmpps-client", "_xmpp-server", "_stun")
        self.assertFalse([r for r in records if r.startswith(disabled)])
        self.assertIn("_xmpp-client._tcp.falcot.com. 3600 IN SRV 0 5 5222 falcot.com.", records)

    def test_sipTransportsFollowListeners(self) -> None:
        """
        If SIP listens on UDP only, only UDP records appear; with no SIP listener, none at all.
        """
        records = self.records("[sip]\nlisten = udp:5070\n")
        sip = [r for r in records if "_sip" in r]
        self.assertEqual(sip, [
            'falcot.com. 3600 IN NAPTR 30 0 "s" "SIP+D2U" "" _sip._udp.falcot.com.',
            "_sip._udp.falcot.com. 3600 IN SRV 0 5 5070 falcot.com.",
        ])
        none = self.records("[sip]\nlisten =\n")
        self.assertFalse([r for r in none if "_sip" in r or "NAPTR" in r])

    def test_listenerPortsAreUsed(self) -> None:
        """
        If listeners have other ports, escaped interfaces or tcp6, the records carry those ports.
        """
        records = self.records("[xmpp]\nc2s = tcp:5322:interface=\\:\\:\ns2s = tcp6:5369\n"
                               "[turn]\nstun = udp:3479:interface=::1\n")
        self.assertIn("_xmpp-client._tcp.falcot.com. 3600 IN SRV 0 5 5322 falcot.com.", records)
        self.assertIn("_xmpp-server._tcp.conference.falcot.com. 3600 IN SRV 0 5 5369 falcot.com.",
                      records)
        self.assertIn("_stun._udp.falcot.com. 3600 IN SRV 0 5 3479 falcot.com.", records)

    def test_unixListenerHasNoRecord(self) -> None:
        """
        If a listener is a UNIX socket, it has no port and so no record.
        """
        records = self.records("[xmpp]\nc2s = unix:/run/unirtc/c2s.sock\n")
        self.assertFalse([r for r in records if r.startswith("_xmpp-client")])

    def test_endpointPort(self) -> None:
        """
        If a description is a TCP endpoint its port is returned; empty or UNIX gives None.
        """
        self.assertEqual(endpoint_port("tcp:5222"), 5222)
        self.assertEqual(endpoint_port("tcp:5222:interface=\\:\\:"), 5222)
        self.assertEqual(endpoint_port("tcp6:port=5269"), 5269)
        self.assertIsNone(endpoint_port(""))
        self.assertIsNone(endpoint_port("unix:/run/unirtc.sock"))


class TurnZoneTests(_ZoneCase):
    def test_turnDefaults(self) -> None:
        """
        If [turn] uris is absent, TURN records point at the account domain on 3478.
        """
        records = self.records("")
        self.assertIn("_turn._udp.falcot.com. 3600 IN SRV 0 5 3478 falcot.com.", records)
        self.assertIn("_turn._tcp.falcot.com. 3600 IN SRV 0 5 3478 falcot.com.", records)

    def test_turnsAndDefaultPorts(self) -> None:
        """
        If URIs omit the port or transport, turn: means UDP on 3478 and turns: TCP on 5349; a
        stated transport is honoured.
        """
        records = self.records("[turn]\nuris = turn:relay.falcot.com turns:relay.falcot.com "
                               "turns:relay.falcot.com:443?transport=udp\n")
        turn = [r for r in records if r.startswith("_turn")]
        self.assertEqual(turn, ["_turn._udp.falcot.com. 3600 IN SRV 0 5 3478 relay.falcot.com.",
                                "_turns._tcp.falcot.com. 3600 IN SRV 0 5 5349 relay.falcot.com.",
                                "_turns._udp.falcot.com. 3600 IN SRV 0 5 443 relay.falcot.com."])

    def test_addressUrisHaveNoRecord(self) -> None:
        """
        If a TURN URI holds an IP address, it has no SRV record, as SRV targets are host names;
        stun: URIs add none either.
        """
        records = self.records("[turn]\nuris = turn:192.0.2.7:3478 turns:[2001:db8::7] "
                               "stun:stun.falcot.com\n")
        self.assertFalse([r for r in records if r.startswith("_turn") or "stun.falcot.com" in r])

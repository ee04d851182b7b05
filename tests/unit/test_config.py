"""Tests for unirtc.config: defaults, the documented sample, path resolution and error messages."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.config import KNOWN_KEYS, ConfigError, load_settings
from unirtc.settings import IceUri, Settings, SipListener, UdpListener, parse_ice_uri
from unirtc.dns import zone_records
from unirtc.xmpp.jid import JID

SAMPLE = Path(__file__).parent.parent.parent / "etc" / "falcot.ini"
MINIMAL = "[server]\ndomain = falcot.com\n"


class _ConfigCase(SynchronousTestCase):
    """Writes configs into self.mktemp() folders, from a scratch working directory.

    trial's mktemp() is relative to the working directory, which under pytest is the checkout.
    """

    def setUp(self) -> None:
        scratch = tempfile.mkdtemp(prefix="unirtc-config-")
        self.addCleanup(shutil.rmtree, scratch, True)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(scratch)

    def folder(self) -> Path:
        path = Path(self.mktemp()).absolute()
        path.mkdir()
        return path

    def write(self, text: str, folder: Path | None = None) -> Path:
        path = (folder or self.folder()) / "unirtc.ini"
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, extra: str = "", folder: Path | None = None) -> Settings:
        return load_settings(self.write(MINIMAL + extra, folder))

    def error(
        self, text: str, section: str | None, key: str | None, *fragments: str
    ) -> ConfigError:
        """Load text, expect a ConfigError naming the file, section and key, and every fragment."""
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_settings, path)
        message = str(error)
        self.assertTrue(message.startswith(f"{path}: "), message)
        self.assertEqual((error.path, error.section, error.key), (path, section, key))
        if section is not None:
            self.assertIn(f"[{section}]" + (f" {key}:" if key else ":"), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error

    def bad(self, extra: str, section: str, key: str | None, *fragments: str) -> ConfigError:
        """The minimal config plus extra must fail, naming section and key."""
        return self.error(MINIMAL + extra, section, key, *fragments)


class DefaultsTests(_ConfigCase):
    def test_stateDirIsVarBesideTheFile(self) -> None:
        """
        If only [server] domain is set, state, database, certificate and key live in var/ beside
        the file.
        """
        folder = self.folder()
        config = self.load(folder=folder)
        state = (folder / "var").resolve()
        self.assertEqual(config.server.state_dir, state)
        self.assertEqual(config.server.database, f"sqlite:///{state / 'unirtc.sqlite'}")
        self.assertTrue(config.server.database.startswith("sqlite:////"))
        self.assertEqual(config.tls.certificate, state / "certificate.pem")
        self.assertEqual(config.tls.key, state / "key.pem")
        self.assertTrue(config.tls.self_signed)
        self.assertIsNone(config.tls.ca)

    def test_serverDefaults(self) -> None:
        """
        If only [server] domain is set, the domain is kept, there are no admins or plugin paths,
        and the log level is info.
        """
        server = self.load().server
        self.assertEqual(server.domain, "falcot.com")
        self.assertEqual(server.admins, ())
        self.assertEqual(server.plugin_paths, ())
        self.assertEqual(server.log_level, "info")

    def test_xmppDefaults(self) -> None:
        """
        If [xmpp] is absent, clients listen on tcp:5222 and tcp:5223, servers on tcp:5269, every
        bundled plugin loads (None) and stanzas are bounded at 256 KiB.
        """
        xmpp = self.load().xmpp
        self.assertEqual(xmpp.c2s, "tcp:5222")
        self.assertEqual(xmpp.c2s_direct_tls, "tcp:5223")
        self.assertEqual(xmpp.s2s, "tcp:5269")
        self.assertIsNone(xmpp.plugins)
        self.assertEqual(xmpp.max_stanza_size, 262144)

    def test_mucAndFederationDefaults(self) -> None:
        """
        If [muc] and [s2s] are absent, MUC is conference.<domain>, there are no static routes and
        federation requires encryption with dialback as the fallback.
        """
        config = self.load()
        self.assertEqual(config.muc.domain, "conference.falcot.com")
        self.assertEqual(config.s2s.hosts, {})
        self.assertTrue(config.s2s.require_encryption)
        self.assertTrue(config.s2s.dialback)
        self.assertEqual(config.components.listen, "tcp:5347:interface=127.0.0.1")
        self.assertEqual(config.components.secrets, {})

    def test_sipDefaults(self) -> None:
        """
        If [sip] is absent, the account domain is the only SIP domain, on udp:5060, tcp:5060 and
        tls:5061.
        """
        sip = self.load().sip
        self.assertEqual(sip.domains, ("falcot.com",))
        self.assertEqual(
            sip.listen,
            (SipListener("udp", 5060), SipListener("tcp", 5060), SipListener("tls", 5061)),
        )
        self.assertEqual([str(each) for each in sip.listen], ["udp:5060", "tcp:5060", "tls:5061"])

    def test_turnAndWebDefaults(self) -> None:
        """
        If [turn] and [web] are absent, STUN answers on udp:3478, credentials last a day with no
        secret, URIs point at the domain, and the web listener is tcp:5281 with TLS.
        """
        config = self.load()
        self.assertEqual(config.turn.stun, UdpListener(3478))
        self.assertEqual(str(config.turn.stun), "udp:3478")
        self.assertEqual(config.turn.ttl, 86400)
        self.assertIsNone(config.turn.secret)
        self.assertEqual(config.turn.realm, "falcot.com")
        self.assertEqual(config.turn.uris, ("stun:falcot.com:3478",
                                            "turn:falcot.com:3478?transport=udp",
                                            "turn:falcot.com:3478?transport=tcp"))
        self.assertEqual((config.web.listen, config.web.tls), ("tcp:5281", True))


class SampleTests(SynchronousTestCase):
    def test_sampleHoldsTheHandbookValues(self) -> None:
        """
        If etc/falcot.ini is loaded, it gives the handbook's domain, administrator, conference and
        SIP alias domains.
        """
        config = load_settings(SAMPLE)
        self.assertEqual(config.path, SAMPLE.absolute())
        self.assertEqual(config.server.domain, "falcot.com")
        self.assertEqual(config.server.admins, (JID.parse("joe@falcot.com"),))
        self.assertEqual(config.muc.domain, "conference.falcot.com")
        self.assertEqual(config.sip.domains, ("falcot.com", "sip.falcot.com"))
        self.assertEqual(config.served_domains,
                         ["falcot.com", "conference.falcot.com", "sip.falcot.com"])

    def test_sampleTurnUris(self) -> None:
        """
        If etc/falcot.ini is loaded, the TURN URIs are the handbook's turn-server.falcot.com:3467
        over STUN, TURN/UDP and TURN/TCP.
        """
        uris = load_settings(SAMPLE).turn.uris
        self.assertEqual(uris, ("stun:turn-server.falcot.com:3467",
                                "turn:turn-server.falcot.com:3467?transport=udp",
                                "turn:turn-server.falcot.com:3467?transport=tcp"))

    def test_sampleDocumentsEveryKnownKey(self) -> None:
        """
        If a key appears in etc/falcot.ini, set or commented out, the loader knows it, and every
        key the loader knows is documented there.
        """
        section, documented = "", set()
        for line in SAMPLE.read_text(encoding="utf-8").splitlines():
            if header := re.fullmatch(r"\[(\w+)\]", line):
                section = header.group(1)
            elif key := re.fullmatch(r"#?([a-z0-9_]+) =.*", line):
                documented.add((section, key.group(1)))
        known = {(section, key) for section, keys in KNOWN_KEYS.items() for key in keys}
        self.assertEqual(documented, known)


class PathTests(_ConfigCase):
    def test_relativePathsFollowTheConfigFolder(self) -> None:
        """
        If paths are relative, they resolve against the config file's folder, not the working
        directory.
        """
        folder = self.folder()
        (folder / "turn-secret").write_text("s3cret\n")
        path = self.write(MINIMAL + "state_dir = state\nplugin_paths = extra, more\n"
                          "database = sqlite:///db/unirtc.sqlite?timeout=5\n"
                          "[tls]\ncertificate = certs/fullchain.pem\nkey = certs/key.pem\n"
                          "ca = ca.pem\n[turn]\nsecret_file = turn-secret\n", folder)
        os.chdir(self.folder())
        config = load_settings(path)
        base = folder.resolve()
        self.assertEqual(config.server.state_dir, base / "state")
        self.assertEqual(config.server.plugin_paths, (base / "extra", base / "more"))
        self.assertEqual(config.server.database,
                         f"sqlite:///{base / 'db' / 'unirtc.sqlite'}?timeout=5")
        self.assertEqual(config.tls.certificate, base / "certs" / "fullchain.pem")
        self.assertEqual(config.tls.key, base / "certs" / "key.pem")
        self.assertEqual(config.tls.ca, base / "ca.pem")
        self.assertEqual(config.turn.secret, "s3cret")

    def test_relativeConfigPathIsMadeAbsolute(self) -> None:
        """
        If the config path itself is relative, it is taken from the working directory at load time
        and stored absolute, with var/ beside it.
        """
        folder = self.folder()
        self.write(MINIMAL, folder)
        os.chdir(folder)
        config = load_settings("unirtc.ini")
        self.assertEqual(config.path, folder / "unirtc.ini")
        self.assertEqual(config.server.state_dir, folder.resolve() / "var")

    def test_absolutePathsAndUrlsAreKept(self) -> None:
        """
        If paths and database URLs are absolute, or the database is not a SQLite file, they are
        kept as written.
        """
        postgres = "postgresql+psycopg://u:p@db/unirtc"
        config = self.load(f"state_dir = /var/lib/unirtc\ndatabase = {postgres}\n")
        self.assertEqual(config.server.state_dir, Path("/var/lib/unirtc"))
        self.assertEqual(config.tls.key, Path("/var/lib/unirtc/key.pem"))
        self.assertEqual(config.server.database, postgres)
        for url in ("sqlite:////srv/u.sqlite", "sqlite://", "sqlite:///:memory:"):
            self.assertEqual(self.load(f"database = {url}\n").server.database, url)


class FileErrorTests(_ConfigCase):
    def test_missingFile(self) -> None:
        """
        If the file does not exist, the error names it and says so.
        """
        path = self.folder() / "absent.ini"
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertEqual(str(error), f"{path}: configuration file not found")

    def test_notIni(self) -> None:
        """
        If the file has lines before any section header, a line that is not key = value, or
        bytes that are not UTF-8 or NUL, the error says an INI file was expected.
        """
        self.error("domain = falcot.com\n", None, None, "line 1 comes before any [section] header")
        self.error(MINIMAL + "just words\n", None, None, "line 3", "'just words", "key = value")
        self.error("\x00" + MINIMAL, None, None, "NUL", "[section] headers")
        path = self.folder() / "binary.ini"
        path.write_bytes(b"[server]\ndomain = \xff\xfe\n")
        self.assertIn("UTF-8", str(self.assertRaises(ConfigError, load_settings, path)))

    def test_duplicateKey(self) -> None:
        """
        If a key is set twice in a section, the error names the section, the key and the line.
        """
        self.bad("domain = example.org\n", "server", "domain", "line 3", "once per section")

    def test_duplicateSection(self) -> None:
        """
        If a section appears twice, the error names it and the line.
        """
        self.bad("[server]\nadmins = joe@falcot.com\n", "server", None, "line 3", "once")

    def test_unknownSection(self) -> None:
        """
        If a section is unknown, even [DEFAULT], the error names it and lists the known sections.
        """
        self.bad("[xmmp]\nc2s = tcp:5222\n", "xmmp", None, "unknown section", "[xmpp]")
        self.error("[DEFAULT]\ndomain = falcot.com\n[server]\n", "DEFAULT", None, "unknown section")

    def test_unknownKey(self) -> None:
        """
        If a key is unknown, the error names it and lists the keys its section takes.
        """
        self.bad("[turn]\nsecrets = x\n", "turn", "secrets", "unknown key",
                 "secret, secret_file, realm, ttl, uris, stun")


class ValueErrorTests(_ConfigCase):
    def test_missingDomain(self) -> None:
        """
        If [server] domain is missing or empty, the error says it is required with an example.
        """
        for text in ("", "[server]\n", "[server]\ndomain =\n", "[xmpp]\n"):
            self.error(text, "server", "domain", "required", "falcot.com")

    def test_invalidDomain(self) -> None:
        """
        If a domain is not a valid domain name, the error quotes it.
        """
        self.error("[server]\ndomain = falcot..com\n", "server", "domain",
                   "invalid domain 'falcot..com'")
        self.bad("[muc]\ndomain = con ference\n", "muc", "domain", "invalid domain")
        self.bad("[sip]\ndomains = sip_falcot!com\n", "sip", "domains", "invalid domain")

    def test_domainIsNormalized(self) -> None:
        """
        If domains have capitals, they are lowercased like JIDs.
        """
        path = self.write("[server]\ndomain = Falcot.COM\n[muc]\ndomain = Chat.Falcot.com\n")
        config = load_settings(path)
        self.assertEqual(config.server.domain, "falcot.com")
        self.assertEqual(config.muc.domain, "chat.falcot.com")

    def test_badBoolean(self) -> None:
        """
        If a boolean is not yes/no, the error quotes the value and asks for yes or no.
        """
        self.bad("[s2s]\ndialback = maybe\n", "s2s", "dialback", "expected yes or no", "'maybe'")
        config = self.load("[s2s]\ndialback = off\n[web]\ntls = No\n")
        self.assertEqual((config.s2s.dialback, config.web.tls), (False, False))

    def test_badInteger(self) -> None:
        """
        If an integer is not one, the error quotes the value, cut short when huge.
        """
        self.bad("[turn]\nttl = one day\n", "turn", "ttl", "expected an integer", "'one day'")
        huge = "9" * 100_000
        error = self.bad(f"[turn]\nttl = {huge}\n", "turn", "ttl", "expected an integer")
        self.assertLess(len(str(error)), 400)
        self.assertEqual(self.load("[turn]\nttl = 3600\n").turn.ttl, 3600)

    def test_tooSmallMaxStanzaSize(self) -> None:
        """
        If max_stanza_size is below the floor, the error states the minimum.
        """
        self.bad("[xmpp]\nmax_stanza_size = 512\n", "xmpp", "max_stanza_size", ">= 10000", "512")
        self.assertEqual(self.load("[xmpp]\nmax_stanza_size = 10000\n").xmpp.max_stanza_size, 10000)

    def test_badLogLevel(self) -> None:
        """
        If log_level is not a known level, the error lists the levels; case does not matter.
        """
        self.bad("log_level = verbose\n", "server", "log_level", "debug, info, warn", "'verbose'")
        self.assertEqual(self.load("log_level = DEBUG\n").server.log_level, "debug")

    def test_databaseNotAUrl(self) -> None:
        """
        If the database is not a URL, the error shows an SQLAlchemy URL.
        """
        self.bad("database = /var/lib/unirtc.sqlite\n", "server", "database",
                 "SQLAlchemy URL", "sqlite:////")

    def test_invalidAdmin(self) -> None:
        """
        If an admin is not a user@domain JID, the error quotes it; resources are dropped.
        """
        self.bad("admins = joe@@falcot.com\n", "server", "admins", "invalid JID 'joe@@falcot.com'")
        self.bad("admins = falcot.com\n", "server", "admins", "user@domain")
        config = self.load("admins = Joe@falcot.com/laptop, anna@falcot.com\n")
        self.assertEqual(config.server.admins,
                         (JID.parse("joe@falcot.com"), JID.parse("anna@falcot.com")))


class ListenerTests(_ConfigCase):
    def test_unescapedIpv6InterfaceIsAnError(self) -> None:
        """
        If a stream listener has an unescaped IPv6 interface, the error says colons must be escaped.
        """
        self.bad("[xmpp]\nc2s = tcp:5222:interface=::\n", "xmpp", "c2s", "escape colons",
                 "tcp:5222:interface=\\:\\:", "got 'tcp:5222:interface=::'")

    def test_unknownEndpointType(self) -> None:
        """
        If a stream listener has an unknown type, a bad port, a stray backslash or is ssl:, the
        error shows the expected form.
        """
        self.bad("[xmpp]\ns2s = foo:1\n", "xmpp", "s2s", "Twisted endpoint", "'foo:1'")
        self.bad("[web]\nlisten = tcp:99999\n", "web", "listen", "0-65535")
        self.bad("[xmpp]\nc2s_direct_tls = ssl:5223\n", "xmpp", "c2s_direct_tls", "[tls]")
        self.bad("[components]\nlisten = tcp:5347\\\n", "components", "listen", "Twisted endpoint")

    def test_escapedAndIpv6EndpointsAccepted(self) -> None:
        """
        If stream listeners use escaped colons or tcp6:, they are kept as written.
        """
        xmpp = self.load("[xmpp]\nc2s = tcp:5222:interface=\\:\\:\ns2s = tcp6:5269\n").xmpp
        self.assertEqual((xmpp.c2s, xmpp.s2s), ("tcp:5222:interface=\\:\\:", "tcp6:5269"))

    def test_emptyListenerDisablesIt(self) -> None:
        """
        If a listener's value is empty, that listener is disabled.
        """
        config = self.load("[xmpp]\nc2s_direct_tls =\n[components]\nlisten =\n[sip]\nlisten =\n"
                           "[turn]\nstun =\n[web]\nlisten =\n")
        self.assertEqual(config.xmpp.c2s_direct_tls, "")
        self.assertEqual(config.xmpp.c2s, "tcp:5222")
        self.assertEqual((config.components.listen, config.web.listen), ("", ""))
        self.assertEqual(config.sip.listen, ())
        self.assertIsNone(config.turn.stun)

    def test_badSipListener(self) -> None:
        """
        If a SIP listener has an unknown transport, a port outside 1-65535 or no port, the error
        shows the expected form.
        """
        self.bad("[sip]\nlisten = sctp:5060\n", "sip", "listen", "unknown SIP transport",
                 "udp, tcp, tls")
        for word in ("udp:99999", "udp", "udp:0", "udp:5060:iface=x", "udp:5060:interface="):
            self.bad(f"[sip]\nlisten = {word}\n", "sip", "listen",
                     "TRANSPORT:PORT[:interface=ADDR]", repr(word))

    def test_sipListenerIpv6Interface(self) -> None:
        """
        If a SIP listener names an IPv6 interface, escaped or not, it is accepted unescaped.
        """
        for word in ("udp:5060:interface=\\:\\:1", "udp:5060:interface=::1"):
            listen = self.load(f"[sip]\nlisten = {word} tls:5061\n").sip.listen
            self.assertEqual(listen, (SipListener("udp", 5060, "::1"), SipListener("tls", 5061)))
            self.assertEqual(str(listen[0]), "udp:5060:interface=::1")

    def test_stunListener(self) -> None:
        """
        If the STUN responder is not udp:PORT, the error says so; an interface is kept.
        """
        self.bad("[turn]\nstun = tcp:3478\n", "turn", "stun", "udp:PORT")
        self.bad("[turn]\nstun = udp:3478:x\n", "turn", "stun", "TRANSPORT:PORT")
        stun = self.load("[turn]\nstun = udp:3479:interface=192.0.2.1\n").turn.stun
        self.assertEqual(stun, UdpListener(3479, "192.0.2.1"))


class TurnTests(_ConfigCase):
    def secret_file(self, content: bytes) -> str:
        path = self.folder() / "secret"
        path.write_bytes(content)
        return f"[turn]\nsecret_file = {path}\n"

    def test_secretAndSecretFileBothSet(self) -> None:
        """
        If both secret and secret_file are set, the error says to pick one.
        """
        self.bad("[turn]\nsecret = a\nsecret_file = /etc/unirtc/turn-secret\n", "turn",
                 "secret_file", "either secret or secret_file")

    def test_secretFromFileIsStripped(self) -> None:
        """
        If secret_file holds the secret amid whitespace, the secret is the stripped text.
        """
        self.assertEqual(self.load(self.secret_file(b"  s3cret\n\n")).turn.secret, "s3cret")
        self.assertEqual(self.load("[turn]\nsecret = inline\n").turn.secret, "inline")

    def test_unreadableSecretFile(self) -> None:
        """
        If secret_file is missing, a folder, empty, not UTF-8 or huge, the error names its path.
        """
        missing = self.folder() / "absent"
        self.bad(f"[turn]\nsecret_file = {missing}\n", "turn", "secret_file",
                 f"cannot read {missing}")
        self.bad(f"[turn]\nsecret_file = {self.folder()}\n", "turn", "secret_file", "cannot read")
        self.bad(self.secret_file(b" \n"), "turn", "secret_file", "is empty")
        self.bad(self.secret_file(b"\xff\xfe\x00"), "turn", "secret_file", "not UTF-8")
        self.bad(self.secret_file(b"x" * 100_000), "turn", "secret_file", "over 4096 bytes")

    def test_badTurnUri(self) -> None:
        """
        If a TURN URI is not a stun:/turn: URI with a valid host, port and transport, the error
        quotes it.
        """
        for uri in ("http://turn.falcot.com", "turn:", "turn:h:99999", "turn:h:abc", "turn:[::1",
                    "turn:[not-v6]:3478", "turn:h?transport=sctp", "stun:h?transport=udp",
                    "turn://h:3478"):
            self.bad(f"[turn]\nuris = {uri}\n", "turn", "uris", repr(uri))

    def test_parseIceUri(self) -> None:
        """
        If a URI is valid, it splits into scheme, host, port and transport with RFC 7064/7065
        defaults: 3478 and UDP, or 5349 and TCP for the TLS schemes.
        """
        self.assertEqual(parse_ice_uri("turn:Turn-Server.falcot.com:3467?transport=tcp"),
                         IceUri("turn", "turn-server.falcot.com", 3467, "tcp"))
        self.assertEqual(parse_ice_uri("turn:falcot.com"),
                         IceUri("turn", "falcot.com", 3478, "udp"))
        self.assertEqual(parse_ice_uri("turns:falcot.com"),
                         IceUri("turns", "falcot.com", 5349, "tcp"))
        self.assertEqual(parse_ice_uri("stun:192.0.2.1"), IceUri("stun", "192.0.2.1", 3478, "udp"))
        v6 = parse_ice_uri("turns:[2001:DB8::1]:443?transport=udp")
        self.assertEqual(v6, IceUri("turns", "2001:db8::1", 443, "udp"))
        self.assertTrue(v6.is_address)
        self.assertFalse(parse_ice_uri("stun:falcot.com").is_address)


class SectionTests(_ConfigCase):
    def test_componentNameMustBeADomain(self) -> None:
        """
        If a [components] name is not a domain, the error names that key.
        """
        self.bad("[components]\nbot falcot = s\n", "components", "bot falcot", "must be a domain")

    def test_emptyComponentSecret(self) -> None:
        """
        If a component's secret is empty, the error names the component.
        """
        self.bad("[components]\nbot.falcot.com =\n", "components", "bot.falcot.com",
                 "secret is empty")

    def test_components(self) -> None:
        """
        If components are listed, each domain maps to its secret, with the listener kept apart.
        """
        config = self.load("[components]\nlisten = tcp:5347\nBot.falcot.com = Secret\n")
        self.assertEqual(config.components.listen, "tcp:5347")
        self.assertEqual(config.components.secrets, {"bot.falcot.com": "Secret"})

    def test_s2sHosts(self) -> None:
        """
        If [s2s] hosts lists routes, each gives a host and port: 5269 by default, IPv6 in brackets.
        """
        config = self.load("[s2s]\nhosts = example.org=192.0.2.10:5270 Example.NET=[::1]:5270, "
                           "debian.org=xmpp.debian.org [2001:db8::1]=[2001:DB8::2]\n")
        self.assertEqual(config.s2s.hosts, {
            "example.org": ("192.0.2.10", 5270),
            "example.net": ("::1", 5270),
            "debian.org": ("xmpp.debian.org", 5269),
            "[2001:db8::1]": ("2001:db8::2", 5269),
        })

    def test_badS2sHosts(self) -> None:
        """
        If a route is not domain=host[:port], has a port out of range or a bracket that is not
        IPv6, the error quotes it.
        """
        for word in ("example.org", "example.org=::1", "example.org=h:0", "example.org=h:70000",
                     "example.org=[h]:5269", "bad_domain!=h"):
            self.bad(f"[s2s]\nhosts = {word}\n", "s2s", "hosts", repr(word))

    def test_pluginsSplitAndDeduplicated(self) -> None:
        """
        If plugins are listed with spaces and commas, they are split and de-duplicated in order;
        an empty list loads none.
        """
        config = self.load("[xmpp]\nplugins = ping, version muc,,ping  disco\n")
        self.assertEqual(config.xmpp.plugins, ("ping", "version", "muc", "disco"))
        self.assertEqual(self.load("[xmpp]\nplugins =\n").xmpp.plugins, ())

    def test_sipDomains(self) -> None:
        """
        If SIP domains omit the account domain or repeat one, the account domain comes first and
        each appears once.
        """
        config = self.load("[sip]\ndomains = sip.falcot.com SIP.falcot.com, voip.falcot.com\n")
        self.assertEqual(config.sip.domains, ("falcot.com", "sip.falcot.com", "voip.falcot.com"))

    def test_servedDomainsDeduplicatedAndOrdered(self) -> None:
        """
        If the account, MUC and SIP domains overlap, served_domains lists each once: account,
        MUC, then SIP order.
        """
        config = self.load("[muc]\ndomain = muc.falcot.com\n[sip]\n"
                           "domains = muc.falcot.com sip.falcot.com falcot.com\n")
        self.assertEqual(config.served_domains,
                         ["falcot.com", "muc.falcot.com", "sip.falcot.com"])


_ONE_LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                    max_size=60)
_SECTION_KEYS = [(section, key) for section, keys in KNOWN_KEYS.items() for key in keys]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_SECTION_KEYS), _ONE_LINE), max_size=4))
def test_anyValueGivesSettingsOrConfigError(entries: list[tuple[tuple[str, str], str]]) -> None:
    """If any known key holds any one-line value, loading gives Settings or ConfigError, and
    Settings always yield DNS records."""
    sections: dict[str, dict[str, str]] = {"server": {"domain": "falcot.com"}}
    for (section, key), value in entries:
        sections.setdefault(section, {})[key] = value
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   for name, keys in sections.items())
    folder = tempfile.mkdtemp(prefix="unirtc-config-")
    try:
        path = Path(folder) / "unirtc.ini"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_settings(path)
        except ConfigError as e:
            assert str(e).startswith(f"{path}: ")
        else:
            assert all(record.endswith(".") for record in zone_records(loaded))
    finally:
        shutil.rmtree(folder, True)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_anyBytesGiveSettingsOrConfigError(data: bytes) -> None:
    """If the file holds arbitrary bytes, loading gives Settings or ConfigError, nothing else."""
    folder = tempfile.mkdtemp(prefix="unirtc-config-")
    try:
        path = Path(folder) / "unirtc.ini"
        path.write_bytes(b"[server]\ndomain = falcot.com\n" + data)
        try:
            load_settings(path)
        except ConfigError:
            pass
    finally:
        shutil.rmtree(folder, True)

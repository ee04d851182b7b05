"""The INI file turned into typed, validated settings.

Every key has a default, so a file holding only ``[server] domain = falcot.com`` runs the whole
server.  Errors name the file, section and key with the form expected; unknown sections and keys
are errors too, because a misspelt key silently ignored is a security setting silently lost.
Paths are resolved against the config file's folder at load time, before twistd changes directory.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from pathlib import Path

from twisted.internet.endpoints import serverFromString

from unirtc.settings import (
    UdpListener,
    SipListener,
    parse_ice_uri,
    ServerSettings,
    TLSSettings,
    XMPPSettings,
    MUCSettings,
    S2SSettings,
    ComponentSettings,
    SIPSettings,
    TURNSettings,
    WebSettings,
    Settings,
)
from unirtc.xmpp.jid import JID, InvalidJID, normalize_domain

DEFAULT_CONFIG = Path("/etc/unirtc/unirtc.ini")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
SIP_TRANSPORTS = ("udp", "tcp", "tls")
# configparser's [DEFAULT] would silently feed its keys into every section; naming the default
# section something no file can contain makes [DEFAULT] an ordinary, and so unknown, section.
_NO_DEFAULT_SECTION = "\0"
_MAX_SECRET_FILE = 4096
def _quote(value: str, limit: int = 80) -> str:
    """repr() of an offending value, cut short so a huge or hostile value cannot flood the log."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class ConfigError(Exception):
    """A configuration problem, phrased so an administrator can fix it without reading code."""

    def __init__(self, path: Path, section: str | None, key: str | None, message: str) -> None:
        self.path, self.section, self.key, self.problem = path, section, key, message
        where = str(path)
        if section:
            where += f": [{section}]"
        if key:
            where += f" {key}"
        super().__init__(f"{where}: {message}")


# Every section and key this version understands; [components] also takes `name = secret` pairs.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "server": ("domain", "admins", "state_dir", "database", "log_level", "plugin_paths"),
    "tls": ("certificate", "key", "self_signed", "ca"),
    "xmpp": ("c2s", "c2s_direct_tls", "s2s", "plugins", "max_stanza_size", "websocket",
             "offline_max_messages"),
    "muc": ("domain", "restrict_room_creation", "max_history", "max_occupants", "message_rate",
            "message_burst"),
    "s2s": ("hosts", "require_encryption", "dialback"),
    "components": ("listen",),
    "sip": ("domains", "listen", "outbound", "websocket"),
    "turn": ("secret", "secret_file", "realm", "ttl", "uris", "stun"),
    "web": ("listen", "tls", "origins", "jssip", "click_to_call"),
}


class _Reader:
    """Typed getters over one parsed file; each error names file, section and key."""

    def __init__(self, path: Path, parser: configparser.ConfigParser) -> None:
        self.file = path
        self.parser = parser

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(self.file, section, key, message)

    def raw(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            return None
        return self.parser.get(section, key).strip()

    def text(self, section: str, key: str, default: str) -> str:
        value = self.raw(section, key)
        return default if value is None else value

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.raw(section, key)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered in configparser.ConfigParser.BOOLEAN_STATES:
            return configparser.ConfigParser.BOOLEAN_STATES[lowered]
        raise self.error(section, key, f"expected yes or no, got {_quote(value)}")

    def integer(self, section: str, key: str, default: int, minimum: int = 1) -> int:
        value = self.raw(section, key)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(section, key, f"expected an integer, got {_quote(value)}") from None
        if number < minimum:
            raise self.error(section, key, f"expected an integer >= {minimum}, got {number}")
        return number

    def words(self, section: str, key: str) -> list[str] | None:
        value = self.raw(section, key)
        if value is None:
            return None
        return [word for word in re.split(r"[\s,]+", value) if word]

    def path(self, section: str, key: str, default: Path) -> Path:
        value = self.raw(section, key)
        return default if not value else (self.file.parent / value).resolve()

    def domain(self, section: str, key: str, default: str) -> str:
        value = self.text(section, key, default)
        try:
            return normalize_domain(value)
        except InvalidJID as e:
            raise self.error(section, key, f"invalid domain {_quote(value)}: {e}") from None

    def endpoint(self, section: str, key: str, default: str) -> str:
        """A Twisted server endpoint description, or empty for no listener."""
        value = self.text(section, key, default)
        if not value:
            return value
        expected = ("expected a Twisted endpoint such as 'tcp:5222' or 'tcp:5222:interface=\\:\\:' "
                    "(escape colons inside values with a backslash)")
        if value.split(":", 1)[0] in ("ssl", "tls"):
            raise self.error(section, key, f"{expected}; TLS comes from [tls], got {_quote(value)}")
        try:
            parsed = serverFromString(None, value)
        except Exception as e:  # Twisted's parsers raise ValueError, TypeError, OSError...
            raise self.error(section, key, f"{expected}, got {_quote(value)}: {e}") from None
        port = getattr(parsed, "_port", 0)
        if isinstance(port, int) and not 0 <= port < 65536:
            raise self.error(section, key, f"{expected}; port {port} is not in 0-65535")
        return value


def _split_listener(reader: _Reader, section: str, key: str, word: str) -> tuple[str, int, str]:
    """``kind:PORT[:interface=ADDR]`` where ADDR may hold unescaped or escaped IPv6 colons."""
    match = re.fullmatch(r"([a-z]+):(\d{1,5})(?::interface=(.+))?", word)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise reader.error(
            section, key,
            f"expected TRANSPORT:PORT[:interface=ADDR] with PORT in 1-65535, got {_quote(word)}",
        )
    interface = (match.group(3) or "").replace("\\:", ":")
    return match.group(1), int(match.group(2)), interface


def _sip_listeners(reader: _Reader) -> tuple[SipListener, ...]:
    words = reader.words("sip", "listen")
    if words is None:
        words = ["udp:5060", "tcp:5060", "tls:5061"]
    listeners = []
    for word in words:
        transport, port, interface = _split_listener(reader, "sip", "listen", word)
        if transport not in SIP_TRANSPORTS:
            raise reader.error("sip", "listen", f"unknown SIP transport {transport!r} in "
                               f"{_quote(word)}; "
                               f"expected one of {', '.join(SIP_TRANSPORTS)}")
        listeners.append(SipListener(transport, port, interface))
    return tuple(listeners)


def _stun_listener(reader: _Reader) -> UdpListener | None:
    value = reader.text("turn", "stun", "udp:3478")
    if not value:
        return None
    kind, port, interface = _split_listener(reader, "turn", "stun", value)
    if kind != "udp":
        raise reader.error("turn", "stun",
                           f"the embedded STUN responder listens on udp:PORT, got {_quote(value)}")
    return UdpListener(port, interface)


def _s2s_hosts(reader: _Reader) -> dict[str, tuple[str, int]]:
    hosts = {}
    for word in reader.words("s2s", "hosts") or []:
        match = re.fullmatch(r"([^=]+)=(\[[^\]]+\]|[^:\[\]]+)(?::(\d{1,5}))?", word)
        port = int(match.group(3) or 5269) if match else 0
        if not match or not 0 < port < 65536:
            raise reader.error("s2s", "hosts", f"expected domain=host[:port] with port in 1-65535, "
                               f"IPv6 in brackets, got {_quote(word)}")
        try:
            domain = normalize_domain(match.group(1))
        except InvalidJID as e:
            raise reader.error("s2s", "hosts", f"invalid domain in {_quote(word)}: {e}") from None
        host = match.group(2)
        if host.startswith("["):
            try:
                host = str(ipaddress.IPv6Address(host[1:-1]))
            except ValueError:
                raise reader.error("s2s", "hosts", f"expected an IPv6 address inside [...], "
                                   f"got {_quote(word)}") from None
        hosts[domain] = (host, port)
    return hosts


def _components(reader: _Reader) -> ComponentSettings:
    listen = reader.endpoint("components", "listen", "tcp:5347:interface=127.0.0.1")
    secrets = {}
    if reader.parser.has_section("components"):
        for name, secret in reader.parser.items("components"):
            if name == "listen":
                continue
            try:
                domain = normalize_domain(name)
            except InvalidJID as e:
                raise reader.error("components", name,
                                   f"a component name must be a domain: {e}") from None
            if not secret.strip():
                raise reader.error("components", name, "the component secret is empty")
            secrets[domain] = secret.strip()
    return ComponentSettings(listen, secrets)


def _read_secret(reader: _Reader, path: Path) -> str:
    """The stripped UTF-8 text of a small secret file; a huge or binary file is a mistake."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SECRET_FILE + 1)
    except OSError as e:
        raise reader.error("turn", "secret_file", f"cannot read {path}: {e.strerror}") from None
    if len(data) > _MAX_SECRET_FILE:
        raise reader.error("turn", "secret_file", f"{path} is over {_MAX_SECRET_FILE} bytes; "
                           "expected a file holding only the secret")
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise reader.error("turn", "secret_file",
                           f"{path} is not UTF-8 text; expected the secret") from None
    if not secret:
        raise reader.error("turn", "secret_file", f"{path} is empty; expected the secret")
    return secret


def _turn(reader: _Reader, domain: str) -> TURNSettings:
    secret = reader.raw("turn", "secret") or None
    secret_file = reader.raw("turn", "secret_file")
    if secret and secret_file:
        raise reader.error("turn", "secret_file", "set either secret or secret_file, not both")
    if secret_file:
        secret = _read_secret(reader, (reader.file.parent / secret_file).resolve())
    uris = reader.words("turn", "uris")
    if uris is None:
        uris = [f"stun:{domain}:3478", f"turn:{domain}:3478?transport=udp",
                f"turn:{domain}:3478?transport=tcp"]
    for uri in uris:
        try:
            parse_ice_uri(uri)
        except ValueError as e:
            raise reader.error("turn", "uris", f"{e}; got {_quote(uri)}") from None
    return TURNSettings(
        secret=secret,
        realm=reader.text("turn", "realm", domain) or domain,
        ttl=reader.integer("turn", "ttl", 86400, minimum=60),
        uris=tuple(uris),
        stun=_stun_listener(reader),
    )


ROOM_CREATION = ("anyone", "local", "admins")


def _muc(reader: _Reader, domain: str) -> MUCSettings:
    creation = reader.text("muc", "restrict_room_creation", "local").lower() or "local"
    if creation not in ROOM_CREATION:
        raise reader.error("muc", "restrict_room_creation",
                           f"expected one of {', '.join(ROOM_CREATION)}, got {_quote(creation)}")
    return MUCSettings(
        domain=reader.domain("muc", "domain", f"conference.{domain}"),
        restrict_room_creation=creation,
        max_history=reader.integer("muc", "max_history", 20, minimum=0),
        max_occupants=reader.integer("muc", "max_occupants", 100),
        message_rate=reader.integer("muc", "message_rate", 60),
        message_burst=reader.integer("muc", "message_burst", 10),
    )


def normalize_origin(origin: str) -> str | None:
    """RFC 6454 §6.2 serialisation of an http(s) origin as browsers send it (lower case, default
    port left out), or None if ``origin`` is not ``scheme://host[:port]``."""
    match = re.fullmatch(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?/?", origin.lower())
    if not match:
        return None
    scheme, host, port = match.groups()
    if port is not None and int(port) == {"https": 443, "http": 80}[scheme]:
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _web_origins(reader: _Reader, domain: str, listen: str, tls: bool) -> tuple[str, ...]:
    """``[web] origins``, or by default the account domain and the listen address, with and
    without the listener's port, in the listener's scheme."""
    words = reader.words("web", "origins")
    if words is None:
        scheme = "https" if tls else "http"
        endpoint = serverFromString(None, listen) if listen else None
        port = getattr(endpoint, "_port", None)
        hosts = [domain]
        interface = getattr(endpoint, "_interface", "") or ""
        if interface and interface not in ("0.0.0.0", "::"):
            hosts.append(f"[{interface}]" if ":" in interface else interface)
        words = [f"{scheme}://{host}" for host in hosts]
        if isinstance(port, int) and port > 0:
            words += [f"{scheme}://{host}:{port}" for host in hosts]
    origins = []
    for word in words:
        origin = "*" if word == "*" else normalize_origin(word)
        if origin is None:
            raise reader.error("web", "origins", f"expected * or origins such as https://falcot.com:8443 "
                               f"(scheme://host[:port], no path), got {_quote(word)}")
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _admins(reader: _Reader) -> tuple[JID, ...]:
    admins = []
    for word in reader.words("server", "admins") or []:
        try:
            jid = JID.parse(word).bare
        except InvalidJID as e:
            raise reader.error("server", "admins", f"invalid JID {_quote(word)}: {e}") from None
        if jid.local is None:
            raise reader.error("server", "admins",
                               f"expected a user@domain JID, got {_quote(word)}")
        admins.append(jid)
    return tuple(admins)


def _check_known(reader: _Reader) -> None:
    for section in reader.parser.sections():
        if section not in KNOWN_KEYS:
            raise reader.error(section, None, f"unknown section; expected one of "
                               f"{', '.join('[' + s + ']' for s in KNOWN_KEYS)}")
        if section == "components":
            continue
        for key in reader.parser.options(section):
            if key not in KNOWN_KEYS[section]:
                raise reader.error(section, key, f"unknown key; [{section}] takes "
                                   f"{', '.join(KNOWN_KEYS[section])}")


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False,
                                       default_section=_NO_DEFAULT_SECTION)
    expected = "expected [section] headers and key = value lines"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, None, None, "configuration file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, None,
                          f"cannot read configuration ({expected} in UTF-8): {e}") from None
    if "\0" in text:  # a NUL would only surface later, as a ValueError from the OS path functions
        raise ConfigError(path, None, None, f"holds a NUL character; {expected}")
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateOptionError as e:
        raise ConfigError(path, e.section, e.option,
                          f"set again on line {e.lineno}; expected each key once per section",
                          ) from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(path, e.section, None,
                          f"repeated on line {e.lineno}; expected each section once") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(path, None, None, f"not a valid INI file: line {e.lineno} comes before "
                          f"any [section] header; {expected}") from None
    except configparser.ParsingError as e:
        lineno, shown = e.errors[0]  # configparser keeps the line as its repr()
        raise ConfigError(path, None, None, f"not a valid INI file: line {lineno} "
                          f"({shown[:80]}) is not understood; {expected}") from None
    except configparser.Error as e:
        message = str(e).splitlines()[0]
        raise ConfigError(path, None, None,
                          f"not a valid INI file: {message}; {expected}") from None
    return parser


def _database(reader: _Reader, state_dir: Path) -> str:
    """The SQLAlchemy URL, a relative SQLite path made absolute: twistd changes directory later."""
    database = reader.text("server", "database", "") or f"sqlite:///{state_dir / 'unirtc.sqlite'}"
    if not re.match(r"^[a-z][a-z0-9+]*://", database):
        raise reader.error("server", "database", f"expected an SQLAlchemy URL such as "
                           f"sqlite:////var/lib/unirtc/unirtc.sqlite, got {_quote(database)}")
    sqlite = re.fullmatch(r"(sqlite(?:\+\w+)?:///)([^/?][^?]*)(\?.*)?", database)
    if sqlite and sqlite.group(2) != ":memory:" and not sqlite.group(2).startswith("file:"):
        absolute = (reader.file.parent / sqlite.group(2)).resolve()
        database = f"{sqlite.group(1)}{absolute}{sqlite.group(3) or ''}"
    return database


def _http_path(reader: _Reader, section: str, key: str, default: str) -> str:
    """A top-level path on the web listener such as ``/xmpp-websocket``, stored without the
    slash; empty for none."""
    value = reader.text(section, key, default)
    if value and not re.fullmatch(r"/[A-Za-z0-9._~-]+", value):
        raise reader.error(section, key, f"expected a path of one segment such as {default}, "
                           f"or empty for none, got {_quote(value)}")
    return value[1:]


def load_settings(path: str | Path) -> Settings:
    """Read, validate and resolve one configuration file."""
    path = Path(path).absolute()
    reader = _Reader(path, _read(path))
    _check_known(reader)
    if not reader.raw("server", "domain"):
        raise reader.error("server", "domain", "required: the account domain, e.g. falcot.com")
    domain = reader.domain("server", "domain", "")
    state_dir = reader.path("server", "state_dir", (path.parent / "var").resolve())
    log_level = reader.text("server", "log_level", "info").lower()
    if log_level not in LOG_LEVELS:
        raise reader.error("server", "log_level",
                           f"expected one of {', '.join(LOG_LEVELS)}, got {_quote(log_level)}")
    database = _database(reader, state_dir)
    server = ServerSettings(
        domain=domain,
        admins=_admins(reader),
        state_dir=state_dir,
        database=database,
        log_level=log_level,
        plugin_paths=tuple((path.parent / p).resolve() for p in reader.words("server", "plugin_paths") or []),
    )
    tls = TLSSettings(
        certificate=reader.path("tls", "certificate", state_dir / "certificate.pem"),
        key=reader.path("tls", "key", state_dir / "key.pem"),
        self_signed=reader.boolean("tls", "self_signed", True),
        ca=reader.path("tls", "ca", Path()) if reader.raw("tls", "ca") else None,
    )
    plugins = reader.words("xmpp", "plugins")
    xmpp = XMPPSettings(
        c2s=reader.endpoint("xmpp", "c2s", "tcp:5222"),
        c2s_direct_tls=reader.endpoint("xmpp", "c2s_direct_tls", "tcp:5223"),
        s2s=reader.endpoint("xmpp", "s2s", "tcp:5269"),
        plugins=None if plugins is None else tuple(dict.fromkeys(plugins)),
        max_stanza_size=reader.integer("xmpp", "max_stanza_size", 262144, minimum=10000),
        websocket=_http_path(reader, "xmpp", "websocket", "/xmpp-websocket"),
        offline_max_messages=reader.integer("xmpp", "offline_max_messages", 500, minimum=0),
    )
    sip_domains = []
    for word in reader.words("sip", "domains") or [domain]:
        try:
            sip_domains.append(normalize_domain(word))
        except InvalidJID as e:
            raise reader.error("sip", "domains", f"invalid domain {_quote(word)}: {e}") from None
    if domain not in sip_domains:
        sip_domains.insert(0, domain)
    sip_domains = list(dict.fromkeys(sip_domains))
    return Settings(
        path=path,
        server=server,
        tls=tls,
        xmpp=xmpp,
        muc=_muc(reader, domain),
        s2s=S2SSettings(
            hosts=_s2s_hosts(reader),
            require_encryption=reader.boolean("s2s", "require_encryption", True),
            dialback=reader.boolean("s2s", "dialback", True),
        ),
        components=_components(reader),
        sip=SIPSettings(domains=tuple(sip_domains), listen=_sip_listeners(reader),
                        outbound=reader.boolean("sip", "outbound", False),
                        websocket=_http_path(reader, "sip", "websocket", "/sip-websocket")),
        turn=_turn(reader, domain),
        web=_web(reader, domain, sip_domains),
    )


def _click_to_call(reader: _Reader, sip_domains: list[str]) -> str:
    """``sip:user@domain`` on one of the served SIP domains, or empty."""
    value = reader.text("web", "click_to_call", "")
    if not value:
        return ""
    match = re.fullmatch(r"sip:([A-Za-z0-9._~!$&'()*+=%-]{1,64})@([^\s;?>]+)", value)
    if not match:
        raise reader.error("web", "click_to_call", f"expected a SIP URI such as sip:sales@falcot.com, "
                           f"got {_quote(value)}")
    try:
        host = normalize_domain(match.group(2))
    except InvalidJID:
        host = ""
    if host not in sip_domains:
        raise reader.error("web", "click_to_call", f"{_quote(value)} is not on a served SIP domain "
                           f"({', '.join(sip_domains)}); guests may only call this server's users")
    return f"sip:{match.group(1)}@{host}"


def _web(reader: _Reader, domain: str, sip_domains: list[str]) -> WebSettings:
    listen = reader.endpoint("web", "listen", "tcp:5281")
    tls = reader.boolean("web", "tls", True)
    return WebSettings(listen=listen, tls=tls, origins=_web_origins(reader, domain, listen, tls),
                       jssip=reader.path("web", "jssip", Path()) if reader.raw("web", "jssip") else None,
                       click_to_call=_click_to_call(reader, sip_domains))

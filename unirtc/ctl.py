"""``unirtc-ctl``: administer accounts and the database, as prosodyctl does for Prosody.

It uses the same store functions as the server, synchronously, so secrets are derived exactly
the same way; a running server notices its writes through the directory generation counter.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from unirtc import __version__, admin
from unirtc.config import DEFAULT_CONFIG, ConfigError, load_settings
from unirtc.directory import bindings_store, migrate, store
from unirtc.directory.engine import make_engine
from unirtc.dns import zone_records
from unirtc.settings import Settings
from unirtc.tls import CertificateFiles, check_certificate, is_warning
from unirtc.turn.issuer import NoTurnSecret, issue
from unirtc.web.readiness import browser_readiness
from unirtc.xmpp.jid import JID, InvalidJID


class CtlError(Exception):
    """One line for stderr; the command exits non-zero and has changed nothing."""


def _account(settings: Settings, text: str) -> JID:
    try:
        jid = JID.parse(text)
    except InvalidJID as e:
        raise CtlError(f"invalid JID {text!r}: {e}") from None
    if jid.local is None or jid.resource is not None:
        raise CtlError(f"{text!r} is not an account address; expected user@{settings.server.domain}")
    if jid.domain != settings.server.domain:
        raise CtlError(f"this server does not serve accounts on {jid.domain}; "
                       f"it serves {settings.server.domain} ([server] domain in {settings.path})")
    return jid


def _open(settings: Settings) -> Engine:
    """The directory engine; a fresh database is created, one that is behind is refused."""
    engine = make_engine(settings.server.database)
    status = migrate.schema_status(engine)
    if status.empty:
        migrate.upgrade(engine)
    elif not status.up_to_date:
        raise CtlError(f"the database schema is behind; run: unirtc-ctl -c {settings.path} db upgrade")
    return engine


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Enter new password: ")
        if password != getpass.getpass("Retype new password: "):
            raise CtlError("passwords do not match; nothing changed")
    if not password:
        raise CtlError("empty password; nothing changed")
    return password


def _require_absent(engine: Engine, jid: JID) -> None:
    with store.transaction(engine) as session:
        if store.get_credentials(session, jid.local, jid.domain) is not None:
            raise CtlError(f"account {jid} already exists")


def _require_present(engine: Engine, jid: JID) -> None:
    with store.transaction(engine) as session:
        if store.get_credentials(session, jid.local, jid.domain) is None:
            raise CtlError(f"no account {jid}")


def cmd_adduser(settings: Settings, args: argparse.Namespace) -> int:
    jid = _account(settings, args.jid)
    engine = _open(settings)
    _require_absent(engine, jid)
    password = _read_password(args)
    with store.transaction(engine) as session:
        store.create_account(session, jid.local, jid.domain, password)
    print(f"Created account {jid} (XMPP {jid}, SIP sip:{jid})")
    return 0


def cmd_passwd(settings: Settings, args: argparse.Namespace) -> int:
    jid = _account(settings, args.jid)
    engine = _open(settings)
    _require_present(engine, jid)
    password = _read_password(args)
    with store.transaction(engine) as session:
        store.set_password(session, jid.local, jid.domain, password)
    print(f"Changed the password of {jid}")
    return 0


def cmd_deluser(settings: Settings, args: argparse.Namespace) -> int:
    jid = _account(settings, args.jid)
    engine = _open(settings)
    _require_present(engine, jid)
    if not args.yes:
        answer = input(f"Delete account {jid} and all its data? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CtlError("not confirmed; nothing changed")
    with store.transaction(engine) as session:
        store.delete_account(session, jid.local, jid.domain)
    print(f"Deleted account {jid}")
    return 0


def _set_disabled(disabled: bool) -> Callable[[Settings, argparse.Namespace], int]:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        jid = _account(settings, args.jid)
        try:
            with store.transaction(_open(settings)) as session:
                store.set_disabled(session, jid.local, jid.domain, disabled)
        except store.NoSuchAccount:
            raise CtlError(f"no account {jid}") from None
        print(f"{'Disabled' if disabled else 'Enabled'} account {jid}")
        return 0

    return command


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    with store.transaction(_open(settings)) as session:
        for account in store.list_accounts(session, args.domain):
            print(account.jid + ("  (disabled)" if account.disabled else ""))
    return 0


def cmd_sip_bindings(settings: Settings, args: argparse.Namespace) -> int:
    """Registered SIP contacts, as the registrar stored them (like kamctl ul show)."""
    localpart = None
    if args.jid:
        localpart = _account(settings, args.jid).local
    now = time.time()
    with store.transaction(_open(settings)) as session:
        records = bindings_store.list_bindings(session, now, localpart, settings.server.domain)
    for record in records:
        via = f" via {record.source_host}:{record.source_port}" if record.source_host else ""
        agent = f" ({record.user_agent})" if record.user_agent else ""
        print(f"{record.localpart}@{record.domain} {record.contact} q={record.q:g} "
              f"expires in {int(record.expires_at - now)} s{via}{agent}")
    return 0


def _ask_server(settings: Settings, command: str) -> dict:
    """One request on the running server's admin socket (see ``unirtc.admin``)."""
    path = admin.socket_path(settings.server.state_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(10)
            connection.connect(str(path))
            connection.sendall(command.encode() + b"\n")
            answer = connection.makefile("rb").readline()
    except OSError as e:
        raise CtlError(f"cannot reach the running server at {path} ({e.strerror or e}); is it running?") from None
    reply = json.loads(answer)
    if "error" in reply:
        raise CtlError(reply["error"])
    return reply


def cmd_s2s(settings: Settings, args: argparse.Namespace) -> int:
    """Live federation links, their security and queues (from the running server)."""
    links = _ask_server(settings, "s2s")["links"]
    if not links:
        print("No server-to-server links")
    for link in links:
        arrow = "->" if link["direction"] == "outgoing" else "<-"
        print(f"{link['local']} {arrow} {link['remote']}  {link['state']}  {link['security']}  "
              f"queued {link['queued']}  peer {link['peer']}")
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.server.database)
    before = migrate.schema_status(engine)
    migrate.upgrade(engine)
    after = migrate.schema_status(engine)
    print(f"Database schema: {', '.join(before.current) or 'empty'} -> {', '.join(after.current)}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    failed = False
    print(f"Configuration {settings.path}: ok")
    engine = make_engine(settings.server.database)
    status = migrate.schema_status(engine)
    if status.up_to_date:
        print("Database schema: up to date")
    elif status.empty:
        print("Database: empty; it is created on first start (or run: unirtc-ctl db upgrade)")
    else:
        failed = True
        print(f"Database schema: behind; run: unirtc-ctl -c {settings.path} db upgrade")
    files = CertificateFiles(settings.tls.certificate, settings.tls.key)
    problems = []
    if not files.certificate.exists() and not files.key.exists() and settings.tls.self_signed:
        print(f"Certificate: none yet; a self-signed one is created at {files.certificate} on first start")
    else:
        problems = check_certificate(files, settings.served_domains, datetime.now(timezone.utc))
    if files.certificate.exists() and not problems:
        print(f"Certificate {files.certificate}: ok for {', '.join(settings.served_domains)}")
    for problem in problems:
        failed = failed or not is_warning(problem)
        print(f"Certificate: {problem}")
    print("\nBrowsers (web phone, SIP and XMPP over WebSocket):")
    for finding in browser_readiness(settings, datetime.now(timezone.utc)):
        failed = failed or finding.problem
        print(f"  {finding.text}")
    print("\nDNS records to publish (zone-file syntax):")
    for record in zone_records(settings):
        print(f"  {record}")
    return 1 if failed else 0


def cmd_turn_credentials(settings: Settings, args: argparse.Namespace) -> int:
    """Mint TURN credentials for an existing, enabled account (what GET /turn would return)."""
    jid = _account(settings, args.jid)
    if not settings.turn.secret:
        raise CtlError(f"no TURN secret is configured; set [turn] secret or secret_file in {settings.path}")
    with store.transaction(_open(settings)) as session:
        credentials = store.get_credentials(session, jid.local, jid.domain)
    if credentials is None:
        raise CtlError(f"no account {jid}; TURN credentials are only issued to accounts of this server")
    if credentials.disabled:
        raise CtlError(f"account {jid} is disabled; enable it first: unirtc-ctl enable {jid}")
    try:
        issued = issue(settings.turn, str(jid), time.time(), args.ttl)
    except (NoTurnSecret, ValueError) as e:
        raise CtlError(str(e)) from None
    if args.json:
        print(json.dumps(issued.as_json(), indent=2))
        return 0
    expires = datetime.fromtimestamp(issued.expires, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"username: {issued.username}")
    print(f"password: {issued.password}")
    print(f"expires:  {expires} (in {issued.ttl} s)")
    for uri in issued.uris:
        print(f"uri:      {uri}")
    return 0


def cmd_version(settings: Settings | None, args: argparse.Namespace) -> int:
    print(f"unirtc {__version__}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unirtc-ctl", description="Administer a unirtc server.")
    parser.add_argument("-c", "--config", help=f"configuration file (default: $UNIRTC_CONFIG, else {DEFAULT_CONFIG})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, function, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(function=function)
        return sub

    for name, function, help in (
        ("adduser", cmd_adduser, "Create the specified user account."),
        ("passwd", cmd_passwd, "Set the password of the specified user account."),
    ):
        sub = add(name, function, help)
        sub.add_argument("jid", metavar="JID")
        sub.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    sub = add("deluser", cmd_deluser, "Delete the specified user account and its data.")
    sub.add_argument("jid", metavar="JID")
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add("disable", _set_disabled(True), "Refuse logins for the specified account.").add_argument("jid", metavar="JID")
    add("enable", _set_disabled(False), "Allow logins again for the specified account.").add_argument("jid", metavar="JID")
    add("users", cmd_users, "List accounts, optionally of one domain.").add_argument("domain", nargs="?")
    sub = add("turn-credentials", cmd_turn_credentials,
              "Print short-lived TURN credentials (coturn use-auth-secret) for the specified account.")
    sub.add_argument("jid", metavar="JID")
    sub.add_argument("--ttl", type=int, metavar="SECONDS", help="lifetime, at most [turn] ttl (the default)")
    sub.add_argument("--json", action="store_true", help="print the JSON object GET /turn returns")
    add("sip-bindings", cmd_sip_bindings, "List registered SIP contacts, optionally of one account.").add_argument(
        "jid", nargs="?", metavar="JID")
    add("s2s", cmd_s2s, "Show the running server's federation links, their security and queues.")
    add("check", cmd_check, "Check configuration, database schema and certificate; print DNS records.")
    db = add("db", cmd_db, "Database maintenance.")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply pending schema migrations")
    add("version", cmd_version, "Print the unirtc version.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "version":
            return cmd_version(None, args)
        path = Path(args.config or os.environ.get("UNIRTC_CONFIG") or DEFAULT_CONFIG)
        return args.function(load_settings(path), args)
    except (CtlError, ConfigError) as e:
        print(f"unirtc-ctl: {e}", file=sys.stderr)
        return 1
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).splitlines()[0]
        print(f"unirtc-ctl: cannot use the database: {reason}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("\nunirtc-ctl: interrupted; nothing changed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

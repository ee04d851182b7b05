"""The real server under twistd: start, serve, refuse bad setups, stop cleanly on SIGTERM."""

from __future__ import annotations

import socket

from unirtc.directory import migrate
from unirtc.directory.engine import make_engine


def https_get(harness, path: str, method: str = "GET") -> tuple[int, bytes]:
    """An HTTPS request verified against the server's own (self-signed) certificate."""
    status, _, body = harness.https(path, method)
    return status, body


def test_firstStartServesAndStopsCleanly(harness) -> None:
    """
    If the server starts on a fresh state directory, it creates the database and a self-signed
    certificate (announcing both), answers /health over HTTPS, and on SIGTERM closes its
    listeners, closes the directory and exits with status 0.
    """
    harness.start()
    assert https_get(harness, "/health") == (200, b'{"status": "ok"}\n')
    assert https_get(harness, "/health", "POST")[0] == 405
    assert https_get(harness, "/nothing-here")[0] == 404
    assert harness.stop() == 0
    log = harness.log()
    assert "Creating the directory database schema" in log
    assert "Created a self-signed certificate" in log
    assert "Directory closed" in log
    assert "unirtc stopped cleanly" in log
    assert log.index("Port {} Closed".format(harness.ports["web"])) < log.index("Directory closed")
    try:
        socket.create_connection(("127.0.0.1", harness.ports["web"]), timeout=1).close()
        listening = True
    except OSError:
        listening = False
    assert not listening


def test_secondStartReusesStateAndHasNoPassword(harness) -> None:
    """
    If the server restarts, it keeps the database and certificate (no new ones) and the accounts
    created by unirtc-ctl; the password appears in neither the database nor the log.
    """
    harness.adduser("joe@falcot.com", "s3cret-Passw0rd")
    harness.start()
    assert harness.stop() == 0
    certificate = (harness.directory / "var" / "certificate.pem").read_bytes()
    harness.start()
    assert https_get(harness, "/health")[0] == 200
    assert harness.stop() == 0
    assert (harness.directory / "var" / "certificate.pem").read_bytes() == certificate
    log = harness.log()
    assert log.count("Created a self-signed certificate") == 1
    assert "s3cret-Passw0rd" not in log
    for path in (harness.directory / "var").glob("unirtc.sqlite*"):
        assert b"s3cret-Passw0rd" not in path.read_bytes()
    assert harness.ctl("users").stdout == "joe@falcot.com\n"


def test_refusesSchemaBehindWithTheFixingCommand(harness) -> None:
    """
    If the database schema is behind the code, the server refuses to start and names the exact
    command; after running that command it starts.
    """
    engine = make_engine(f"sqlite:///{harness.directory / 'var' / 'unirtc.sqlite'}")
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    engine.dispose()
    assert harness.run_to_exit() != 0
    assert f"run: unirtc-ctl -c {harness.ini} db upgrade" in harness.log()
    upgraded = harness.ctl("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    harness.start()
    assert https_get(harness, "/health")[0] == 200


def test_badConfigurationIsOneClearError(harness) -> None:
    """
    If the configuration has a bad value, twistd exits non-zero naming the file, section and key.
    """
    harness.sections["xmpp"]["max_stanza_size"] = "lots"
    harness.write_config()
    assert harness.run_to_exit() != 0
    assert f"{harness.ini}: [xmpp] max_stanza_size: expected an integer, got 'lots'" in harness.log()


def test_unknownPluginIsOneClearError(harness) -> None:
    """
    If [xmpp] plugins names a plugin that does not exist, twistd exits non-zero saying where it looked.
    """
    harness.sections["xmpp"]["plugins"] = "http_health no_such_thing"
    harness.write_config()
    assert harness.run_to_exit() != 0
    log = harness.log()
    assert "[xmpp] plugins: plugin 'no_such_thing' not found" in log
    assert "mod_no_such_thing.py" in log


def test_sitePluginFromPluginPaths(harness) -> None:
    """
    If a plugin folder is configured, its plugin is loaded at start and its HTTP resource served;
    a bundled plugin left out of [xmpp] plugins is not loaded.
    """
    folder = harness.directory / "site-plugins"
    folder.mkdir()
    (folder / "mod_hello.py").write_text(
        "from twisted.web.resource import Resource\n"
        "class Hello(Resource):\n"
        "    isLeaf = True\n"
        "    def render_GET(self, request):\n"
        "        return b'hello from ' + self.domain.encode()\n"
        "def load(module):\n"
        "    resource = Hello()\n"
        "    resource.domain = module.settings.server.domain\n"
        "    module.add_item('http-path', ('hello', resource))\n"
    )
    harness.sections["server"]["plugin_paths"] = "site-plugins"
    harness.sections["xmpp"]["plugins"] = "hello"
    harness.write_config()
    harness.start()
    assert https_get(harness, "/hello") == (200, b"hello from falcot.com")
    assert https_get(harness, "/health")[0] == 404
    assert harness.stop() == 0
    assert "Loaded plugin hello" in harness.log()
    assert "Unloaded plugin hello" in harness.log()

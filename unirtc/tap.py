"""``twistd unirtc -c FILE``: options and service maker (imported only when unirtc is run)."""

from __future__ import annotations

from twisted.python import usage

from unirtc.config import ConfigError, load_settings
from unirtc.plugin import PluginNotFound, bundled_plugins, locate


class Options(usage.Options):
    synopsis = "[-c FILE]"
    longdesc = "Run the unirtc XMPP + SIP + TURN server described by an INI configuration file."
    optParameters = [["config", "c", None, "Path to the INI configuration file."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("a configuration file is required: twistd unirtc -c FILE")
        try:
            self.settings = load_settings(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        names = self.settings.xmpp.plugins
        for name in bundled_plugins() if names is None else names:
            try:
                locate(name, self.settings.server.plugin_paths)
            except PluginNotFound as e:
                raise usage.UsageError(f"{self.settings.path}: [xmpp] plugins: {e}") from None


def _exit_zero_on_sigterm(reactor) -> None:
    """Stop the reactor on SIGTERM and exit 0.

    twistd re-raises SIGTERM after a clean shutdown, so the process would die "by signal"; an
    orderly stop requested by the service manager is a success, and init systems and scripts
    should see status 0.
    """
    import signal

    from unirtc.logging import get_logger

    log = get_logger("unirtc.service")

    def stop(signum, frame) -> None:
        log.info("Received SIGTERM, shutting down")
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)


def makeService(options: Options):
    from twisted.internet import reactor

    from unirtc import service

    # Once now, for a SIGTERM arriving before the reactor runs, and again once it runs,
    # because the reactor installs its own handlers at startup.
    _exit_zero_on_sigterm(reactor)
    reactor.callWhenRunning(_exit_zero_on_sigterm, reactor)
    return service.makeService(options.settings, reactor)

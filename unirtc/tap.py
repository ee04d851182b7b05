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


def makeService(options: Options):
    from unirtc import service

    return service.makeService(options.settings)

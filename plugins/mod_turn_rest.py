"""GET /turn on the web listener: short-lived TURN credentials for an authenticated account.

The resource lives in ``unirtc.web.turn``; this plugin only mounts it.  Without a ``[turn]``
secret the endpoint answers 503, so loading it on a site without TURN is harmless.
"""

from __future__ import annotations

from unirtc.web.turn import TurnCredentialsResource


def load(module) -> None:
    resource = TurnCredentialsResource(module.settings, module.directory, module.reactor)
    module.add_item("http-path", ("turn", resource))
    if not module.settings.turn.secret:
        module.log.info("No [turn] secret configured: /turn answers 503 and issues no credentials")

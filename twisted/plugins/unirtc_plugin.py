"""The twistd drop-in: ``twistd unirtc``.  Naming the tap module as a string keeps
``twistd --help`` from importing the server."""

from twisted.application.service import ServiceMaker

unirtc = ServiceMaker(
    "unirtc", "unirtc.tap", "XMPP + SIP + TURN unified messaging server", "unirtc"
)

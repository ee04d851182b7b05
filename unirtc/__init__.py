"""unirtc: one Twisted process serving XMPP, SIP and TURN credentials from one user directory."""

__version__ = "0.1.0"

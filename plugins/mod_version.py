"""XEP-0092 Software Version: the server says it is unirtc and which version.

The operating system is not disclosed: XEP-0092 §4 notes it helps attackers more than users.
"""

from __future__ import annotations

from twisted.words.xish import domish

import unirtc

NS_VERSION = "jabber:iq:version"


def load(module) -> None:
    module.add_feature(NS_VERSION)
    module.hook(f"iq-get/host/{NS_VERSION}:query", _version)


def _version(event) -> domish.Element:
    query = domish.Element((NS_VERSION, "query"))
    query.addElement("name", content="unirtc")
    query.addElement("version", content=unirtc.__version__)
    return event.result(query)

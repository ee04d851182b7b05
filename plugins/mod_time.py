"""XEP-0202 Entity Time: the server's clock in UTC, which clients use to correct skew."""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.words.xish import domish

NS_TIME = "urn:xmpp:time"


def load(module) -> None:
    module.add_feature(NS_TIME)
    module.hook(f"iq-get/host/{NS_TIME}:time", lambda event: _time(module, event))


def _time(module, event) -> domish.Element:
    now = datetime.fromtimestamp(module.reactor.seconds(), timezone.utc)
    time = domish.Element((NS_TIME, "time"))
    time.addElement("tzo", content="+00:00")  # the server reports UTC; its zone is nobody's business
    time.addElement("utc", content=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z")
    return event.result(time)

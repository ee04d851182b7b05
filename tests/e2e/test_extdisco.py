"""XEP-0215 end to end: a slixmpp user asks the server for TURN services, and coturn accepts them.

This is what Conversations, Dino and Gajim do before an A/V call: discover the TURN server
and fresh credentials over XMPP, then allocate a relay on coturn with them.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from slixmpp.xmlstream import ET

from tests.e2e.test_turn import SECRET, Coturn
from tests.e2e.test_xmpp_c2s import PASSWORDS, online

NS = "urn:xmpp:extdisco:2"


@pytest.fixture
def coturn(tmp_path):
    server = Coturn(tmp_path, SECRET)
    yield server
    server.stop()


def test_xmppClientGetsTurnCredentialsCoturnAccepts(harness, coturn) -> None:
    """
    If a logged-in user asks its server for external services, it gets the configured STUN and
    TURN services, the TURN one with credentials for its own JID that coturn accepts for an
    allocation; the feature is in the server's disco#info.
    """
    harness.sections["turn"].update({
        "secret": SECRET, "ttl": "600",
        "uris": f"stun:127.0.0.1:{coturn.port} turn:127.0.0.1:{coturn.port}?transport=udp",
    })
    harness.write_config()
    for user, password in PASSWORDS.items():
        harness.adduser(f"{user}@falcot.com", password)
    harness.start(wait_for="c2s")
    coturn.start()

    async def scenario() -> list[dict[str, str]]:
        joe = await online(harness, "joe", "phone")
        info = await joe.plugin["xep_0030"].get_info(jid="falcot.com")
        assert NS in info["disco_info"]["features"]
        iq = joe.make_iq_get(ito="falcot.com")
        iq.append(ET.Element(f"{{{NS}}}services"))
        reply = await iq.send(timeout=10)
        services = [dict(s.attrib) for s in reply.xml.find(f"{{{NS}}}services")]
        joe.disconnect()
        return services

    services = asyncio.run(asyncio.wait_for(scenario(), 45))
    assert [(s["type"], s["host"], s["port"]) for s in services] == [
        ("stun", "127.0.0.1", str(coturn.port)), ("turn", "127.0.0.1", str(coturn.port))]
    turn = services[1]
    assert re.fullmatch(r"\d+:joe@falcot\.com", turn["username"]) and turn["restricted"] == "1"
    result = coturn.uclient(turn["username"], turn["password"])
    assert result.returncode == 0, result.stdout + coturn.log()
    assert f"user <{turn['username']}>: incoming packet ALLOCATE processed, success" in coturn.log()

"""Multi-user chat end to end: slixmpp's XEP-0045 plugin against the real server under twistd.

One server serves the module; the tests run in file order and the last one restarts the
server, so a persistent room is seen to survive ``harness.stop(); harness.start()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from tests.e2e.harness import ServerHarness
from tests.e2e.xmpp_clients import events, log_in, offline, run, serving, trusting_client

USERS = {name: f"{name}-Passw0rd" for name in ("joe", "roland", "ann", "keith")}
SERVICE = "conference.falcot.com"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    harness = ServerHarness(tmp_path_factory.mktemp("muc") / "server")
    for user, password in USERS.items():
        harness.adduser(f"{user}@falcot.com", password)
    yield from serving(harness, request)


async def online(server: ServerHarness, user: str, resource: str = "muc") -> slixmpp.ClientXMPP:
    client = trusting_client(f"{user}@falcot.com/{resource}", USERS[user],
                             server.directory / "var" / "certificate.pem", ("xep_0030", "xep_0045", "xep_0199"))
    return await log_in(client, server.ports["c2s"])


def muc(client: slixmpp.ClientXMPP) -> Any:
    return client.plugin["xep_0045"]


async def create(owner: slixmpp.ClientXMPP, room: str, nick: str, values: dict[str, Any]) -> None:
    """Enter a new room (201) and submit its configuration form with ``values`` changed."""
    presence, *_ = await muc(owner).join_muc_wait(JID(room), nick, timeout=TIMEOUT)
    assert 201 in presence["muc"]["status_codes"]
    form = await muc(owner).get_room_config(JID(room), timeout=TIMEOUT)
    form.set_values(values)
    await muc(owner).set_room_config(JID(room), form, timeout=TIMEOUT)


async def refused(client: slixmpp.ClientXMPP, room: str, nick: str, **kwargs: Any) -> str:
    with pytest.raises(PresenceError) as caught:
        await muc(client).join_muc_wait(JID(room), nick, timeout=TIMEOUT, **kwargs)
    return caught.value.condition


def test_configureChatAndHistory(server) -> None:
    """
    If Joe creates and configures a password-protected room, Roland (with the password) and
    Ann enter and get the history said before them; a message reaches all three, sender
    included; a nickname in use is a conflict and a wrong password is not-authorized.
    """
    room = f"ops@{SERVICE}"

    async def scenario() -> None:
        joe, roland, ann = [await online(server, user) for user in ("joe", "roland", "ann")]
        await create(joe, room, "Joe", {"muc#roomconfig_roomname": "Operations",
                                        "muc#roomconfig_passwordprotectedroom": True,
                                        "muc#roomconfig_roomsecret": "debian"})
        joe.send_message(mto=JID(room), mbody="the backup job failed", mtype="groupchat")
        await asyncio.sleep(0.2)
        assert await refused(roland, room, "Roland", password="wrong") == "not-authorized"
        _, _, occupants, history = await muc(roland).join_muc_wait(JID(room), "Roland", password="debian",
                                                                   maxstanzas=10, timeout=TIMEOUT)
        assert [m["body"] for m in history] == ["the backup job failed"]
        assert [str(p["from"]) for p in occupants] == [f"{room}/Joe", f"{room}/Roland"]  # self last
        assert await refused(ann, room, "roland", password="debian") == "conflict"
        await muc(ann).join_muc_wait(JID(room), "Ann", password="debian", timeout=TIMEOUT)
        inboxes = [events(c, "groupchat_message") for c in (joe, roland, ann)]
        roland.send_message(mto=JID(room), mbody="restarting it now", mtype="groupchat")
        for inbox in inboxes:
            message = await asyncio.wait_for(inbox.get(), TIMEOUT)
            assert (str(message["from"]), message["body"]) == (f"{room}/Roland", "restarting it now")
        await offline(joe, roland, ann)

    run(scenario, 45)


def test_kickAndBan(server) -> None:
    """
    If the owner kicks Roland he gets unavailable with 307; if the owner bans Ann she gets 301
    and cannot come back (forbidden).
    """
    room = f"moderated@{SERVICE}"

    async def scenario() -> None:
        joe, roland, ann = [await online(server, user, "kick") for user in ("joe", "roland", "ann")]
        await create(joe, room, "Joe", {})
        roland_presence = events(roland, f"muc::{room}::self-presence")
        ann_presence = events(ann, f"muc::{room}::self-presence")
        await muc(roland).join_muc_wait(JID(room), "Roland", timeout=TIMEOUT)
        await muc(ann).join_muc_wait(JID(room), "Ann", timeout=TIMEOUT)
        await roland_presence.get(), await ann_presence.get()
        await muc(joe).set_role(JID(room), "Roland", "none", reason="flooding", timeout=TIMEOUT)
        kicked = await asyncio.wait_for(roland_presence.get(), TIMEOUT)
        assert kicked["type"] == "unavailable" and {110, 307} <= kicked["muc"]["status_codes"]
        await muc(joe).set_affiliation(JID(room), "outcast", jid=JID("ann@falcot.com"), timeout=TIMEOUT)
        banned = await asyncio.wait_for(ann_presence.get(), TIMEOUT)
        assert banned["type"] == "unavailable" and 301 in banned["muc"]["status_codes"]
        assert await refused(ann, room, "Ann") == "forbidden"
        assert await muc(joe).get_affiliation_list(JID(room), "outcast", timeout=TIMEOUT) == [JID("ann@falcot.com")]
        await offline(joe, roland, ann)

    run(scenario, 45)


def test_membersOnlyRefusal(server) -> None:
    """
    If a room is members-only, Keith is refused (registration-required) until the owner makes
    him a member.
    """
    room = f"staff@{SERVICE}"

    async def scenario() -> None:
        joe, keith = await online(server, "joe", "members"), await online(server, "keith", "members")
        await create(joe, room, "Joe", {"muc#roomconfig_membersonly": True})
        assert await refused(keith, room, "Keith") == "registration-required"
        await muc(joe).set_affiliation(JID(room), "member", jid=JID("keith@falcot.com"), timeout=TIMEOUT)
        presence, *_ = await muc(keith).join_muc_wait(JID(room), "Keith", timeout=TIMEOUT)
        assert presence["muc"]["affiliation"] == "member"
        await offline(joe, keith)

    run(scenario, 45)


def test_temporaryRoomGoneWhenEmpty(server) -> None:
    """
    If the last occupant leaves a temporary room, the room no longer exists: disco#info is
    item-not-found and the service no longer lists it.
    """
    room = f"scratch@{SERVICE}"

    async def scenario() -> None:
        joe = await online(server, "joe", "temporary")
        await create(joe, room, "Joe", {})
        items = await joe.plugin["xep_0030"].get_items(jid=SERVICE, timeout=TIMEOUT)
        assert room in [str(item[0]) for item in items["disco_items"]["items"]]
        muc(joe).leave_muc(JID(room), "Joe")
        await asyncio.sleep(0.3)
        with pytest.raises(IqError) as caught:
            await joe.plugin["xep_0030"].get_info(jid=room, timeout=TIMEOUT)
        assert caught.value.condition == "item-not-found"
        items = await joe.plugin["xep_0030"].get_items(jid=SERVICE, timeout=TIMEOUT)
        assert room not in [str(item[0]) for item in items["disco_items"]["items"]]
        await offline(joe)

    run(scenario, 45)


def test_persistentRoomSurvivesRestart(server) -> None:
    """
    If a persistent room with a member exists and the server restarts, the room is back:
    disco#info says muc_persistent with its name, and the member list still holds Roland.
    """
    room = f"handbook@{SERVICE}"

    async def scenario_before() -> None:
        joe = await online(server, "joe", "persistent")
        await create(joe, room, "Joe", {"muc#roomconfig_persistentroom": True,
                                        "muc#roomconfig_roomname": "Debian Handbook"})
        await muc(joe).set_affiliation(JID(room), "member", jid=JID("roland@falcot.com"), timeout=TIMEOUT)
        await offline(joe)

    async def scenario_after() -> None:
        joe = await online(server, "joe", "persistent")
        info = await joe.plugin["xep_0030"].get_info(jid=room, timeout=TIMEOUT)
        assert "muc_persistent" in info["disco_info"]["features"]
        assert ("conference", "text", None, "Debian Handbook") in info["disco_info"]["identities"]
        members = await muc(joe).get_affiliation_list(JID(room), "member", timeout=TIMEOUT)
        assert members == [JID("roland@falcot.com")]
        await offline(joe)

    run(scenario_before, 45)
    assert server.stop() == 0
    server.start(wait_for="c2s")
    run(scenario_after, 45)

"""XMPP IM features end to end: slixmpp clients against ``twistd -n unirtc`` with the bundled plugins.

One server serves the module (every plugin loaded by default: the config has no ``[xmpp]
plugins``); each test uses its own accounts, except the roster test, which also restarts the
server. slixmpp runs on its own asyncio loop in the test process.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.e2e.harness import ServerHarness
from tests.e2e.xmpp_clients import events, log_in, offline, run, serving, trusting_client

USERS = ("joe", "roland", "ann", "bob", "carol", "dave")
TIMEOUT = 10.0
PLUGINS = ("xep_0030", "xep_0054", "xep_0077", "xep_0092", "xep_0191", "xep_0199", "xep_0202", "xep_0280",
           "xep_0313")


def password(user: str) -> str:
    return f"{user}-Passw0rd"


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    harness = ServerHarness(tmp_path_factory.mktemp("xmpp-features") / "server")
    harness.adduser(f"{USERS[0]}@falcot.com", password(USERS[0]))  # creates the database
    with ThreadPoolExecutor(len(USERS)) as pool:  # each unirtc-ctl is a process: run them together
        list(pool.map(lambda user: harness.adduser(f"{user}@falcot.com", password(user)), USERS[1:]))
    yield from serving(harness, request)


async def online(server: ServerHarness, user: str, resource: str, presence: bool = True,
                 secret: str | None = None) -> slixmpp.ClientXMPP:
    """Log in over STARTTLS with SCRAM-SHA-256; subscriptions are answered by the test, not slixmpp."""
    client = trusting_client(f"{user}@falcot.com/{resource}", secret or password(user),
                             server.directory / "var" / "certificate.pem", PLUGINS)
    client.auto_authorize, client.auto_subscribe = None, False

    async def on_start() -> None:
        await client.get_roster()
        if presence:
            client.send_presence()

    return await log_in(client, server.ports["c2s"], on_start)


async def next_from(queue: asyncio.Queue[Any], sender: str, timeout: float = TIMEOUT) -> Any:
    """The next event whose stanza comes from ``sender`` (a bare or full JID)."""
    async def wait() -> Any:
        while True:
            stanza = await queue.get()
            if sender in (str(stanza["from"]), str(stanza["from"].bare)):
                return stanza
    return await asyncio.wait_for(wait(), timeout)


async def roster_item(client: slixmpp.ClientXMPP, jid: str) -> dict[str, Any]:
    """The item as slixmpp's roster holds it after a (versioned) roster get and the pushes."""
    await client.get_roster()
    item = client.client_roster[jid]
    return {"subscription": item["subscription"], "name": item["name"], "groups": item["groups"]}


def test_subscriptionPresenceAndRosterPersistence(server) -> None:
    """
    If joe adds roland and each approves the other's subscription request, both rosters say
    'both', each sees the other's presence, and joe's roster (name, group, state) is the same
    after reconnecting and after a server restart, where a probe shows him roland's presence.
    """
    async def handshake() -> None:
        joe, roland = await online(server, "joe", "laptop"), await online(server, "roland", "desk")
        joe_requests, roland_requests = events(joe, "presence_subscribe"), events(roland, "presence_subscribe")
        joe_sees, roland_sees = events(joe, "presence_available"), events(roland, "presence_available")
        await joe.update_roster("roland@falcot.com", name="Roland", groups=["Friends"])
        joe.send_presence_subscription(pto="roland@falcot.com")
        await next_from(roland_requests, "joe@falcot.com")
        roland.send_presence(pto="joe@falcot.com", ptype="subscribed")
        await next_from(joe_sees, "roland@falcot.com/desk")
        roland.send_presence_subscription(pto="joe@falcot.com")
        await next_from(joe_requests, "roland@falcot.com")
        joe.send_presence(pto="roland@falcot.com", ptype="subscribed")
        await next_from(roland_sees, "joe@falcot.com/laptop")
        assert (await roster_item(roland, "joe@falcot.com"))["subscription"] == "both"
        item = await roster_item(joe, "roland@falcot.com")
        assert (item["subscription"], item["name"], item["groups"]) == ("both", "Roland", ["Friends"])
        await offline(joe)
        joe = await online(server, "joe", "laptop2")
        assert (await roster_item(joe, "roland@falcot.com"))["subscription"] == "both"
        await offline(joe, roland)

    run(handshake)
    server.stop()
    server.start(wait_for="c2s")

    async def after_restart() -> None:
        roland = await online(server, "roland", "desk")
        joe = await online(server, "joe", "laptop", presence=False)
        joe_sees = events(joe, "presence_available")
        joe.send_presence()
        await next_from(joe_sees, "roland@falcot.com/desk")
        item = await roster_item(joe, "roland@falcot.com")
        assert (item["subscription"], item["name"], item["groups"]) == ("both", "Roland", ["Friends"])
        await offline(joe, roland)

    run(after_restart)


def test_offlineMessageDeliveredAtLogin(server) -> None:
    """
    If ann writes to bob while bob is offline, ann gets no error and bob receives the message,
    with a delay stamp, as soon as he logs in.
    """
    async def scenario() -> None:
        ann = await online(server, "ann", "phone")
        errors = events(ann, "message_error")
        ann.send_message(mto="bob@falcot.com", mbody="call me back", mtype="chat")
        await asyncio.sleep(0.3)
        assert errors.empty()
        bob = await online(server, "bob", "desk", presence=False)
        messages = events(bob, "message")
        bob.send_presence()
        message = await next_from(messages, "ann@falcot.com/phone")
        assert message["body"] == "call me back"
        assert message["delay"]["stamp"] is not None
        await offline(ann, bob)

    run(scenario)


def test_vcardVersionAndTime(server) -> None:
    """
    If carol publishes a vCard, dave reads it; the server answers software version (unirtc)
    and entity time.
    """
    async def scenario() -> None:
        carol, dave = await online(server, "carol", "a"), await online(server, "dave", "b")
        vcard = carol.plugin["xep_0054"].make_vcard()
        vcard["FN"], vcard["NICKNAME"] = "Carol Falcot", "carol"
        await carol.plugin["xep_0054"].publish_vcard(vcard, timeout=TIMEOUT)
        iq = await dave.plugin["xep_0054"].get_vcard("carol@falcot.com", timeout=TIMEOUT)
        assert iq["vcard_temp"]["FN"] == "Carol Falcot"
        version = await dave.plugin["xep_0092"].get_version("falcot.com", timeout=TIMEOUT)
        assert version["software_version"]["name"] == "unirtc"
        time = await dave.plugin["xep_0202"].get_entity_time("falcot.com", timeout=TIMEOUT)
        entity_time = time["entity_time"].xml  # raw XML: slixmpp's tzo parser expects another format
        assert entity_time.find("{urn:xmpp:time}tzo").text == "+00:00"
        assert entity_time.find("{urn:xmpp:time}utc").text.endswith("Z")
        await offline(carol, dave)

    run(scenario)


def test_carbonsCopyToSecondResource(server) -> None:
    """
    If carol has two resources with carbons enabled, what one sends to dave reaches the other
    as a sent carbon, and what dave sends to the first reaches the other as a received carbon.
    """
    async def scenario() -> None:
        laptop, phone = await online(server, "carol", "laptop"), await online(server, "carol", "phone")
        dave = await online(server, "dave", "desk")
        for client in (laptop, phone):
            await client.plugin["xep_0280"].enable(timeout=TIMEOUT)
        sent, received = events(phone, "carbon_sent"), events(phone, "carbon_received")
        laptop.send_message(mto="dave@falcot.com", mbody="sent from laptop", mtype="chat")
        carbon = await asyncio.wait_for(sent.get(), TIMEOUT)
        assert carbon["carbon_sent"]["body"] == "sent from laptop"
        dave.send_message(mto="carol@falcot.com/laptop", mbody="to the laptop", mtype="chat")
        carbon = await asyncio.wait_for(received.get(), TIMEOUT)
        assert carbon["carbon_received"]["body"] == "to the laptop"
        assert str(carbon["carbon_received"]["from"]) == "dave@falcot.com/desk"
        await offline(laptop, phone, dave)

    run(scenario)


def test_blockingStopsMessages(server) -> None:
    """
    If ann blocks dave, dave's message is bounced and never reaches ann, the block list shows
    dave; after unblocking, dave's messages arrive again.
    """
    async def scenario() -> None:
        ann, dave = await online(server, "ann", "blocker"), await online(server, "dave", "pest")
        ann_inbox, dave_errors = events(ann, "message"), events(dave, "message_error")
        await ann.plugin["xep_0191"].block("dave@falcot.com", timeout=TIMEOUT)
        assert await ann.plugin["xep_0191"].get_blocked_jids(timeout=TIMEOUT) == {slixmpp.JID("dave@falcot.com")}
        dave.send_message(mto="ann@falcot.com/blocker", mbody="let me in", mtype="chat")
        error = await asyncio.wait_for(dave_errors.get(), TIMEOUT)
        assert error["error"]["condition"] == "service-unavailable"
        assert ann_inbox.empty()
        await ann.plugin["xep_0191"].unblock("dave@falcot.com", timeout=TIMEOUT)
        dave.send_message(mto="ann@falcot.com/blocker", mbody="friends again?", mtype="chat")
        message = await next_from(ann_inbox, "dave@falcot.com/pest")
        assert message["body"] == "friends again?"
        await offline(ann, dave)

    run(scenario)


def test_malformedPayloadsGetStanzaErrors(server) -> None:
    """
    If a client sends a roster set with two items, a block without items and private XML in a
    reserved namespace, each gets its stanza error and the session keeps working (ping).
    """
    async def scenario() -> None:
        bob = await online(server, "bob", "fuzz")
        cases = [
            ("<query xmlns='jabber:iq:roster'><item jid='a@falcot.com'/><item jid='b@falcot.com'/></query>", "bad-request"),
            ("<block xmlns='urn:xmpp:blocking'/>", "bad-request"),
            ("<query xmlns='jabber:iq:private'><x xmlns='jabber:iq:private'/></query>", "not-acceptable"),
            ("<query xmlns='jabber:iq:roster'><item jid='bob@falcot.com'/></query>", "not-allowed"),
        ]
        for payload, condition in cases:
            iq = bob.make_iq_set()
            iq.append(slixmpp.xmlstream.ET.fromstring(payload))
            with pytest.raises(IqError) as raised:
                await iq.send(timeout=TIMEOUT)
            assert raised.value.condition == condition, payload
        await bob.plugin["xep_0199"].ping("falcot.com", timeout=TIMEOUT)
        await offline(bob)

    run(scenario)


def test_archiveAndPasswordChange(server) -> None:
    """
    If carol writes to dave, dave finds the message in his archive (XEP-0313, filtered by
    carol's JID); then dave changes his password in band (XEP-0077): the new password logs in
    and the old one is refused.
    """
    async def scenario() -> None:
        carol, dave = await online(server, "carol", "mam"), await online(server, "dave", "mam")
        dave_inbox = events(dave, "message")
        carol.send_message(mto="dave@falcot.com/mam", mbody="for the record", mtype="chat")
        await next_from(dave_inbox, "carol@falcot.com/mam")
        iq = await dave.plugin["xep_0313"].retrieve(with_jid=slixmpp.JID("carol@falcot.com"), timeout=TIMEOUT)
        bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in iq["mam"]["results"]]
        assert "for the record" in bodies
        await dave.plugin["xep_0077"].change_password("n3w-dave-Passw0rd", jid="falcot.com", timeout=TIMEOUT)
        await offline(carol, dave)
        dave = await online(server, "dave", "again", secret="n3w-dave-Passw0rd")
        await offline(dave)
        with pytest.raises(RuntimeError):
            await online(server, "dave", "old")

    run(scenario)

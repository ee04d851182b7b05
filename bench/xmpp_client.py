"""A lean raw XMPP client for the c2s benchmark (bench/xmpp.py), in worker processes.

No XML parsing: during login it waits for byte markers (``</stream:features>``, ``<proceed``,
``</challenge>``, ``</success>``, ``</iq>``, the reflected ``<presence``); afterwards receivers
only look for ``<body>SEQ SENT_NS</body>``. TLS is asyncio's (the ssl module), SCRAM (RFC 5802)
is hashlib/hmac with the SaltedPassword derivation from ``unirtc.directory.secrets``; the
orchestrator passes each account's derived keys in, so no PBKDF2 runs while the clock does.

``Clients(count, port, cafile, mechanism, keys)`` forks ``count`` workers, each with its own
asyncio loop; ``call(command, [kwargs per worker])`` runs ``Worker.<command>`` in each and
returns their replies: ``login`` (keeps the sessions), ``messages`` and ``close``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import multiprocessing
import os
import re
import resource
import signal
import ssl
import time
from pathlib import Path

from unirtc.directory.secrets import salted_password, scram_keys

DOMAIN = "falcot.com"
PASSWORD = "bench-Passw0rd"
HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
HEADER = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='{DOMAIN}' version='1.0' "
          "xmlns:stream='http://etherx.jabber.org/streams'>").encode()
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
BIND = (b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>bench</resource></bind></iq>")
BODY = re.compile(rb"<body>(\d+) (\d+)</body>")
TIMEOUT = 60.0
Keys = dict[tuple[bytes, int], tuple[bytes, bytes, bytes]]


class Stream(asyncio.Protocol):
    """One connection: bytes gathered until a marker during login, handed to ``sink`` after."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.markers: tuple[bytes, ...] = ()
        self.waiter: asyncio.Future[None] | None = None
        self.sink = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)
            return
        self.buffer += data
        if self.waiter is not None and not self.waiter.done() and any(m in self.buffer for m in self.markers):
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"closed by the server after {self.buffer[-300:]!r}"))

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def until(self, *markers: bytes) -> bytes:
        """Everything up to the end of the first marker; the buffer keeps the rest."""
        while not any(m in self.buffer for m in markers):
            self.markers = markers
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        end = min(self.buffer.find(m) + len(m) for m in markers if m in self.buffer)
        seen, self.buffer = self.buffer[:end], self.buffer[end:]
        return seen


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _sasl_text(seen: bytes, name: str) -> str:
    match = re.search(rb"<%s[^>]*>([^<]*)</%s>" % (name.encode(), name.encode()), seen)
    if match is None:
        raise RuntimeError(f"SASL failed: {seen[-300:]!r}")
    return base64.b64decode(match.group(1)).decode()


async def authenticate(stream: Stream, mechanism: str, keys: Keys) -> bool:
    """RFC 5802 client side; returns whether the SaltedPassword had to be derived now."""
    hash_name = HASHES[mechanism]
    nonce = _b64(os.urandom(18))
    first_bare = f"n={stream.user},r={nonce}"
    stream.write(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{_b64('n,,' + first_bare)}</auth>".encode())
    server_first = _sasl_text(await stream.until(b"</challenge>", b"</failure>"), "challenge")
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    if not fields["r"].startswith(nonce):
        raise RuntimeError("the server nonce does not extend ours")
    derived = (salt, iterations) not in keys
    if derived:
        keys[(salt, iterations)] = scram_keys(hash_name, salted_password(hash_name, PASSWORD, salt, iterations))
    client_key, stored_key, server_key = keys[(salt, iterations)]
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = (int.from_bytes(client_key) ^ int.from_bytes(signature)).to_bytes(len(client_key))
    stream.write(f"<response xmlns='{NS_SASL}'>{_b64(f'{without_proof},p={_b64(proof)}')}</response>".encode())
    verifier = _sasl_text(await stream.until(b"</success>", b"</failure>"), "success")
    if verifier != "v=" + _b64(hmac.new(server_key, auth_message, hash_name).digest()):
        raise RuntimeError("wrong server signature")
    return derived


async def login(port: int, context: ssl.SSLContext, user: str, mechanism: str, keys: Keys) -> tuple[Stream, bool]:
    """Connect, STARTTLS, SCRAM, bind, initial presence (RFC 6120 §5-§7, RFC 6121 §4.2)."""
    loop = asyncio.get_running_loop()
    transport, stream = await loop.create_connection(lambda: Stream(user), "127.0.0.1", port)
    stream.write(HEADER)
    await stream.until(b"</stream:features>")
    stream.write(STARTTLS)
    await stream.until(b"<proceed")
    stream.transport = await loop.start_tls(transport, stream, context, server_hostname=DOMAIN)
    stream.buffer = b""
    stream.write(HEADER)
    await stream.until(b"</stream:features>")
    derived = await authenticate(stream, mechanism, keys)
    stream.write(HEADER)
    await stream.until(b"</stream:features>")
    stream.write(BIND)
    if b"result" not in await stream.until(b"</iq>"):
        raise RuntimeError("bind failed")
    stream.write(b"<presence/>")
    await stream.until(b"<presence")
    return stream, derived


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Worker:
    """One client process: commands from the orchestrator over a pipe, one asyncio loop."""

    def __init__(self, port: int, cafile: str, mechanism: str, keys: Keys) -> None:
        self.port, self.mechanism, self.keys = port, mechanism, keys
        self.context = ssl.create_default_context(cafile=cafile)
        self.streams: list[Stream] = []

    async def login(self, users: list[str], concurrency: int, start_at: float) -> dict:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        pending = iter(users)
        took: list[float] = []
        errors: list[str] = []
        derived = 0

        async def one_at_a_time() -> None:
            nonlocal derived
            for user in pending:
                started = time.monotonic()
                try:
                    async with asyncio.timeout(TIMEOUT):
                        stream, fresh = await login(self.port, self.context, user, self.mechanism, self.keys)
                except Exception as e:
                    errors.append(f"{user}: {type(e).__name__}: {e}")
                    continue
                took.append(time.monotonic() - started)
                derived += fresh
                self.streams.append(stream)

        started, cpu = time.monotonic(), _cpu()
        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))
        tls = self.streams[-1].transport.get_extra_info("ssl_object") if self.streams else None
        return {"start": started, "end": time.monotonic(), "cpu": _cpu() - cpu, "took": took,
                "errors": errors, "derived": derived,
                "tls": f"{tls.version()} {tls.cipher()[0]}" if tls is not None else "?"}

    async def messages(self, window: int, start_at: float, warmup: float, seconds: float) -> dict:
        """Each even stream sends to the next one; latencies are kept for the measuring window."""
        measure_from = int((start_at + warmup) * 1e9)
        measure_to = measure_from + int(seconds * 1e9)
        latencies: list[int] = []
        counts = {"sent": 0, "received": 0, "bounced": 0}
        pairs = [(self.streams[i], self.streams[i + 1]) for i in range(0, len(self.streams) - 1, 2)]
        for sender, receiver in pairs:
            receiver.sink = self._receiver(sender, receiver.user, latencies, counts, measure_from, measure_to)
            sender.sink = lambda data: counts.__setitem__("bounced", counts["bounced"] + data.count(b"<message"))
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        started, cpu = time.monotonic(), _cpu()
        for sender, receiver in pairs:
            for _ in range(window):
                receiver.sink(None)
        await asyncio.sleep(max(0.0, measure_to / 1e9 - time.monotonic()))
        cpu_measured = _cpu() - cpu
        grace = time.monotonic() + 5.0
        while counts["received"] < counts["sent"] and time.monotonic() < grace:
            await asyncio.sleep(0.05)
        return {"start": started, "end": measure_to / 1e9, "cpu": cpu_measured, "latencies": latencies,
                **counts}

    @staticmethod
    def _receiver(sender: Stream, to: str, latencies: list[int], counts: dict,
                  measure_from: int, measure_to: int):
        """The receiving side of one pair: record each body's latency and send the next one."""
        prefix = f"<message to='{to}@{DOMAIN}' type='chat' id='m".encode()
        state = {"tail": b"", "seq": 0}

        def send() -> None:
            seq = state["seq"]
            state["seq"] = seq + 1
            counts["sent"] += 1
            sender.transport.write(b"%s%d'><body>%d %d</body></message>" % (prefix, seq, seq, time.monotonic_ns()))

        def sink(data: bytes | None) -> None:
            if data is None:  # the first messages of the window
                send()
                return
            data = state["tail"] + data
            end = data.rfind(b"</body>")
            if end < 0:
                state["tail"] = data[-65536:]
                return
            end += len(b"</body>")
            now = time.monotonic_ns()
            for match in BODY.finditer(data, 0, end):
                counts["received"] += 1
                if measure_from <= now <= measure_to:
                    latencies.append(now - int(match.group(2)))
                if now < measure_to:
                    send()
            state["tail"] = data[end:]

        return sink

    async def close(self) -> dict:
        """``</stream:stream>`` on every stream; the server closes; stragglers are aborted."""
        streams, self.streams = self.streams, []
        for stream in streams:
            stream.sink = lambda data: None
            if not stream.lost.done():
                stream.write(b"</stream:stream>")
        if streams:
            await asyncio.wait([s.lost for s in streams], timeout=10)
        aborted = 0
        for stream in streams:
            if not stream.lost.done():
                stream.transport.abort()
                aborted += 1
        return {"aborted": aborted}


def _worker_main(pipe, port: int, cafile: str, mechanism: str, keys: Keys) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when clients stop
    loop = asyncio.new_event_loop()
    worker = Worker(port, cafile, mechanism, keys)
    while True:
        command, kwargs = pipe.recv()
        if command == "quit":
            break
        try:
            pipe.send(loop.run_until_complete(getattr(worker, command)(**kwargs)))
        except Exception as e:
            pipe.send({"error": f"{type(e).__name__}: {e}"})
    loop.run_until_complete(worker.close())
    loop.close()


class Clients:
    """``count`` worker processes; ``call`` sends one command to each and gathers the replies."""

    def __init__(self, count: int, port: int, cafile: Path, mechanism: str, keys: Keys) -> None:
        context = multiprocessing.get_context("fork")
        self.pipes, self.processes = [], []
        self.busy = False
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child, port, str(cafile), mechanism, keys),
                                      daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def send(self, command: str, kwargs: list[dict]) -> None:
        self.busy = True
        for pipe, args in zip(self.pipes, kwargs):
            pipe.send((command, args))

    def collect(self) -> list[dict]:
        results = [pipe.recv() for pipe in self.pipes]
        self.busy = False
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError("client error: " + "; ".join(errors))
        return results

    def call(self, command: str, kwargs: list[dict]) -> list[dict]:
        self.send(command, kwargs)
        return self.collect()

    def stop(self) -> None:
        """Quit between commands; in the middle of one (an error, SIGTERM), end them at once."""
        for pipe, process in zip(self.pipes, self.processes):
            try:
                if self.busy:
                    process.terminate()
                elif process.is_alive():
                    pipe.send(("quit", {}))
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
                process.join()

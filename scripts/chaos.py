#!/usr/bin/env python3
"""Chaos proof of Sentient Hub: every question is answered exactly once and in order, whatever
crashes (issue 12, item 3).

What it proves
    Two or three `sentient-hub serve` instances share one private PostgreSQL cluster and one
    private nats-server (JetStream), with the real `sentient-hub llm-worker` behind a fake
    OpenAI-compatible server and a fake Graph API that answers sends as Meta does (after 3-50 ms)
    and posts Meta's signed status webhooks ("sent", "delivered", with `biz_opaque_callback_data`)
    back to any live instance. Trusted directors flood signed text deliveries (one after another
    per user, each retried until it gets a 200, 10 % posted twice; some in bursts just before a
    fault) while, one phase after another:
      hub-kill    `kill -9` of a hub instance every few seconds, rotating; each kill waits up to
                  1.5 s for a Graph send of that instance to be in flight, so it lands between
                  Meta accepting and the hub recording; restarted on the same port;
      nats-kill   `kill -9` of nats-server, restarted on the same port and store directory;
      pg-restart  PostgreSQL stopped with `-m immediate` (a crash) and started again (the long
                  mode's second one is `pg_ctl restart -m fast`);
      llm-absent  the llm-worker killed with `kill -9`, absent for a while, restarted;
      nats-wipe   (only with --nats-wipe) nats-server killed and its store directory deleted:
                  JetStream loses every stream, consumer and job.
    Then it waits for quiescence, and maps every Graph send to its question through the
    database (`wa_outbox.uuid` = the send's `biz_opaque_callback_data`). Before the flood a probe
    asks each question once with no fault: each must be answered, or the set-up failed.
    Nothing shared is touched: not PostgreSQL on 5432, not NATS on 4222. The hub's alert
    detectors are off (they would push alerts to the flooding directors).

Run it (as root: the private PostgreSQL runs as the `postgres` OS user)
    python3 scripts/chaos.py --short --bin target/release/sentient-hub   # CI: about a minute
    python3 scripts/chaos.py --long  --bin target/release/sentient-hub   # 3 instances, faults repeated, ~3 min
    --report PATH  JSON report (default target/chaos/report-<mode>.json)
    --keep         keep the work directory (logs, database, NATS store) in /tmp
    --seed N       the same questions, schedule and latencies again
    --nats-wipe    add the nats-wipe phase
    --self-test    check the measuring: plant one loss, one duplicate and one order violation
                   in the fake Graph's records; exit 0 only if exactly those are found
    --wait-bin S   wait up to S seconds for the binary to appear

The figures (per phase: the questions first posted during that phase; and in total)
    in          distinct questions (wamids) the hub acknowledged with a 200
    dup posts   of those, how many were posted a second time (same wamid and body)
    answered    questions whose reply (part 1 of the `answer` outbox row) reached the fake Graph API
    lost        acknowledged questions not answered when the run ended; each is printed with its
                inbox and outbox rows as evidence
    duplicated  extra copies: a callback uuid, or an (inbound wamid, part), that the fake Graph API
                received more than once
    order       per-sender order violations: the reply to a user's question reached the fake
                Graph API after the reply to the same user's next answered question
    down        longest time a faulted component was away (kill to ready again), seconds
    first ans   seconds from a fault to the first reply to a question acknowledged after it
                (the worst fault of the phase): how long new questions went unanswered
    drain       seconds from the last component coming back to the reply to the last question of
                the phase acknowledged before that ("-" when one of them was lost)
    lat p50/max reply time minus acknowledgement time
    retries     webhook posts of the flood that had to be retried (refused, 5xx, timeout)
    llm/data    answers the hub logged as from the LLM / from the data (`ai_chat.outcome`;
                "help" is always from the data)
    Below the table: kills that landed with a send of the victim in flight, sends Meta "took"
    whose answer the hub never received, Graph sends by purpose, statuses posted, inbox rows by
    status, dead letters, children that exited by themselves (restarted, and listed).

Quiescence: until every question is answered, the database holds no open work (inbox pending
or relayed; outbox pending, sending, or unknown still to be settled) and nothing was sent for
3 s; or until nothing was sent for longer than any recovery path of the hub needs (lease +
unknown grace, ack wait x max deliver + re-relay margin, plus 15 s); or a deadline.

Exit status: 0 when lost, duplicated and order violations (and misdirected replies and never
accepted questions) are all zero; 1 otherwise; 2 when the set-up failed (the message says what);
130 when interrupted. Every child's output goes to <work dir>/logs/; on failure the logs are
copied next to the report, their paths and the hub logs' last lines are printed. The work
directory is removed at the end (unless --keep), also after Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import hmac
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Questions the hub answers from its demo data (the probe checks each once before the flood).
QUESTIONS = [
    "omzet bulan ini",
    "berapa order bulan ini",
    "reject rate minggu ini",
    "help",
]

PHASES = ["hub-kill", "nats-kill", "pg-restart", "llm-absent"]

MODES = {
    "short": dict(
        instances=2, users=8, questions=16, rounds=1, dup_rate=0.10, burst_fraction=0.4,
        hub_kills=4, kill_every=3.0, nats_kills=1, nats_down=3.0, pg_restarts=1, pg_down=2.0,
        llm_down=8.0, lead=1.5, tail=3.0, quiesce_max=75.0,
    ),
    "long": dict(
        instances=3, users=8, questions=40, rounds=2, dup_rate=0.10, burst_fraction=0.4,
        hub_kills=8, kill_every=3.0, nats_kills=2, nats_down=4.0, pg_restarts=2, pg_down=3.0,
        llm_down=12.0, lead=2.0, tail=4.0, quiesce_max=150.0,
    ),
}

GRAPH_VERSION = "v23.0"
PHONE_NUMBER_ID = "100000000000042"
ACCESS_TOKEN = "chaos-token"
NEW_KEYS = ["SENTIENT__WHATSAPP__UNKNOWN_GRACE_SECS", "SENTIENT__INBOX__RERELAY_MARGIN_SECS"]

# Timings handed to the hub (seconds), also used to size the quiescence wait.
GRAPH_TIMEOUT = 3
UNKNOWN_GRACE = 5
MESSAGES_PER_SECOND = 4
ACK_WAIT = 5
MAX_DELIVER = 5
RERELAY_MARGIN = 5


class SetupError(Exception):
    """The chaos run could not be set up: exit 2."""


# ---------------------------------------------------------------------------------------------
# small utilities

T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[{now():7.1f}s] {msg}", flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(ANSI.sub("", line) for line in text.splitlines()[-lines:])


async def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    with contextlib.suppress(Exception):
        await w.wait_closed()
    return True


STAMP = re.compile(r"^\S*\d{4}-\d\d-\d\dT[\d:.]+Z\s+")


def tail_collapsed(path: Path, entries: int = 20) -> str:
    """The log's last lines, runs of the same message (timestamps aside) shown once with a count."""
    out: list[list] = []
    for line in tail(path, 600).splitlines():
        key = re.sub(r"request_id=[0-9a-f-]+", "", STAMP.sub("", line))
        if out and out[-1][0] == key:
            out[-1][2] += 1
        else:
            out.append([key, line, 1])
    return "\n".join(line if n == 1 else f"{line}   [x{n} in a row]" for _, line, n in out[-entries:])


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# ---------------------------------------------------------------------------------------------
# minimal HTTP/1.1 (asyncio streams): the fakes' server and the webhook client


async def read_http_message(reader: asyncio.StreamReader, request: bool):
    """One request (method, target, headers, body) or response (status, headers, body); None on
    a clean EOF before the first line."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    elif not request:
        body = await reader.read()
    if request:
        return parts[0], parts[1], headers, body
    return int(parts[1]), headers, body


class HttpServer:
    """Serves `handler(method, path, headers, body, peer) -> (status, json-able)` with keep-alive."""

    def __init__(self, name: str, handler):
        self.name, self.handler = name, handler
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader, writer) -> None:
        self.writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            while True:
                req = await read_http_message(reader, request=True)
                if req is None:
                    break
                method, path, headers, body = req
                alive = lambda: not (reader.at_eof() or writer.is_closing())  # noqa: E731
                try:
                    status, payload = await self.handler(method, path, headers, body, (peer, alive))
                except Exception as e:  # a bug in a fake: answer 500, keep serving
                    status, payload = 500, {"error": {"message": repr(e), "code": 1}}
                data = json.dumps(payload).encode()
                close = headers.get("connection", "").lower() == "close"
                head = (
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(data)}\r\n{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n"
                )
                writer.write(head.encode() + data)
                await writer.drain()
                if close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            for w in list(self.writers):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


async def http_request(port: int, method: str, path: str, body: bytes = b"",
                       headers: dict[str, str] | None = None, timeout: float = 5.0):
    """One request on a fresh connection: (status, body). Raises OSError/TimeoutError."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n"
            for k, v in (headers or {}).items():
                head += f"{k}: {v}\r\n"
            head += f"content-length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            resp = await read_http_message(reader, request=False)
            if resp is None:
                raise ConnectionResetError("connection closed without an answer")
            return resp[0], resp[2]
        finally:
            writer.close()
    return await asyncio.wait_for(go(), timeout)


# ---------------------------------------------------------------------------------------------
# children


class Proc:
    """A child in its own process group, output appended to its log file; restartable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, run):
        self.name, self.argv, self.env, self.log_path, self.run = name, argv, env, log_path, run
        self.p: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.expected_exit = True
        self.monitor: asyncio.Task | None = None

    def running(self) -> bool:
        return self.p is not None and self.p.returncode is None

    async def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(f"\n===== chaos: start #{self.starts} at {now():.1f}s: {' '.join(self.argv)}\n".encode())
            self.p = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, cwd=str(REPO), stdin=subprocess.DEVNULL,
                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.run.pgids.add(self.p.pid)
        self.expected_exit = False
        self.monitor = asyncio.create_task(self._watch(self.p))

    async def _watch(self, p) -> None:
        rc = await p.wait()
        self.run.pgids.discard(p.pid)
        if not self.expected_exit and p is self.p:
            self.run.unexpected_exit(self, rc)

    def _signal_group(self, sig) -> None:
        if self.p is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.p.pid, sig)

    async def kill9(self) -> None:
        self.expected_exit = True
        if self.running():
            self._signal_group(signal.SIGKILL)
            await self.p.wait()
        else:
            self._signal_group(signal.SIGKILL)  # leftovers of the group

    async def stop(self, grace: float = 3.0) -> None:
        self.expected_exit = True
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.p.wait(), grace)
            except asyncio.TimeoutError:
                pass
        await self.kill9()


class Postgres:
    """A private cluster run as the postgres OS user: initdb, pg_ctl start/stop, own port and socket."""

    def __init__(self, root: Path, port: int):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                          key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
        if not versions:
            raise SetupError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bindir = Path(versions[-1]).parent
        try:
            self.pw = pwd.getpwnam("postgres")
        except KeyError:
            raise SetupError("no 'postgres' OS user to run the private PostgreSQL cluster as")
        self.root, self.port = root, port
        self.data, self.sock = root / "data", root / "sock"
        self.log_path = root / "postgres.log"
        self.started = False

    def _run(self, *args: str, timeout: float = 90) -> tuple[int, str]:
        out = self.root / "pg_ctl.out"
        with open(out, "ab") as f:
            r = subprocess.run(["runuser", "-u", "postgres", "--", *args], cwd=str(self.root),
                               stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                               timeout=timeout)
        return r.returncode, tail(out, 15)

    def init(self) -> None:
        self.root.mkdir(parents=True)
        self.sock.mkdir()
        for p in (self.root, self.sock):
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)
        rc, out = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8", "--no-sync")
        if rc != 0:
            raise SetupError(f"initdb failed (rc {rc}):\n{out}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\n# chaos\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sock}'\nmax_connections = 200\n"
                    "logging_collector = off\nlog_min_messages = warning\n")

    def start(self) -> None:
        rc, out = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                            str(self.log_path), "-w", "-t", "60", "start")
        if rc != 0:
            raise RuntimeError(f"pg_ctl start failed (rc {rc}):\n{out}\n{tail(self.log_path, 15)}")
        self.started = True

    def stop(self, mode: str = "immediate") -> None:
        rc, out = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                            "-t", "60", "stop")
        if rc != 0:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed (rc {rc}):\n{out}")

    def restart_fast(self) -> None:
        rc, out = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                            str(self.log_path), "-m", "fast", "-w", "-t", "60", "restart")
        if rc != 0:
            raise RuntimeError(f"pg_ctl restart -m fast failed (rc {rc}):\n{out}")

    def kill_leftovers(self) -> None:
        """Last resort at clean-up: SIGKILL the postmaster named in postmaster.pid."""
        with contextlib.suppress(Exception):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def psql(self, sql: str, db: str = "chaos", timeout: float = 30) -> str:
        env = dict(os.environ, PGCONNECT_TIMEOUT="5")
        r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                           env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def json_rows(self, select: str) -> list[dict]:
        out = self.psql(f"select coalesce(json_agg(t), '[]') from ({select}) t")
        return json.loads(out or "[]")


# ---------------------------------------------------------------------------------------------
# the fakes


@dataclass
class GraphSend:
    t: float
    to: str | None
    callback: str | None
    wamid: str
    kind: str | None
    text: str
    peer_port: int
    orphaned: bool = False


class FakeGraph:
    """Meta's Graph API: sends answered after a small random latency, statuses posted back."""

    def __init__(self, run):
        self.run = run
        self.sends: list[GraphSend] = []
        self.reads = 0
        self.rejected = 0
        self.inflight: dict[int, int] = {}  # id -> peer port
        self.last_send_at = 0.0
        self.status_posted = Counter()
        self.status_tasks: set[asyncio.Task] = set()
        self.seq = 0
        self.server = HttpServer("graph", self.handle)

    async def handle(self, method, path, headers, body, conn):
        peer, alive = conn
        if method != "POST" or path != f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages":
            self.rejected += 1
            return 404, {"error": {"message": f"unknown path {path}", "code": 100}}
        if headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            self.rejected += 1
            return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        msg = json.loads(body)
        if msg.get("status") == "read":
            self.reads += 1
            await asyncio.sleep(random.uniform(0.001, 0.01))
            return 200, {"success": True}
        self.seq += 1
        key = self.seq
        to = msg.get("to") or msg.get("recipient")
        wamid = f"wamid.CHAOS{self.run.run_id}{key:06d}{uuid.uuid4().hex[:12]}"
        kind = msg.get("type")
        text = ((msg.get("text") or {}).get("body")
                or ((msg.get("interactive") or {}).get("body") or {}).get("text") or "")
        t = now()
        send = GraphSend(t, to, msg.get("biz_opaque_callback_data"), wamid, kind, text[:160],
                         peer[1] if peer else 0)
        self.sends.append(send)
        self.last_send_at = t
        self.inflight[key] = peer[1] if peer else 0
        try:
            # Meta has the message now; the answer takes a while, so a kill -9 sometimes lands
            # between Meta accepting and the hub recording.
            await asyncio.sleep(random.uniform(0.003, 0.05))
        finally:
            self.inflight.pop(key, None)
        if not alive():
            send.orphaned = True  # Meta took it; the hub will never see this answer
        task = asyncio.create_task(self.post_statuses(to, wamid, msg.get("biz_opaque_callback_data")))
        self.status_tasks.add(task)
        task.add_done_callback(self.status_tasks.discard)
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                     "messages": [{"id": wamid}]}

    async def post_statuses(self, to, wamid, callback) -> None:
        await asyncio.sleep(random.uniform(0.2, 1.0))
        for word in ("sent", "delivered"):
            status = {"id": wamid, "status": word, "timestamp": str(int(time.time())),
                      "recipient_id": to,
                      "conversation": {"id": uuid.uuid4().hex, "origin": {"type": "service"}},
                      "pricing": {"billable": False, "pricing_model": "PMP", "category": "service"}}
            if word == "sent":
                status["conversation"]["expiration_timestamp"] = str(int(time.time()) + 86400)
            if callback is not None:
                status["biz_opaque_callback_data"] = callback
            body = json.dumps({"object": "whatsapp_business_account", "entry": [{
                "id": "0", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "0", "phone_number_id": PHONE_NUMBER_ID},
                    "statuses": [status]}}]}]}).encode()
            await self.run.deliver(body, stats=self.run.status_retries)
            self.status_posted[word] += 1
            await asyncio.sleep(random.uniform(0.1, 0.8))

    def victim_sending(self, pids: set[int]) -> bool:
        """Is a send whose connection belongs to one of `pids` in flight?"""
        ports = {p for p in self.inflight.values() if p}
        if not ports:
            return False
        return bool(ports & sockets_of(pids))


def sockets_of(pids: set[int]) -> set[int]:
    """Local TCP ports (IPv4) of the sockets that the processes `pids` hold."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    with contextlib.suppress(OSError):
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    ports.add(int(cols[1].split(":")[1], 16))
    return ports


class FakeLlm:
    """An OpenAI-compatible server: a short completion with token counts."""

    def __init__(self):
        self.requests = 0
        self.request_times: list[float] = []
        self.server = HttpServer("llm", self.handle)

    async def handle(self, method, path, headers, body, conn):
        if method == "GET":
            return 200, {"status": "ok"}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"unknown path {path}"}}
        req = json.loads(body or b"{}")
        self.requests += 1
        self.request_times.append(now())
        await asyncio.sleep(random.uniform(0.02, 0.15))
        prompt_chars = sum(len(str(m.get("content", ""))) for m in req.get("messages", []))
        content = "Baik, ringkasannya ada pada data di atas. Silakan tanyakan bila perlu rincian."
        return 200, {
            "id": f"chatcmpl-chaos-{self.requests}", "object": "chat.completion",
            "created": int(time.time()), "model": req.get("model", "chaos"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": 18,
                      "total_tokens": max(1, prompt_chars // 4) + 18},
        }


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class User:
    idx: int
    wa_id: str
    questions: list["Question"] = field(default_factory=list)


@dataclass
class Question:
    user: User
    idx: int
    phase: int
    text: str
    wamid: str
    body: bytes
    first_post: float | None = None
    acked_at: float | None = None
    dup: bool = False
    offset: float = 0.0
    attempts: int = 0
    dup_acked_at: float | None = None


@dataclass
class Fault:
    phase: int
    kind: str
    target: str
    at: float
    restored_at: float | None = None
    mid_send: bool | None = None
    note: str = ""


class Chaos:
    def __init__(self, args, mode: dict):
        self.args, self.mode = args, mode
        self.run_id = uuid.uuid4().hex[:6].upper()
        self.rng = random.Random(args.seed)
        random.seed(args.seed)
        self.pgids: set[int] = set()
        self.work = Path(tempfile.mkdtemp(prefix="sentient-chaos-"))
        os.chmod(self.work, 0o755)
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.graph = FakeGraph(self)
        self.llm = FakeLlm()
        self.pg: Postgres | None = None
        self.nats: Proc | None = None
        self.hubs: list[Proc] = []
        self.hub_ports: list[int] = []
        self.worker: Proc | None = None
        self.env: dict[str, str] = {}
        self.users: list[User] = []
        self.questions: list[Question] = []
        self.probe_questions: list[Question] = []
        self.faults: list[Fault] = []
        self.phases: list[dict] = []
        self.unexpected: list[dict] = []
        self.flood_retries: dict[int, Counter] = defaultdict(Counter)
        self.status_retries: Counter = Counter()
        self.dup_tasks: set[asyncio.Task] = set()
        self.current_phase = -1
        self.timings: dict[str, float] = {}
        self.dropped_keys: list[str] = []
        self.bin: Path | None = None
        self.deliver_deadline: float | None = None

    # ---- children and their supervision

    def unexpected_exit(self, proc: Proc, rc) -> None:
        """A child died by itself: note it (a finding) and restart it, as a process manager would."""
        self.unexpected.append({"child": proc.name, "rc": rc, "at": round(now(), 1),
                                "phase": self.phase_name(self.current_phase)})
        log(f"!! {proc.name} exited by itself (rc {rc}); restarting it in 1 s (log: {proc.log_path})")

        async def again():
            await asyncio.sleep(1.0)
            if not proc.expected_exit and not proc.running():
                await proc.start()
        asyncio.create_task(again())

    def phase_name(self, i: int) -> str:
        return self.phases[i]["name"] if 0 <= i < len(self.phases) else ("setup" if i < 0 else "quiesce")

    def hub_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("SENTIENT") or k in ("DATABASE_URL", "NATS_URL", "RUST_LOG"))}
        env.update({
            "SENTIENT_ENV": "local",
            "NO_COLOR": "1",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg.port}/chaos",
            "NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "SENTIENT__SERVER__HOST": "127.0.0.1",
            "SENTIENT__SERVER__SHUTDOWN_TIMEOUT_SECS": "2",
            "SENTIENT__DATABASE__ACQUIRE_TIMEOUT_SECS": "3",
            "SENTIENT__WHATSAPP__ACCESS_TOKEN": ACCESS_TOKEN,
            # A mail server is required beside a WhatsApp token; the directors are trusted
            # devices already, so no code is ever mailed.
            "SENTIENT__SMTP__HOST": "127.0.0.1",
            "SENTIENT__WHATSAPP__GRAPH_BASE_URL": f"http://127.0.0.1:{self.graph.server.port}",
            "SENTIENT__WHATSAPP__GRAPH_API_VERSION": GRAPH_VERSION,
            "SENTIENT__WHATSAPP__PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "SENTIENT__WHATSAPP__GRAPH_TIMEOUT_SECS": str(GRAPH_TIMEOUT),
            # A slow pace (Meta's is 80/s): answers queue behind the rate limiter, so a kill finds
            # rows waiting for their turn as well as rows in flight.
            "SENTIENT__WHATSAPP__MESSAGES_PER_SECOND": str(MESSAGES_PER_SECOND),
            "SENTIENT__WHATSAPP__RETRY_BASE_MS": "200",
            "SENTIENT__WHATSAPP__RETRY_MAX_MS": "2000",
            "SENTIENT__WHATSAPP__STALE_AFTER_SECS": "86400",
            "SENTIENT__WHATSAPP__UNKNOWN_GRACE_SECS": str(UNKNOWN_GRACE),
            "SENTIENT__INBOX__MAX_PER_SENDER_PER_MINUTE": "100000",
            "SENTIENT__INBOX__ACK_WAIT_SECS": str(ACK_WAIT),
            "SENTIENT__INBOX__MAX_DELIVER": str(MAX_DELIVER),
            "SENTIENT__INBOX__RERELAY_MARGIN_SECS": str(RERELAY_MARGIN),
            "SENTIENT__INBOX__RELAY_IDLE_MS": "200",
            "SENTIENT__BRAIN__LLM_TIMEOUT_SECS": "3",
            "SENTIENT__BRAIN__CIRCUIT_OPEN_SECS": "3",
            "SENTIENT__LLM__BASE_URL": f"http://127.0.0.1:{self.llm.server.port}",
            "SENTIENT__LLM__REQUEST_TIMEOUT_SECS": "2",
            "SENTIENT__LLM__CONNECT_TIMEOUT_SECS": "1",
            "SENTIENT__LLM__METRICS_PORT": "0",
            "SENTIENT__LLM__SHUTDOWN_TIMEOUT_SECS": "1",
            # The detectors would push alerts to the directors flooding here: not this proof's subject.
            "SENTIENT__ALERTS__DETECT_EVERY_MINS": "0",
        })
        for k in self.dropped_keys:
            env.pop(k, None)
        return env

    async def setup(self) -> None:
        a, m = self.args, self.mode
        t = now()
        self.bin = await self.find_binary()
        ports = free_ports(3 + m["instances"])
        self.nats_port, pg_port, llm_port = ports[:3]
        self.hub_ports = ports[3:]
        for tool in ("nats-server", "psql", "runuser"):
            if not shutil.which(tool):
                raise SetupError(f"{tool} is not on PATH")

        # private PostgreSQL
        self.pg = Postgres(self.work / "pg", pg_port)
        await asyncio.to_thread(self.pg.init)
        try:
            await asyncio.to_thread(self.pg.start)
        except RuntimeError as e:
            raise SetupError(f"the private PostgreSQL did not start: {e}")
        log(f"PostgreSQL {self.pg.bindir.parent.name} on 127.0.0.1:{pg_port} (data {self.pg.data})")

        # private NATS with JetStream
        self.nats = Proc("nats-server", ["nats-server", "-a", "127.0.0.1", "-p", str(self.nats_port),
                                         "-js", "-sd", str(self.work / "nats")],
                         dict(os.environ), self.logs / "nats.log", self)
        await self.nats.start()
        if not await self.wait_port(self.nats_port, 15):
            raise SetupError(f"nats-server did not listen on {self.nats_port}:\n{tail(self.nats.log_path)}")
        log(f"nats-server with JetStream on 127.0.0.1:{self.nats_port}")

        # fakes
        await self.graph.server.start()
        await self.llm.server.start(llm_port)
        log(f"fake Graph API on :{self.graph.server.port}, fake LLM on :{self.llm.server.port}")

        # database, migrations, demo data (and the new keys, if this binary knows them)
        self.env = self.hub_env()
        t_demo = now()
        while True:
            rc, out = await self.run_once([str(self.bin), "demo"], self.logs / "demo.log", 300)
            if rc == 0:
                break
            unknown = [k for k in NEW_KEYS if k not in self.dropped_keys
                       and re.search(rf"unknown field `?{k.split('__')[-1].lower()}", out)]
            if not unknown:
                raise SetupError(f"`sentient-hub demo` failed (rc {rc}); last lines:\n{tail(self.logs / 'demo.log')}")
            log(f"this binary does not know {', '.join(unknown)}: left out")
            self.dropped_keys += unknown
            self.env = self.hub_env()
        self.timings["demo_s"] = round(now() - t_demo, 1)
        log(f"database created, migrated, demo data loaded ({self.timings['demo_s']} s)")

        # trusted directors: the flood's users, and one for the probe
        n = m["users"] + 1
        base = self.rng.randrange(1_000_000, 8_000_000)
        wa_ids = [f"62811{base + i:07d}" for i in range(n)]
        values = ",".join(f"('chaos{w}', 'chaos{w}@factory.local', 'Chaos User {i}', '+{w}', "
                          f"(select id from adm_role where code = 'DIRECTOR'))"
                          for i, w in enumerate(wa_ids))
        try:
            await asyncio.to_thread(self.pg.psql, f"""
                with u as (insert into adm_user (username, email, full_name, phone, role_id)
                           values {values} returning id, phone)
                insert into wa_trust (user_id, wa_id, confirmed_at, reason)
                select id, substr(phone, 2), now(), 'confirmed' from u""")
        except RuntimeError as e:
            raise SetupError(f"inserting the trusted users failed: {e}")
        self.users = [User(i, w) for i, w in enumerate(wa_ids[:-1])]
        self.probe_user = User(-1, wa_ids[-1])

        # hub instances and the llm-worker
        for i, port in enumerate(self.hub_ports):
            env = dict(self.env, SENTIENT__SERVER__PORT=str(port))
            self.hubs.append(Proc(f"hub-{i}", [str(self.bin), "serve"], env,
                                  self.logs / f"hub-{i}.log", self))
        await asyncio.gather(*(h.start() for h in self.hubs))
        ready = await asyncio.gather(*(self.wait_ready(i, 60) for i in range(len(self.hubs))))
        if not all(ready):
            bad = [h.name for h, ok in zip(self.hubs, ready) if not ok]
            raise SetupError(f"{', '.join(bad)} did not become ready:\n" +
                             "\n".join(tail(h.log_path, 15) for h in self.hubs))
        log(f"{len(self.hubs)} hub instances ready on ports {', '.join(map(str, self.hub_ports))}")
        self.worker = Proc("llm-worker", [str(self.bin), "llm-worker"], self.env,
                           self.logs / "llm-worker.log", self)
        await self.worker.start()
        self.timings["setup_s"] = round(now() - t, 1)
        await self.probe()

    async def find_binary(self) -> Path:
        path = Path(self.args.bin)
        if not path.is_absolute():
            path = REPO / path
        deadline = time.monotonic() + self.args.wait_bin
        while not path.is_file():
            if time.monotonic() >= deadline:
                raise SetupError(f"binary {path} not found (build it: cargo build --release)")
            log(f"waiting for {path} (polling every 30 s)")
            await asyncio.sleep(min(30, max(1, deadline - time.monotonic())))
        # A private copy: a rebuild while the chaos runs must not change what restarts run.
        copy = self.work / "sentient-hub"
        await asyncio.to_thread(shutil.copy2, path, copy)
        self.bin_info = {"path": str(path), "mtime": time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime)), "size": path.stat().st_size}
        log(f"binary {path} (built {self.bin_info['mtime']}), run from a private copy")
        return copy

    async def run_once(self, argv, log_path: Path, timeout: float) -> tuple[int, str]:
        with open(log_path, "ab") as f:
            p = await asyncio.create_subprocess_exec(*argv, env=self.env, cwd=str(REPO),
                                                     stdin=subprocess.DEVNULL, stdout=f,
                                                     stderr=subprocess.STDOUT, start_new_session=True)
            self.pgids.add(p.pid)
            try:
                rc = await asyncio.wait_for(p.wait(), timeout)
            except asyncio.TimeoutError:
                os.killpg(p.pid, signal.SIGKILL)
                rc = await p.wait()
            finally:
                self.pgids.discard(p.pid)
        return rc, tail(log_path, 40)

    async def wait_port(self, port: int, timeout: float) -> bool:
        deadline = now() + timeout
        while now() < deadline:
            if await port_open(port):
                return True
            await asyncio.sleep(0.1)
        return False

    async def wait_ready(self, i: int, timeout: float) -> bool:
        deadline = now() + timeout
        while now() < deadline:
            with contextlib.suppress(OSError, asyncio.TimeoutError, ConnectionError):
                status, _ = await http_request(self.hub_ports[i], "GET", "/readyz", timeout=2)
                if status == 200:
                    return True
            await asyncio.sleep(0.1)
        return False

    # ---- deliveries

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret, body, hashlib.sha256).hexdigest()

    async def deliver(self, body: bytes, stats: Counter,
                      deadline: float | None = None) -> tuple[float | None, int]:
        """Posts a signed delivery to a random live instance until one answers 200, as Meta
        retries. Returns (time of the 200, attempts); (None, attempts) when `deadline` passed
        first."""
        headers = {"content-type": "application/json", "x-hub-signature-256": self.sign(body)}
        attempt = 0
        while True:
            if deadline is not None and now() > deadline:
                stats["gave up"] += 1
                return None, attempt
            attempt += 1
            live = [i for i, h in enumerate(self.hubs) if h.running()] or list(range(len(self.hubs)))
            i = random.choice(live)
            try:
                status, _ = await http_request(self.hub_ports[i], "POST", "/webhook", body, headers, 10)
                if status == 200:
                    return now(), attempt
                stats[f"http {status}"] += 1
            except asyncio.TimeoutError:
                stats["timeout"] += 1
            except ConnectionRefusedError:
                stats["refused"] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                stats["reset"] += 1
            await asyncio.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0))

    def make_question(self, user: User, idx: int, phase: int, text: str) -> Question:
        wamid = f"wamid.CHAOS.{self.run_id}.{'p' if user.idx < 0 else 'u'}{user.idx}.q{idx}"
        message = {"from": user.wa_id, "id": wamid, "timestamp": str(int(time.time())),
                   "type": "text", "text": {"body": text}}
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{
            "id": "0", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "0", "phone_number_id": PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": f"Chaos User {user.idx}"}, "wa_id": user.wa_id}],
                "messages": [message]}}]}]}).encode()
        return Question(user, idx, phase, text, wamid, body)

    async def post_question(self, q: Question, stats: Counter) -> None:
        q.first_post = now()
        q.acked_at, q.attempts = await self.deliver(q.body, stats, self.deliver_deadline)
        if q.acked_at is None:
            log(f"!! {q.wamid} got no 200 from any instance before the phase's deadline")
        elif self.rng.random() < self.mode["dup_rate"]:
            q.dup = True

            async def again():
                await asyncio.sleep(random.uniform(0.2, 2.5))
                q.dup_acked_at, _ = await self.deliver(q.body, stats, self.deliver_deadline)
            task = asyncio.create_task(again())
            self.dup_tasks.add(task)
            task.add_done_callback(self.dup_tasks.discard)

    async def probe(self) -> None:
        """Each question once, from a user of its own, no fault: each must get its answer."""
        t = now()
        stats = Counter()
        for j, text in enumerate(QUESTIONS):
            q = self.make_question(self.probe_user, j, -1, text)
            self.probe_questions.append(q)
            before = sum(1 for s in self.graph.sends if s.to == self.probe_user.wa_id)
            await self.post_question_plain(q, stats)
            deadline = now() + 30
            while now() < deadline:
                if sum(1 for s in self.graph.sends if s.to == self.probe_user.wa_id) > before:
                    break
                await asyncio.sleep(0.05)
            else:
                evidence = await self.evidence([q.wamid])
                raise SetupError(f"the probe question {text!r} got no reply within 30 s with no "
                                 f"fault injected; database: {json.dumps(evidence.get(q.wamid))}")
        await asyncio.sleep(0.3)
        rows = await asyncio.to_thread(self.pg.json_rows,
            "select inbound_wamid, purpose, part_no from wa_outbox where inbound_wamid like "
            f"'wamid.CHAOS.{self.run_id}.p%'")
        purposes = Counter(r["purpose"] for r in rows)
        if purposes.get("answer", 0) < len(QUESTIONS) or set(purposes) - {"answer"}:
            raise SetupError(f"the probe's replies are not all answers: {dict(purposes)} "
                             f"(a trusted DIRECTOR should pass the gate)")
        self.timings["probe_s"] = round(now() - t, 1)
        log(f"probe: each of {len(QUESTIONS)} questions answered once ({self.timings['probe_s']} s): "
            + ", ".join(repr(x) for x in QUESTIONS))

    async def post_question_plain(self, q: Question, stats: Counter) -> None:
        q.first_post = now()
        q.acked_at, _ = await self.deliver(q.body, stats, now() + 30)
        if q.acked_at is None:
            raise SetupError(f"the probe question {q.text!r} got no 200 from any instance in 30 s")

    # ---- the flood and the faults

    def plan(self) -> None:
        m = self.mode
        names = (PHASES + (["nats-wipe"] if self.args.nats_wipe else [])) * m["rounds"]
        k, n = m["questions"], len(names)
        per = [k // n + (1 if i < k % n else 0) for i in range(n)]
        for i, name in enumerate(names):
            rnd = i // (len(names) // m["rounds"])
            if name == "hub-kill":
                dur = m["lead"] + m["hub_kills"] * m["kill_every"] + m["tail"]
                at = [m["lead"] + k * m["kill_every"] for k in range(m["hub_kills"])]
            elif name in ("nats-kill", "nats-wipe"):
                dur = m["lead"] + m["nats_kills"] * (m["nats_down"] + m["tail"])
                at = [m["lead"] + k * (m["nats_down"] + m["tail"]) for k in range(m["nats_kills"])]
            elif name == "pg-restart":
                dur = m["lead"] + m["pg_restarts"] * (m["pg_down"] + m["tail"])
                at = [m["lead"] + k * (m["pg_down"] + m["tail"]) for k in range(m["pg_restarts"])]
            else:
                dur = m["lead"] + m["llm_down"] + m["tail"]
                at = [m["lead"]]
            self.phases.append({"name": name if m["rounds"] == 1 else f"{name}#{rnd + 1}",
                                "kind": name, "questions_per_user": per[i], "planned_s": dur,
                                "fault_offsets": at})
        # When each question is posted (from the phase's start; a user still waits for the 200 of
        # the one before): most spread evenly at random over the phase, some in a burst of all
        # users just before a fault, so the fault finds work in every stage of the pipeline.
        for u in self.users:
            idx = 0
            for p, ph in enumerate(self.phases):
                n = ph["questions_per_user"]
                burst = round(n * m["burst_fraction"])
                offsets = sorted(
                    [max(0.0, self.rng.choice(ph["fault_offsets"]) - self.rng.uniform(0.05, 0.5))
                     for _ in range(burst)]
                    + [self.rng.uniform(0, ph["planned_s"] - m["tail"] / 2) for _ in range(n - burst)])
                for off in offsets:
                    text = QUESTIONS[(idx + u.idx) % len(QUESTIONS)]
                    q = self.make_question(u, idx, p, text)
                    q.offset = off
                    u.questions.append(q)
                    self.questions.append(q)
                    idx += 1

    async def flood_user(self, u: User, p: int, start: float) -> None:
        for q in (q for q in u.questions if q.phase == p):
            await self.sleep_until(start + q.offset)
            await self.post_question(q, self.flood_retries[p])

    async def run_phases(self) -> None:
        for p, ph in enumerate(self.phases):
            self.current_phase = p
            ph["start"] = now()
            # Meta retries for days; here a question gets until a minute after its phase's end.
            self.deliver_deadline = ph["start"] + ph["planned_s"] + 60
            log(f"phase {ph['name']}: {ph['questions_per_user']} questions per user over ~{ph['planned_s']:.0f} s")
            flood = [asyncio.create_task(self.flood_user(u, p, ph["start"])) for u in self.users]
            await getattr(self, "fault_" + ph["kind"].replace("-", "_"))(p, ph["start"])
            await asyncio.gather(*flood)
            ph["end"] = now()
            acked = sum(1 for q in self.questions if q.phase == p and q.acked_at is not None)
            log(f"phase {ph['name']} done in {ph['end'] - ph['start']:.1f} s: {acked} questions acknowledged, "
                f"{len(self.graph.sends)} Graph sends so far")
        self.current_phase = len(self.phases)

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - now()))

    async def fault_hub_kill(self, p: int, start: float) -> None:
        m = self.mode
        restores = []
        for k in range(m["hub_kills"]):
            await self.sleep_until(start + m["lead"] + k * m["kill_every"])
            i = (len([f for f in self.faults if f.kind == "hub-kill"])) % len(self.hubs)
            hub = self.hubs[i]
            if not hub.running():
                await hub.start()  # was restarting by itself
            # Aim at the worst moment: a Graph send of this instance in flight (bounded wait).
            pids = {hub.p.pid}
            mid = False
            deadline = now() + 1.5
            while now() < deadline:
                if self.graph.inflight and self.graph.victim_sending(pids):
                    mid = True
                    break
                await asyncio.sleep(0.002)
            f = Fault(p, "hub-kill", hub.name, now(), mid_send=mid)
            await hub.kill9()
            self.faults.append(f)
            log(f"  kill -9 {hub.name}{' (a send of it in flight)' if mid else ''}")
            await asyncio.sleep(self.rng.uniform(0.3, 1.2))
            await hub.start()
            restores.append(asyncio.create_task(self.mark_ready(f, i)))
        await self.sleep_until(start + m["lead"] + m["hub_kills"] * m["kill_every"] + m["tail"])
        await asyncio.gather(*restores)

    async def mark_ready(self, f: Fault, i: int) -> None:
        if await self.wait_ready(i, 60):
            f.restored_at = now()
        else:
            f.note = "not ready within 60 s"
            log(f"!! {self.hubs[i].name} not ready 60 s after its restart")

    async def fault_nats_kill(self, p: int, start: float, wipe: bool = False) -> None:
        m = self.mode
        for k in range(m["nats_kills"]):
            await self.sleep_until(start + m["lead"] + k * (m["nats_down"] + m["tail"]))
            f = Fault(p, "nats-wipe" if wipe else "nats-kill", "nats-server", now(),
                      note="store directory deleted" if wipe else "")
            await self.nats.kill9()
            self.faults.append(f)
            if wipe:
                shutil.rmtree(self.work / "nats", ignore_errors=True)
            log(f"  kill -9 nats-server{' and its store directory deleted' if wipe else ''}")
            await asyncio.sleep(m["nats_down"])
            await self.nats.start()
            if await self.wait_port(self.nats_port, 20):
                f.restored_at = now()
                log(f"  nats-server back after {f.restored_at - f.at:.1f} s")
            else:
                f.note = "did not listen within 20 s"
        await self.sleep_until(start + m["lead"] + m["nats_kills"] * (m["nats_down"] + m["tail"]))

    async def fault_nats_wipe(self, p: int, start: float) -> None:
        """Like nats-kill, but the store directory is deleted before the restart: every job,
        stream and consumer on JetStream is gone (what a lost disk, a server that crashed before
        its fsync, or a deleted stream does)."""
        await self.fault_nats_kill(p, start, wipe=True)

    async def fault_pg_restart(self, p: int, start: float) -> None:
        m = self.mode
        for k in range(m["pg_restarts"]):
            await self.sleep_until(start + m["lead"] + k * (m["pg_down"] + m["tail"]))
            fast = k % 2 == 1
            f = Fault(p, "pg-restart", "postgres", now(), note="restart -m fast" if fast else "stop -m immediate + start")
            self.faults.append(f)
            try:
                if fast:
                    log("  pg_ctl restart -m fast")
                    await asyncio.to_thread(self.pg.restart_fast)
                else:
                    log("  pg_ctl stop -m immediate")
                    await asyncio.to_thread(self.pg.stop, "immediate")
                    await asyncio.sleep(m["pg_down"])
                    await asyncio.to_thread(self.pg.start)
                f.restored_at = now()
                log(f"  PostgreSQL back after {f.restored_at - f.at:.1f} s")
            except RuntimeError as e:
                f.note += f"; {e}"
                log(f"!! PostgreSQL fault step failed: {e}")
                with contextlib.suppress(RuntimeError):
                    await asyncio.to_thread(self.pg.start)
                    f.restored_at = now()
        await self.sleep_until(start + m["lead"] + m["pg_restarts"] * (m["pg_down"] + m["tail"]))

    async def fault_llm_absent(self, p: int, start: float) -> None:
        m = self.mode
        await self.sleep_until(start + m["lead"])
        f = Fault(p, "llm-absent", "llm-worker", now())
        await self.worker.kill9()
        self.faults.append(f)
        log(f"  kill -9 llm-worker, absent for {m['llm_down']:.0f} s")
        await asyncio.sleep(m["llm_down"])
        await self.worker.start()
        f.restored_at = now()
        await self.sleep_until(start + m["lead"] + m["llm_down"] + m["tail"])
        later = [t for t in self.llm.request_times if t > f.restored_at]
        f.note = (f"first LLM request {later[0] - f.restored_at:.1f} s after the restart"
                  if later else "no LLM request by the end of the phase")

    # ---- quiescence and the evidence

    async def open_work(self) -> dict | None:
        try:
            rows = await asyncio.to_thread(self.pg.json_rows, """
                select 'inbox_' || status as k, count(*) as n from wa_inbox
                 where status in ('pending', 'relayed') group by status
                union all
                select 'outbox_' || status, count(*) from wa_outbox
                 where status in ('pending', 'sending')
                    or (status = 'unknown' and next_try_at <> 'infinity') group by status""")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        return {r["k"]: r["n"] for r in rows}

    async def answer_map(self) -> dict[str, str] | None:
        """inbound wamid -> uuid of its answer's part 1."""
        try:
            rows = await asyncio.to_thread(self.pg.json_rows,
                "select uuid::text as uuid, inbound_wamid as w from wa_outbox "
                "where purpose = 'answer' and part_no = 1 and inbound_wamid is not null")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        return {r["w"]: r["uuid"] for r in rows}

    async def quiesce(self) -> None:
        """Until every question is answered, nothing is left to do and no send came for a few
        seconds; or nothing was sent for longer than any recovery path of the hub needs (a lease,
        the unknown grace, a re-relay) plus a margin; or the deadline."""
        t = now()
        lease = 3 * GRAPH_TIMEOUT + 5
        stall = max(lease + UNKNOWN_GRACE, ACK_WAIT * MAX_DELIVER + RERELAY_MARGIN) + 15
        deadline = t + self.mode["quiesce_max"]
        for h in self.hubs:
            if not h.running() and not h.expected_exit:
                await h.start()
        await asyncio.gather(*self.dup_tasks, return_exceptions=True)
        log(f"flood over: waiting for quiescence (stall after {stall} s without a send, at most "
            f"{self.mode['quiesce_max']:.0f} s)")
        why = "deadline"
        last_report = 0.0
        while now() < deadline:
            quiet = now() - max(self.graph.last_send_at, t)
            amap, work = await self.answer_map(), await self.open_work()
            if amap is not None and work is not None:
                sent = {s.callback for s in self.graph.sends}
                missing = [q for q in self.questions if q.acked_at is not None
                           and amap.get(q.wamid) not in sent]
                if now() - last_report > 5:
                    log(f"  unanswered {len(missing)}, open {work or '{}'}, quiet {quiet:.0f} s")
                    last_report = now()
                if not missing and not work and quiet >= 3 and not self.graph.status_tasks:
                    why = "settled"
                    break
            if quiet >= stall:
                why = f"stalled ({stall} s without a Graph send)"
                break
            await asyncio.sleep(1.0)
        self.timings["quiesce_s"] = round(now() - t, 1)
        self.quiesce_why = why
        log(f"quiescence: {why} after {self.timings['quiesce_s']} s")

    async def evidence(self, wamids: list[str]) -> dict[str, dict]:
        if not wamids:
            return {}
        lst = ",".join("'" + w.replace("'", "''") + "'" for w in wamids)
        out: dict[str, dict] = {w: {"inbox": None, "outbox": [], "chat": None} for w in wamids}
        try:
            for r in await asyncio.to_thread(self.pg.json_rows,
                    f"select to_jsonb(i) - 'payload' - 'body' - 'identity_hash' as r from wa_inbox i where wamid in ({lst})"):
                out[r["r"]["wamid"]]["inbox"] = r["r"]
            for r in await asyncio.to_thread(self.pg.json_rows,
                    "select inbound_wamid, uuid::text as uuid, purpose, part_no, status, attempts, "
                    "error_code, error_text, next_try_at, lease_until, wamid, sent_at, updated_at "
                    f"from wa_outbox where inbound_wamid in ({lst}) order by id"):
                out[r["inbound_wamid"]]["outbox"].append(r)
            for r in await asyncio.to_thread(self.pg.json_rows,
                    f"select wamid_in, outcome, intent, wamid_out from ai_chat where wamid_in in ({lst})"):
                out[r["wamid_in"]]["chat"] = r
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            for w in wamids:
                out[w]["error"] = str(e)
        return out

    async def tamper(self) -> dict:
        """--self-test: falsify the fake Graph's records so the analysis must find exactly one
        lost question, one duplicated reply and one order violation."""
        amap = await self.answer_map() or {}
        first = {}
        for s in self.graph.sends:
            first.setdefault(s.callback, s)
        users = [u for u in self.users
                 if sum(1 for q in u.questions if amap.get(q.wamid) in first) >= 3]
        if len(users) < 3:
            raise SetupError("self-test: fewer than three users with three answered questions")
        a_user, b_user, c_user = users[:3]
        lost = next(q for q in a_user.questions if amap.get(q.wamid) in first)
        self.graph.sends = [s for s in self.graph.sends if s.callback != amap[lost.wamid]]
        dup = next(q for q in b_user.questions if amap.get(q.wamid) in first)
        s = first[amap[dup.wamid]]
        self.graph.sends.append(GraphSend(s.t + 0.01, s.to, s.callback, s.wamid, s.kind, s.text, 0))
        answered = [q for q in c_user.questions if amap.get(q.wamid) in first]
        x, y = first[amap[answered[0].wamid]], first[amap[answered[1].wamid]]
        x.t, y.t = y.t, x.t
        log(f"self-test: dropped the reply to {lost.wamid}, doubled the reply to {dup.wamid}, "
            f"swapped the replies to {answered[0].wamid} and {answered[1].wamid}")
        return {"lost": [lost.wamid], "duplicated": [dup.wamid],
                "order": [answered[0].wamid, answered[1].wamid]}

    # ---- the report

    async def analyse(self) -> dict:
        outbox = await asyncio.to_thread(self.pg.json_rows,
            "select uuid::text as uuid, inbound_wamid, part_no, purpose, status, wa_id from wa_outbox")
        chats = await asyncio.to_thread(self.pg.json_rows,
            "select wamid_in, outcome from ai_chat where wamid_in is not null")
        dead = await asyncio.to_thread(self.pg.json_rows,
            "select source, reason, count(*) as n from wa_dead_letter group by source, reason")
        inbox_status = await asyncio.to_thread(self.pg.json_rows,
            "select status, count(*) as n from wa_inbox group by status")
        by_uuid = {r["uuid"]: r for r in outbox}
        outcome = {r["wamid_in"]: r["outcome"] for r in chats}
        sends_by_cb: dict[str, list[GraphSend]] = defaultdict(list)
        for s in self.graph.sends:
            sends_by_cb[s.callback].append(s)
        unmapped = [s for s in self.graph.sends if s.callback not in by_uuid]
        purposes = Counter(by_uuid[s.callback]["purpose"] for s in self.graph.sends if s.callback in by_uuid)

        # sends per (inbound wamid, purpose, part): more than one = a duplicate reply
        per_part: dict[tuple, list[GraphSend]] = defaultdict(list)
        for s in self.graph.sends:
            r = by_uuid.get(s.callback)
            if r is not None:
                per_part[(r["inbound_wamid"], r["purpose"], r["part_no"])].append(s)
        rows_of: dict[str, list[dict]] = defaultdict(list)
        for r in outbox:
            if r["inbound_wamid"]:
                rows_of[r["inbound_wamid"]].append(r)

        qinfo = {}
        for q in self.questions:
            answers = [r for r in rows_of.get(q.wamid, []) if r["purpose"] == "answer"]
            part1 = next((r for r in answers if r["part_no"] == 1), None)
            got = sends_by_cb.get(part1["uuid"], []) if part1 else []
            extra_by_uuid = sum(max(0, len(sends_by_cb.get(r["uuid"], [])) - 1) for r in answers)
            extra_by_part = sum(max(0, len(v) - 1) for k, v in per_part.items() if k[0] == q.wamid)
            wrong_to = sum(1 for r in rows_of.get(q.wamid, []) for s in sends_by_cb.get(r["uuid"], [])
                           if s.to != q.user.wa_id)
            gate = sum(1 for r in rows_of.get(q.wamid, []) if r["purpose"] != "answer")
            qinfo[q.wamid] = dict(answer_at=min((s.t for s in got), default=None),
                                  duplicated=max(extra_by_uuid, extra_by_part),
                                  misdirected=wrong_to, non_answer_rows=gate,
                                  outcome=outcome.get(q.wamid))

        # order: consecutive answered questions of one user, replies in the order asked
        violations = []
        for u in self.users:
            answered = [q for q in u.questions if qinfo[q.wamid]["answer_at"] is not None]
            for a, b in zip(answered, answered[1:]):
                if qinfo[a.wamid]["answer_at"] > qinfo[b.wamid]["answer_at"]:
                    violations.append({"user": u.wa_id, "phase": self.phases[a.phase]["name"],
                                       "earlier": a.wamid, "later": b.wamid,
                                       "earlier_reply_at": round(qinfo[a.wamid]["answer_at"], 3),
                                       "later_reply_at": round(qinfo[b.wamid]["answer_at"], 3)})

        lost = [q for q in self.questions if q.acked_at is not None and qinfo[q.wamid]["answer_at"] is None]
        lost_evidence = await self.evidence([q.wamid for q in lost])

        def figures(qs: list[Question], faults: list[Fault], retries: Counter, name: str) -> dict:
            acked = [q for q in qs if q.acked_at is not None]
            ans = [q for q in acked if qinfo[q.wamid]["answer_at"] is not None]
            lat = [qinfo[q.wamid]["answer_at"] - q.acked_at for q in ans]
            first = []
            for f in faults:
                after = [qinfo[q.wamid]["answer_at"] for q in self.questions
                         if q.acked_at is not None and q.acked_at > f.at and qinfo[q.wamid]["answer_at"] is not None]
                first.append(min(after) - f.at if after else None)
            restores = [f.restored_at for f in faults if f.restored_at is not None]
            drain = None
            if restores:
                last = max(restores)
                backlog = [q for q in acked if q.acked_at <= last]
                if all(qinfo[q.wamid]["answer_at"] is not None for q in backlog):
                    drain = max([qinfo[q.wamid]["answer_at"] - last for q in backlog] + [0.0])
            outcomes = Counter(qinfo[q.wamid]["outcome"] or "none" for q in acked)
            return {
                "phase": name,
                "faults": len(faults),
                "fault_detail": [dict(kind=f.kind, target=f.target, at=round(f.at, 2),
                                      down_s=None if f.restored_at is None else round(f.restored_at - f.at, 2),
                                      mid_send=f.mid_send, note=f.note) for f in faults],
                "kills_mid_send": sum(1 for f in faults if f.mid_send),
                "in": len(acked),
                "not_accepted": len(qs) - len(acked),
                "dup_posts": sum(1 for q in acked if q.dup),
                "answered": len(ans),
                "lost": len(acked) - len(ans),
                "duplicated": sum(qinfo[q.wamid]["duplicated"] for q in acked),
                "misdirected": sum(qinfo[q.wamid]["misdirected"] for q in acked),
                "order_violations": sum(1 for v in violations if v["phase"] == name) if name != "total" else len(violations),
                "down_max_s": max((f.restored_at - f.at for f in faults if f.restored_at is not None),
                                  default=None),
                "first_answer_after_fault_s": None if not first or None in first else round(max(first), 2),
                "drain_s": None if drain is None else round(drain, 2),
                "latency_p50_s": None if not lat else round(statistics.median(lat), 2),
                "latency_max_s": None if not lat else round(max(lat), 2),
                "webhook_retries": dict(retries),
                "outcomes": dict(outcomes),
            }

        per_phase = [figures([q for q in self.questions if q.phase == p],
                             [f for f in self.faults if f.phase == p],
                             self.flood_retries[p], ph["name"])
                     for p, ph in enumerate(self.phases)]
        total_retries = sum((self.flood_retries[p] for p in range(len(self.phases))), Counter())
        total = figures(self.questions, [], total_retries, "total")
        total["faults"] = len(self.faults)
        total["kills_mid_send"] = sum(1 for f in self.faults if f.mid_send)
        total["fault_detail"] = []

        return {
            "per_phase": per_phase,
            "total": total,
            "lost": [dict(wamid=q.wamid, user=q.user.wa_id, phase=self.phases[q.phase]["name"],
                          text=q.text, acked_at=round(q.acked_at, 2), evidence=lost_evidence.get(q.wamid))
                     for q in lost],
            "duplicates": [dict(inbound_wamid=k[0], purpose=k[1], part_no=k[2],
                                copies=len(v), received_at=[round(s.t, 3) for s in v],
                                callbacks=sorted({s.callback for s in v}))
                           for k, v in per_part.items() if len(v) > 1],
            "order_violations": violations,
            "questions": [dict(wamid=q.wamid, user=q.user.wa_id, idx=q.idx,
                               phase=self.phases[q.phase]["name"], text=q.text,
                               posted_at=None if q.first_post is None else round(q.first_post, 3),
                               acked_at=None if q.acked_at is None else round(q.acked_at, 3),
                               post_attempts=q.attempts, dup_posted=q.dup,
                               reply_at=None if qinfo[q.wamid]["answer_at"] is None else round(qinfo[q.wamid]["answer_at"], 3),
                               outcome=qinfo[q.wamid]["outcome"], duplicated=qinfo[q.wamid]["duplicated"])
                          for q in self.questions],
            "graph": {"sends": len(self.graph.sends), "read_receipts": self.graph.reads,
                      "orphaned_sends": sum(1 for s in self.graph.sends if s.orphaned),
                      "rejected": self.graph.rejected, "by_purpose": dict(purposes),
                      "unmapped_sends": [dict(t=round(s.t, 2), to=s.to, callback=s.callback, text=s.text)
                                         for s in unmapped],
                      "statuses_posted": dict(self.graph.status_posted),
                      "status_webhook_retries": dict(self.status_retries)},
            "llm_requests": self.llm.requests,
            "dead_letters": dead,
            "inbox_by_status": {r["status"]: r["n"] for r in inbox_status},
            "unexpected_exits": self.unexpected,
            "starts": {h.name: h.starts for h in [*self.hubs, self.nats, self.worker] if h},
        }

    def print_table(self, rep: dict) -> None:
        def fmt(v, w):
            s = "-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
            return s.rjust(w)
        cols = [("phase", 14), ("faults", 6), ("in", 5), ("dup posts", 9), ("answered", 8),
                ("lost", 5), ("duplicated", 10), ("order", 5), ("down", 5), ("first ans", 9), ("drain", 6),
                ("lat p50", 7), ("lat max", 7), ("retries", 7), ("llm/data", 9)]
        print()
        print(" ".join(n.rjust(w) if i else n.ljust(w) for i, (n, w) in enumerate(cols)))
        print("-" * (sum(w for _, w in cols) + len(cols) - 1))
        for row in [*rep["per_phase"], rep["total"]]:
            if row["phase"] == "total":
                print("-" * (sum(w for _, w in cols) + len(cols) - 1))
            oc = row["outcomes"]
            vals = [row["phase"].ljust(14), fmt(row["faults"], 6), fmt(row["in"], 5),
                    fmt(row["dup_posts"], 9), fmt(row["answered"], 8), fmt(row["lost"], 5),
                    fmt(row["duplicated"], 10), fmt(row["order_violations"], 5),
                    fmt(None if row["down_max_s"] is None else round(row["down_max_s"], 1), 5),
                    fmt(row["first_answer_after_fault_s"], 9), fmt(row["drain_s"], 6),
                    fmt(row["latency_p50_s"], 7), fmt(row["latency_max_s"], 7),
                    fmt(sum(row["webhook_retries"].values()), 7),
                    f"{oc.get('llm', 0)}/{oc.get('fallback', 0)}".rjust(9)]
            print(" ".join(vals))
        print()
        t = rep["total"]
        g = rep["graph"]
        print(f"hub kills with a send of the victim in flight: {t['kills_mid_send']} of "
              f"{sum(1 for f in self.faults if f.kind == 'hub-kill')}; sends taken whose answer "
              f"the hub never got: {g['orphaned_sends']}; Graph sends {g['sends']} "
              f"({', '.join(f'{k} {v}' for k, v in g['by_purpose'].items())}), read receipts "
              f"{g['read_receipts']}, LLM requests {rep['llm_requests']}")
        print(f"statuses posted {g['statuses_posted']} (retried posts "
              f"{sum(g['status_webhook_retries'].values())}); inbox rows {rep['inbox_by_status']}; "
              f"dead letters {sum(d['n'] for d in rep['dead_letters'])}")
        if t["misdirected"] or t["not_accepted"] or g["unmapped_sends"]:
            print(f"misdirected replies {t['misdirected']}, questions never accepted {t['not_accepted']}, "
                  f"sends matching no outbox row {len(g['unmapped_sends'])}")
        for e in self.unexpected:
            print(f"!! {e['child']} exited by itself (rc {e['rc']}) at {e['at']} s during {e['phase']}")
        for lq in rep["lost"]:
            ev = lq["evidence"] or {}
            inbox = ev.get("inbox") or {}
            rows = "; ".join(f"part {r['part_no']} {r['purpose']} {r['status']} attempts {r['attempts']}"
                             + (f" ({r['error_text']})" if r.get("error_text") else "")
                             for r in ev.get("outbox", [])) or "no outbox row"
            print(f"LOST {lq['wamid']} ({lq['phase']}, {lq['text']!r}): inbox "
                  f"{inbox.get('status', 'NO ROW')}"
                  + (f" attempts {inbox.get('attempts')}" if inbox else "")
                  + (f" rerelays {inbox.get('rerelays')}" if 'rerelays' in inbox else "")
                  + f"; outbox: {rows}")
        for d in rep["duplicates"]:
            print(f"DUPLICATE {d['inbound_wamid']} part {d['part_no']} ({d['purpose']}): {d['copies']} copies "
                  f"at {d['received_at']}")
        for v in rep["order_violations"]:
            print(f"ORDER {v['user']}: reply to {v['earlier']} at {v['earlier_reply_at']} s after the reply "
                  f"to {v['later']} at {v['later_reply_at']} s")

    # ---- clean-up

    async def cleanup(self) -> None:
        for task in [*self.dup_tasks, *self.graph.status_tasks]:
            task.cancel()
        procs = [p for p in [*self.hubs, self.worker] if p]
        await asyncio.gather(*(p.stop(grace=2) for p in procs), return_exceptions=True)
        if self.nats:
            await self.nats.kill9()
        if self.pg and self.pg.started:
            try:
                await asyncio.to_thread(self.pg.stop, "immediate")
            except Exception:
                self.pg.kill_leftovers()
        for pgid in list(self.pgids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        await self.graph.server.stop()
        await self.llm.server.stop()


async def main_async(args) -> int:
    mode = dict(MODES["long" if args.long else "short"])
    if args.users:
        mode["users"] = args.users
    if args.questions:
        mode["questions"] = args.questions
    if args.instances:
        mode["instances"] = args.instances
    chaos = Chaos(args, mode)
    try:
        local = tomllib.loads((REPO / "config" / "local.toml").read_text())
        chaos.app_secret = local["whatsapp"]["app_secret"].encode()
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        chaos.app_secret = b"local-app-secret"
    mode_name = "long" if args.long else "short"
    log(f"chaos {mode_name}: {mode['instances']} instances, {mode['users']} users x "
        f"{mode['questions']} questions, work dir {chaos.work}")
    rc = 2
    failed_setup = None
    report = None
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        try:
            await chaos.setup()
        except SetupError as e:
            failed_setup = str(e)
            raise
        chaos.plan()
        t_flood = now()
        await chaos.run_phases()
        chaos.timings["flood_s"] = round(now() - t_flood, 1)
        await chaos.quiesce()
        planted = await chaos.tamper() if args.self_test else None
        try:
            report = await chaos.analyse()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            failed_setup = f"reading the results from the private PostgreSQL failed: {e}"
            raise SetupError(failed_setup)
        chaos.timings["total_s"] = round(now(), 1)
        chaos.print_table(report)
        t = report["total"]
        bad = (t["lost"] or t["duplicated"] or t["order_violations"] or t["misdirected"]
               or t["not_accepted"])
        rc = 1 if bad else 0
        if planted is not None:
            caught = ([x["wamid"] for x in report["lost"]] == planted["lost"]
                      and [d["inbound_wamid"] for d in report["duplicates"]] == planted["duplicated"]
                      and [[v["earlier"], v["later"]] for v in report["order_violations"]] == [planted["order"]])
            print(f"self-test: the planted loss, duplicate and order violation were "
                  f"{'found, and nothing else' if caught else 'NOT found exactly'}")
            report["self_test"] = {"planted": planted, "caught": caught}
            rc = 0 if caught else 1
    except SetupError as e:
        failed_setup = failed_setup or str(e)
        print(f"\nSET-UP FAILED: {failed_setup}", flush=True)
        rc = 2
    except asyncio.CancelledError:
        print("\ninterrupted: stopping everything", flush=True)
        rc = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        failed_setup = f"the chaos program itself failed: {e!r}"
        print(f"\nSET-UP FAILED: {failed_setup}", flush=True)
        rc = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(BaseException):
            await asyncio.shield(chaos.cleanup())
        report_path = Path(args.report or REPO / "target" / "chaos" / f"report-{mode_name}.json")
        report_path.parent.mkdir(parents=True, exist_ok=True)
        if report is not None or failed_setup:
            out = report_path
            doc = {"mode": mode_name, "settings": mode, "seed": args.seed, "run_id": chaos.run_id,
                   "binary": getattr(chaos, "bin_info", None), "work_dir": str(chaos.work),
                   "hub_settings": {k: v for k, v in chaos.env.items() if k.startswith("SENTIENT")},
                   "left_out_keys": chaos.dropped_keys, "timings_s": chaos.timings,
                   "quiescence": getattr(chaos, "quiesce_why", None),
                   "phases": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in ph.items()}
                              for ph in chaos.phases],
                   "setup_failure": failed_setup, "exit": rc, **(report or {})}
            out.write_text(json.dumps(doc, indent=2, default=str))
            print(f"report: {out}")
        with contextlib.suppress(OSError):
            (chaos.work / "sentient-hub").unlink()
        logs = chaos.logs
        if rc not in (0, 130):
            if not args.keep:
                # The work directory goes; its logs stay next to the report.
                logs = report_path.parent / f"logs-{mode_name}"
                shutil.rmtree(logs, ignore_errors=True)
                shutil.copytree(chaos.logs, logs)
                if chaos.pg and chaos.pg.log_path.exists():
                    shutil.copy2(chaos.pg.log_path, logs / "postgres.log")
            print(f"\nlogs in {logs}:")
            for p in sorted(logs.iterdir()):
                print(f"  {p}")
            for h in chaos.hubs:
                print(f"\n--- last lines of {logs / h.log_path.name}")
                print(tail_collapsed(logs / h.log_path.name, 20))
        if args.keep:
            print(f"work directory kept: {chaos.work}")
        else:
            shutil.rmtree(chaos.work, ignore_errors=True)
        if report is not None:
            t = report["total"]
            verdict = (f"in {t['in']}, answered {t['answered']}, lost {t['lost']}, duplicated "
                       f"{t['duplicated']}, order violations {t['order_violations']}")
        else:
            verdict = failed_setup.splitlines()[0] if failed_setup else "interrupted"
        word = {0: "PASS", 1: "FAIL", 2: "SET-UP FAILED"}.get(rc, "INTERRUPTED")
        if args.self_test and report is not None:
            word = "SELF-TEST " + word + " (the figures include the planted faults)"
        print(f"chaos {mode_name}: {word} ({verdict}); exit {rc} after {now():.0f} s", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--short", action="store_true", help="CI mode (default): well under 3 minutes")
    g.add_argument("--long", action="store_true", help="3 instances, more users and questions, faults repeated")
    ap.add_argument("--bin", default="target/release/sentient-hub", help="the sentient-hub binary")
    ap.add_argument("--report", help="JSON report path (default target/chaos/report-<mode>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (questions, timings)")
    ap.add_argument("--wait-bin", type=float, default=0, metavar="SECS",
                    help="wait up to SECS for the binary to appear (polls every 30 s)")
    ap.add_argument("--nats-wipe", action="store_true",
                    help="add a phase where nats-server is killed and its store directory deleted "
                         "(JetStream loses every job; the hub must relay them again)")
    ap.add_argument("--self-test", action="store_true",
                    help="check the measuring itself: plant a loss, a duplicate and an order "
                         "violation in the records; exit 0 only when exactly those are found")
    ap.add_argument("--users", type=int, help="override the mode's number of users")
    ap.add_argument("--questions", type=int, help="override the mode's questions per user")
    ap.add_argument("--instances", type=int, help="override the mode's number of hub instances")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SET-UP FAILED: run as root (the private PostgreSQL runs as the postgres OS user)",
              file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

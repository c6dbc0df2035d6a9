#!/usr/bin/env python3
"""`vessel serve` under 1,000 concurrent connections (loopback, bounded).

One server (--workers 0) with a user whose library holds 300 uploads (rows
inserted with psql). Then, with asyncio and raw sockets:

1. 1,000 connections are opened and all held open at once; only then does each
   send GET /api/v1/uploads?limit=20 with the user's bearer token, and keeps
   its connection for two more requests (HTTP/1.1 keep-alive; 3,000 requests).
   The server must have accepted all 1,000 (its fd count), not left them in
   the kernel's accept queue.
   Every request must get a complete answer: 200 with the page, or a 503 with
   a JSON error and Retry-After (what the server is allowed to say when it
   sheds load); no reset, no timeout, no other status.
2. The server's memory stays bounded: VmRSS sampled every 50 ms; its growth
   over the idle baseline must stay under LOAD_RSS_GROWTH_MB (default 128).
3. Afterwards it is still healthy: /healthz 200 and the library 200 within a
   second; its open file descriptors fall back near the baseline within 15 s
   of the clients closing (no connection left in CLOSE-WAIT); it stops cleanly
   on SIGTERM.

The soft RLIMIT_NOFILE is raised (up to the hard limit) in this process before
the server starts, so both ends have room for the sockets; skipped (77) when
the hard limit is too low for 1,000 connections on each side.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_harness as sh  # noqa: E402

CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", "1000"))
REQUESTS_PER_CONNECTION = 3
RSS_GROWTH_LIMIT_MB = float(os.environ.get("LOAD_RSS_GROWTH_MB", "128"))
REQUEST_TIMEOUT_S = 120.0
LIBRARY_ROWS = 300
IDLE_LIMIT_S = 5  # server.limits.header_timeout_s: also the keep-alive idle limit
IDLE_CONNECTIONS = 50


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (at most 65536); the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, 65536))
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


def proc_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler(threading.Thread):
    """Peak VmRSS (KiB) of a pid, every 50 ms, until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = proc_kb(pid, "VmRSS")
        self.peak_fds = fd_count(pid)
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.peak = max(self.peak, proc_kb(self.pid, "VmRSS"))
                self.peak_fds = max(self.peak_fds, fd_count(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def stop(self):
        self.stop_event.set()
        self.join()


def read_whole_response(s: socket.socket) -> bytes:
    """One Content-Length response from a blocking socket, all of it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response (Content-Length or chunked body)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a status line")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionError("connection closed inside the headers")
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def one_connection(port: int, request: bytes, gate: asyncio.Event, opened: list,
                         outcomes: list):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                REQUEST_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - every failure is an outcome to report
        outcomes.append(("connect", repr(e)))
        return
    opened.append(1)
    try:
        await gate.wait()
        for _ in range(REQUESTS_PER_CONNECTION):
            writer.write(request)
            await writer.drain()
            status, headers, body = await asyncio.wait_for(read_response(reader),
                                                           REQUEST_TIMEOUT_S)
            outcomes.append((status, headers, body))
            if headers.get("connection", "").lower() == "close":
                break
    except Exception as e:  # noqa: BLE001
        outcomes.append(("error", repr(e)))
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:  # noqa: BLE001
            pass


async def storm(port: int, token: str, pid: int, base_fds: int) -> tuple[list, int, float, float, int]:
    request = (f"GET /api/v1/uploads?limit=20 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n").encode()
    gate = asyncio.Event()
    opened: list = []
    outcomes: list = []
    tasks = [asyncio.create_task(one_connection(port, request, gate, opened, outcomes))
             for _ in range(CONNECTIONS)]
    t0 = time.monotonic()
    # Let every connection get through connect() before any request goes out.
    deadline = t0 + 60
    while len(opened) + sum(1 for o in outcomes if o[0] == "connect") < CONNECTIONS and \
            time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    t_open = time.monotonic() - t0
    held = len(opened)
    # connect() returns once the kernel has the connection, accepted or not: wait
    # (up to 10 s) for the server to hold them all as descriptors (listen backlog).
    accepted = fd_count(pid) - base_fds
    until = time.monotonic() + 10
    while accepted < held and time.monotonic() < until:
        await asyncio.sleep(0.05)
        accepted = fd_count(pid) - base_fds
    gate.set()
    await asyncio.gather(*tasks)
    return outcomes, held, t_open, time.monotonic() - t0, accepted


def body(checks: sh.Checks) -> None:
    soft, hard = raise_nofile()
    checks.info(f"RLIMIT_NOFILE soft {soft}, hard {hard}")
    if soft < CONNECTIONS + 256:  # per process: ours and the server's (it inherits ours)
        print(f"SKIP: RLIMIT_NOFILE hard limit {hard} is too low for {CONNECTIONS} connections")
        sys.exit(sh.EXIT_SKIP)

    server = sh.Server("load", workers=0,
                       env_extra={"VESSEL_SERVER_LIMITS_HEADER_TIMEOUT_S": str(IDLE_LIMIT_S)})
    try:
        checks.section(f"{CONNECTIONS} concurrent connections to the library")
        c = sh.new_user(server, "load@example.com", checks)
        uid = c.user["id"]
        server.sql(f"""
INSERT INTO uploads (id, user_id, storage_key, filename, content_type, size_bytes, status,
                     content_state, created_at, updated_at)
SELECT s.id, '{uid}', '{uid}/' || s.id || '/original', 'track-' || s.g || '.wav', 'audio/wav',
       1000 + s.g, 'ready', 'stored', now() - make_interval(secs => s.g),
       now() - make_interval(secs => s.g)
FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, {LIBRARY_ROWS}) g) s""")
        r = c.get("/api/v1/uploads?limit=20")
        checks.require(r.status == 200 and len((r.json or {}).get("items", [])) == 20,
                       "the library answers before the storm", r.brief())

        pid = server.proc.pid
        time.sleep(0.5)
        base_rss = proc_kb(pid, "VmRSS")
        base_fds = fd_count(pid)
        checks.info(f"server pid {pid}: idle VmRSS {base_rss / 1024:.1f} MB, {base_fds} fds")
        sampler = Sampler(pid)
        sampler.start()
        port = int(server.base.rsplit(":", 1)[1])
        outcomes, held, t_open, t_total, accepted = asyncio.run(storm(port, c.token, pid, base_fds))
        sampler.stop()

        statuses: dict = {}
        bad: list[str] = []
        for o in outcomes:
            key = o[0]
            statuses[key] = statuses.get(key, 0) + 1
            if key == 200:
                try:
                    items = json.loads(o[2]).get("items", [])
                except ValueError:
                    items = None
                if items is None or len(items) != 20:
                    bad.append(f"200 without the page: {o[2][:120]!r}")
            elif key == 503:
                try:
                    err = json.loads(o[2]).get("error", {})
                except ValueError:
                    err = {}
                if not err.get("code"):
                    bad.append(f"503 without a JSON error: {o[2][:120]!r}")
            else:
                bad.append(f"{key}: {str(o[1:])[:200]}")
        answered = statuses.get(200, 0) + statuses.get(503, 0)
        checks.info(f"{held} connections held open at once after {t_open:.1f} s; "
                    f"{len(outcomes)} outcomes in {t_total:.1f} s: {statuses}")
        checks.check(held == CONNECTIONS, f"all {CONNECTIONS} connections were open at once",
                     f"{held}")
        # The server's own descriptors tell whether it took them all (listen backlog);
        # measured before any request, since answered connections are released.
        checks.check(accepted >= CONNECTIONS,
                     f"the server accepted all {CONNECTIONS} connections at once",
                     f"{accepted} more fds than the {base_fds} idle")
        checks.equal(answered, CONNECTIONS * REQUESTS_PER_CONNECTION,
                     "requests answered with 200 or a clean 503")
        checks.check(not bad, "no reset, timeout, malformed or other answer",
                     "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
        if statuses.get(503):
            retry = [o for o in outcomes if o[0] == 503 and "retry-after" in o[1]]
            checks.equal(len(retry), statuses[503], "every 503 carries Retry-After")
        growth_mb = (sampler.peak - base_rss) / 1024
        checks.info(f"server VmRSS peak {sampler.peak / 1024:.1f} MB (+{growth_mb:.1f} MB), "
                    f"VmHWM {proc_kb(pid, 'VmHWM') / 1024:.1f} MB, peak {sampler.peak_fds} fds")
        checks.check(growth_mb < RSS_GROWTH_LIMIT_MB,
                     f"RSS growth under {RSS_GROWTH_LIMIT_MB:.0f} MB", f"{growth_mb:.1f} MB")

        checks.section("healthy afterwards")
        t = time.monotonic()
        h = server.client().get("/healthz", timeout=5)
        checks.check(h.status == 200 and time.monotonic() - t < 1.0, "/healthz 200 within 1 s",
                     h.brief())
        t = time.monotonic()
        r = c.get("/api/v1/uploads?limit=20", timeout=5)
        checks.check(r.status == 200 and time.monotonic() - t < 1.0,
                     "the library 200 within 1 s", r.brief())
        deadline = time.time() + 15
        fds = fd_count(pid)
        while fds > base_fds + 16 and time.time() < deadline:
            time.sleep(0.2)
            fds = fd_count(pid)
        checks.check(fds <= base_fds + 16, "open fds back near the baseline (connections released)",
                     f"{fds} now, {base_fds} before")
        t_released = time.time() - (deadline - 15)
        checks.info(f"descriptors released {t_released:.1f} s after the clients closed")

        checks.section(f"{IDLE_CONNECTIONS} keep-alive connections left idle (client never closes)")
        base_fds = fd_count(pid)
        idle = []
        for _ in range(IDLE_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append(s)
        answered = sum(1 for s in idle if read_whole_response(s).startswith(b"HTTP/1.1 200"))
        checks.equal(answered, IDLE_CONNECTIONS, "each got its answer and stays open (keep-alive)")
        t0 = time.time()
        closed = 0
        for s in idle:
            s.settimeout(max(1.0, IDLE_LIMIT_S + 10 - (time.time() - t0)))
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1  # closed too (a reset instead of a FIN)
            except OSError as e:
                checks.info(f"idle connection: {e!r}")
        t_closed = time.time() - t0
        checks.equal(closed, IDLE_CONNECTIONS,
                     f"the server closed every idle connection (after {t_closed:.1f} s; "
                     f"idle limit {IDLE_LIMIT_S} s)")
        for s in idle:
            s.close()
        deadline = time.time() + 10
        fds = fd_count(pid)
        while fds > base_fds + 4 and time.time() < deadline:
            time.sleep(0.2)
            fds = fd_count(pid)
        checks.check(fds <= base_fds + 4, "and released their descriptors",
                     f"{fds} now, {base_fds} before")
        checks.check(server.proc.poll() is None, "the server is still running")
        code, secs = server.stop(timeout=30)
        checks.check(code == 0, f"clean exit on SIGTERM ({secs:.1f} s)", f"exit {code}")
        if code != 0:
            checks.info(server.log_tail(2000))
    finally:
        server.close()


if __name__ == "__main__":
    sh.run_main("test_server_load", body)

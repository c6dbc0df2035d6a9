#!/usr/bin/env python3
"""Live status over Server-Sent Events against a real `vessel serve`.

- The library stream shows an upload go queued → processing → ready.
- A change written straight into PostgreSQL (as a worker on another machine
  would) reaches the stream: the feed is LISTEN/NOTIFY, not in-process.
- Owner only: another user's stream never carries it; their per-upload stream
  of it is 404; no credentials is 401.
- Last-Event-ID resume: a client that reconnects gets what changed meanwhile.
- The per-upload stream starts with the upload's current state.
"""
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

VESSEL = os.environ.get("VESSEL_BIN", "build/server/vessel")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def request(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Stream:
    """An SSE client on its own thread; events land in a queue."""

    def __init__(self, base, path, token, last_event_id=None):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = "Bearer " + token
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.events = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line == "":
                    if "data" in event:
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    self.events.put({"comment": line})
                elif ":" in line:
                    k, v = line.split(":", 1)
                    event[k] = v[1:] if v.startswith(" ") else v
        except Exception:
            return

    def until(self, pred, timeout):
        """Events until one satisfies pred; returns (all seen, the match or None)."""
        seen, deadline = [], time.time() + timeout
        while time.time() < deadline:
            try:
                e = self.events.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            if "comment" in e:
                continue
            seen.append(e)
            if pred(e):
                return seen, e
        return seen, None

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except Exception:
            pass
        self.conn.close()


def main():
    if b"unknown command" in subprocess.run([VESSEL, "serve", "--x"], capture_output=True).stderr:
        return 77
    tmp = tempfile.mkdtemp(prefix="vessel-events-")
    os.chmod(tmp, 0o755)
    log = open(os.path.join(tmp, "server.log"), "w+")
    proc = subprocess.Popen([VESSEL, "serve", "--data-dir", os.path.join(tmp, "var"), "--listen",
                             "127.0.0.1:0", "--workers", "1"], stderr=log,
                            env=dict(os.environ, VESSEL_LOG_LEVEL="info",
                                     VESSEL_WORKERS_HEARTBEAT_S="1"))
    base = None
    for _ in range(600):
        with open(log.name) as f:
            for line in f:
                if '"listening"' in line:
                    base = json.loads(line)["url"]
        if base or proc.poll() is not None:
            break
        time.sleep(0.1)
    if not base:
        print(open(log.name).read())
        return 1

    def psql(sql):
        return subprocess.run(["psql", "-h", os.path.join(tmp, "var", "run"), "-U", "vessel", "-d",
                               "vessel", "-Atc", sql], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        tokens = {}
        for who in ("a", "b"):
            request(base, "POST", "/api/v1/auth/register",
                    {"email": f"{who}@example.com", "password": "long enough pw"})
            st, body = request(base, "POST", "/api/v1/auth/login",
                               {"email": f"{who}@example.com", "password": "long enough pw"})
            tokens[who] = body["token"]
        st = Stream(base, "/api/v1/events", None)
        check(st.status == 401, f"no credentials → 401 ({st.status})")
        st.close()
        sa = Stream(base, "/api/v1/events", tokens["a"])
        sb = Stream(base, "/api/v1/events", tokens["b"])
        check(sa.status == 200 and sa.resp.getheader("content-type", "").startswith(
            "text/event-stream"), "library stream opens as text/event-stream")

        wav = os.path.join(tmp, "t.wav")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=40", wav], check=True)
        size = os.path.getsize(wav)
        st_, created = request(base, "POST", "/api/v1/uploads",
                               {"filename": "live.wav", "content_type": "audio/wav", "size": size},
                               tokens["a"])
        up = created["id"]
        with open(wav, "rb") as f:
            urllib.request.urlopen(urllib.request.Request(created["upload"]["url"], data=f.read(),
                                                          method="PUT"), timeout=30).read()
        request(base, "POST", f"/api/v1/uploads/{up}/complete", None, tokens["a"])
        seen, ready = sa.until(lambda e: e.get("event") == "upload" and
                               json.loads(e["data"])["status"] == "ready", 120)
        statuses = [json.loads(e["data"])["status"] for e in seen if e.get("event") == "upload"]
        check(ready is not None, f"A's stream reaches ready (statuses {statuses})")
        check("queued" in statuses and "processing" in statuses,
              "A saw queued and processing before ready")
        ids = [int(e["id"]) for e in seen]
        check(ids == sorted(ids) and len(set(ids)) == len(ids), f"event ids increase: {ids}")
        check(all(json.loads(e["data"])["id"] == up for e in seen), "every event is A's upload")
        if ready:
            check(json.loads(ready["data"])["stream_url"] is not None, "ready carries stream_url")

        # A change from outside this process (another machine's worker would do the same).
        psql(f"UPDATE uploads SET title = 'From elsewhere' WHERE id = '{up}'")
        _, ext = sa.until(lambda e: e.get("event") == "upload" and
                          json.loads(e["data"]).get("title") == "From elsewhere", 10)
        check(ext is not None, "a change written into PostgreSQL directly reaches the stream")
        last_seen = int(ext["id"]) if ext else 0

        leaked, _ = sb.until(lambda e: False, 1)
        check(all(up not in e.get("data", "") for e in leaked), "B's stream never carries A's upload")
        sbu = Stream(base, f"/api/v1/uploads/{up}/events", tokens["b"])
        check(sbu.status == 404, f"B's per-upload stream of A's upload → 404 ({sbu.status})")
        sbu.close()

        # Resume: disconnect, change twice, reconnect with Last-Event-ID.
        sa.close()
        psql(f"UPDATE uploads SET artist = 'Offline 1' WHERE id = '{up}'")
        psql(f"UPDATE uploads SET artist = 'Offline 2' WHERE id = '{up}'")
        sr = Stream(base, "/api/v1/events", tokens["a"], last_event_id=last_seen)
        _, missed = sr.until(lambda e: e.get("event") == "upload", 10)
        check(missed is not None and json.loads(missed["data"])["artist"] == "Offline 2" and
              int(missed["id"]) > last_seen,
              "reconnecting with Last-Event-ID delivers the newest state of what changed")
        sr.close()

        # The per-upload stream starts with the current state.
        su = Stream(base, f"/api/v1/uploads/{up}/events", tokens["a"])
        _, first = su.until(lambda e: True, 10)
        check(first is not None and json.loads(first["data"])["artist"] == "Offline 2",
              "per-upload stream starts with the current state")
        # Deleting the upload ends with a `deleted` event.
        request(base, "DELETE", f"/api/v1/uploads/{up}", None, tokens["a"])
        _, gone = su.until(lambda e: e.get("event") == "deleted", 10)
        check(gone is not None and json.loads(gone["data"])["id"] == up, "delete → deleted event")
        su.close()
        sb.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        check(rc == 0, f"server exits 0 on SIGTERM with streams open ({rc})")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

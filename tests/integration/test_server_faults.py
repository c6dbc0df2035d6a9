#!/usr/bin/env python3
"""`vessel serve` when what it stands on fails: the database, then the storage.

A. PostgreSQL goes away while the server runs (server with --workers 1 and its
   embedded cluster). A 30 s WAV is uploaded and completed; right after the
   202 the cluster is stopped hard (`pg_ctl stop -m immediate`, a crash: no
   checkpoint, recovery on start) and kept down ~6 s. Meanwhile:
     - library, upload, login and create-upload requests fail fast: a 503 with a
       JSON error, each in under 2 s (several at once too); /readyz, when the
       server has it, is 503 and names the database; /healthz answers.
   Then the cluster is started again with the same command line (pg_ctl
   restart, which reuses postmaster.opts), as its owner (the `vessel` user
   when root). The server answers 200 again by itself (same process), the job
   queued before the outage still ends `ready` (no job lost), and nothing is
   left claimed. Finally a `pg_ctl restart -m fast` under a steady trickle of
   requests: only 200 or a clean 503, and 200 again afterwards.
B. Storage full, then unwritable. The local storage root is a small tmpfs
   (mounted by this test; skipped when mounting is not allowed here):
     - full (1 MiB, 3.5 MB body): the PUT is refused with 507 and a JSON error,
       nothing is left in the storage (no partial or temporary file), the upload
       stays retryable; after the tmpfs grows (remount size=16M) the same signed
       URL takes the body (200), complete is 202 and the original is whole.
     - read-only (remount ro): the PUT is refused with 503 or 507 and a JSON
       error, nothing written; after remount rw the same URL works.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_harness as sh  # noqa: E402

FAST_S = 2.0
OUTAGE_S = 6.0


# --------------------------------------------------------------------------- PostgreSQL

class Cluster:
    """The server's embedded cluster, driven with its own pg_ctl as its owner."""

    def __init__(self, server: sh.Server):
        self.data = server.data
        self.pgdata = server.data / "postgres"
        self.log = server.data / "postgres.log"
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        self.bin_dir = Path(os.readlink(f"/proc/{pid}/exe")).parent
        owner = self.pgdata.stat().st_uid
        self.prefix = [] if owner == os.geteuid() else ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]

    def pg_ctl(self, *args, timeout=90) -> subprocess.CompletedProcess:
        cmd = [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args]
        # -l: the postmaster's output goes to the log, never to our pipes.
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def stop_immediate(self):
        return self.pg_ctl("-m", "immediate", "-w", "stop")

    def restart(self, mode="fast"):
        return self.pg_ctl("-l", str(self.log), "-w", "-t", "60", "-m", mode, "restart")


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def is_clean_503(r: sh.Response) -> bool:
    return r.status == 503 and bool(r.error_code) and bool(r.error.get("message"))


def database_outage(checks: sh.Checks, tmp: Path) -> None:
    server = sh.Server("faults-db", workers=1)
    try:
        c = sh.new_user(server, "db@example.com", checks)
        wav = sh.make_tone(tmp / "tone30.wav", 30.0)
        cluster = Cluster(server)
        pid = server.proc.pid
        checks.info(f"pg_ctl in {cluster.bin_dir}, as {cluster.prefix[2] if cluster.prefix else 'us'}")

        checks.section("A. PostgreSQL stopped hard while the server runs")
        upload_id = sh.upload_bytes(c, "tone30.wav", "audio/wav", wav.read_bytes())
        state = server.sql(f"SELECT state FROM jobs WHERE upload_id = '{upload_id}'")[0][0]
        r = cluster.stop_immediate()
        t_down = time.monotonic()
        checks.require(r.returncode == 0, "pg_ctl stop -m immediate", r.stderr.strip())
        checks.info(f"job for {upload_id} was '{state}' when the database went down")

        slow: list[str] = []
        not_503: list[str] = []
        probes = 0
        anon = server.client()
        calls = {
            "GET /api/v1/uploads": lambda: c.get("/api/v1/uploads", timeout=10),
            "GET /api/v1/uploads/{id}": lambda: c.get(f"/api/v1/uploads/{upload_id}", timeout=10),
            "POST /api/v1/uploads": lambda: c.post(
                "/api/v1/uploads", {"filename": "x.wav", "content_type": "audio/wav", "size": 10},
                timeout=10),
        }
        # Login once only: attempts count against its rate limit (429) whatever they meet.
        resp, secs = timed(lambda: anon.post(
            "/api/v1/auth/login", {"email": "db@example.com", "password": sh.PASSWORD},
            auth=False, timeout=10))
        probes += 1
        if secs >= FAST_S:
            slow.append(f"POST /api/v1/auth/login {secs:.1f} s")
        if not is_clean_503(resp):
            not_503.append(f"POST /api/v1/auth/login: {resp.brief(120)}")
        ready_seen = health_seen = None
        while time.monotonic() - t_down < OUTAGE_S:
            for name, call in calls.items():
                resp, secs = timed(call)
                probes += 1
                if secs >= FAST_S:
                    slow.append(f"{name} {secs:.1f} s")
                if not is_clean_503(resp):
                    not_503.append(f"{name}: {resp.brief(120)}")
            ready_seen, secs = timed(lambda: anon.get("/readyz", timeout=10))
            if secs >= FAST_S:
                slow.append(f"/readyz {secs:.1f} s")
            health_seen, secs = timed(lambda: anon.get("/healthz", timeout=10))
            if secs >= FAST_S:
                slow.append(f"/healthz {secs:.1f} s")
            time.sleep(0.3)
        # Several at once: the handler pool must not be stuck on the dead database.
        results: list = []

        def worker():
            results.append(timed(lambda: c.get("/api/v1/uploads", timeout=10)))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for resp, secs in results:
            probes += 1
            if secs >= FAST_S:
                slow.append(f"parallel GET {secs:.1f} s")
            if not is_clean_503(resp):
                not_503.append(f"parallel GET: {resp.brief(120)}")
        checks.info(f"{probes} requests during the outage")
        checks.check(not not_503, "every request during the outage: 503 with a JSON error",
                     "; ".join(not_503[:4]))
        checks.check(not slow, f"every request during the outage answered in < {FAST_S:g} s",
                     "; ".join(slow[:4]))
        if ready_seen is not None and ready_seen.status != 404:
            checks.check(ready_seen.status == 503 and "database" in ready_seen.body.decode("utf-8", "replace"),
                         "/readyz is 503 and names the database", ready_seen.brief())
        else:
            checks.info("no /readyz on this server (404): not checked")
        checks.check(health_seen is not None and health_seen.status == 200,
                     "/healthz still answers 200 (liveness)",
                     health_seen.brief() if health_seen else "")
        checks.check(server.proc.poll() is None, "the server kept running through the outage")

        checks.section("A. the database comes back")
        r = cluster.restart()
        checks.require(r.returncode == 0, "pg_ctl restart (same options) as the cluster owner",
                       (r.stdout + r.stderr).strip()[-500:])
        t_up = time.monotonic()
        back = None
        while time.monotonic() - t_up < 30:
            back = c.get("/api/v1/uploads", timeout=10)
            if back.status == 200:
                break
            time.sleep(0.2)
        checks.check(back is not None and back.status == 200,
                     f"the library is 200 again by itself ({time.monotonic() - t_up:.1f} s "
                     f"after the database)", back.brief() if back else "")
        checks.equal(server.proc.pid, pid, "same server process (no restart)")
        login = anon.post("/api/v1/auth/login", {"email": "db@example.com", "password": sh.PASSWORD},
                          auth=False)
        checks.status(login, 200, "login works again")

        final = sh.wait_status(c, upload_id, timeout=240)
        checks.equal(final.get("status"), "ready", "the job queued before the outage ends ready")
        rows = server.sql(f"SELECT state, attempts FROM jobs WHERE upload_id = '{upload_id}' "
                          f"ORDER BY id")
        checks.info(f"jobs for the upload (state, attempts): {rows}")
        checks.check(rows and rows[-1][0] == "succeeded", "its job is succeeded", rows)
        checks.equal(server.sql_count("SELECT count(*) FROM jobs WHERE state = 'running'"), 0,
                     "no job left claimed")

        checks.section("A. pg_ctl restart -m fast under a trickle of requests")
        stop = threading.Event()
        seen: dict = {}
        worst = [0.0]

        def trickle():
            while not stop.is_set():
                resp, secs = timed(lambda: c.get("/api/v1/uploads?limit=5", timeout=10))
                key = resp.status if resp.status == 200 or is_clean_503(resp) else resp.brief(100)
                seen[key] = seen.get(key, 0) + 1
                worst[0] = max(worst[0], secs)
                time.sleep(0.05)

        th = threading.Thread(target=trickle)
        th.start()
        time.sleep(1.0)
        r = cluster.restart("fast")
        time.sleep(3.0)
        stop.set()
        th.join()
        checks.require(r.returncode == 0, "pg_ctl restart -m fast", r.stderr.strip())
        checks.info(f"answers around the restart: {seen}; slowest {worst[0]:.2f} s")
        checks.check(set(seen) <= {200, 503}, "only 200 or a clean 503 around the restart", seen)
        checks.check(worst[0] < FAST_S, f"none slower than {FAST_S:g} s", f"{worst[0]:.2f} s")
        checks.status(c.get("/api/v1/uploads"), 200, "the library is 200 after the restart")
        code, secs = server.stop(timeout=60)
        checks.check(code == 0, f"clean exit on SIGTERM ({secs:.1f} s)", f"exit {code}")
    finally:
        server.close()


# --------------------------------------------------------------------------- storage

def mount_tmpfs(where: Path, size: str) -> str | None:
    """Mounts a tmpfs; None or why it cannot be done here."""
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "vessel-test",
                        str(where)], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def remount(where: Path, opts: str) -> None:
    r = subprocess.run(["mount", "-o", f"remount,{opts}", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        raise sh.Abort(f"remount {opts}: {r.stderr.strip()}")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def storage_faults(checks: sh.Checks, tmp: Path) -> None:
    checks.section("B. storage full, then read-only (a tmpfs as the storage root)")
    mnt = tmp / "store"
    mnt.mkdir()
    why = mount_tmpfs(mnt, "1M")
    if why:
        checks.info(f"SKIPPED: cannot mount a tmpfs here ({why}); storage faults not tested")
        return
    server = None
    try:
        server = sh.Server("faults-storage", workers=0,
                           env_extra={"VESSEL_STORAGE_LOCAL_ROOT": str(mnt)})
        c = sh.new_user(server, "disk@example.com", checks)
        wav = sh.make_tone(tmp / "tone20.wav", 20.0).read_bytes()  # ~3.5 MB
        before = files_under(mnt)

        r = sh.create_upload(c, "big.wav", "audio/wav", len(wav))
        checks.require(r.status == 201, "create a 3.5 MB upload", r.brief())
        created = r.json
        put, secs = timed(lambda: sh.put_url(created, wav))
        checks.status(put, 507, f"PUT into a full store refused ({secs:.1f} s)",
                      code="insufficient_storage")
        checks.check(bool(put.error.get("message")), "with a message", put.brief())
        checks.equal(files_under(mnt), before, "nothing half-written in the storage")
        row = server.sql(f"SELECT status, content_state FROM uploads WHERE id = '{created['id']}'")
        checks.equal(row[0] if row else None, ["uploading", "none"],
                     "the upload stays retryable (uploading, no content)")
        comp = c.post(f"/api/v1/uploads/{created['id']}/complete")
        checks.status(comp, 409, "complete before any content is refused")

        remount(mnt, "size=16M")
        put = sh.put_url(created, wav)
        checks.status(put, 200, "the same signed URL works once space returns")
        comp = c.post(f"/api/v1/uploads/{created['id']}/complete")
        checks.status(comp, 202, "complete is accepted")
        stored = [f for f in files_under(mnt) if f.endswith(f"{created['id']}/original")]
        checks.check(len(stored) == 1 and (mnt / stored[0]).stat().st_size == len(wav),
                     "the original is whole", files_under(mnt))

        checks.section("B. read-only storage")
        r = sh.create_upload(c, "ro.wav", "audio/wav", len(wav))
        checks.require(r.status == 201, "create another upload", r.brief())
        created2 = r.json
        remount(mnt, "ro")
        before = files_under(mnt)
        put, secs = timed(lambda: sh.put_url(created2, wav))
        checks.status(put, (503, 507), f"PUT into read-only storage refused ({secs:.1f} s)")
        checks.check(bool(put.error_code) and bool(put.error.get("message")),
                     "with a JSON error", put.brief())
        checks.equal(files_under(mnt), before, "nothing written")
        remount(mnt, "rw")
        put = sh.put_url(created2, wav)
        checks.status(put, 200, "the same URL works once the storage is writable again")
        checks.status(c.get("/healthz"), 200, "the server is healthy")
        code, secs = server.stop(timeout=60)
        checks.check(code == 0, f"clean exit on SIGTERM ({secs:.1f} s)", f"exit {code}")
    finally:
        if server:
            server.close()
        for _ in range(20):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)


def body(checks: sh.Checks) -> None:
    tmp = sh.make_temp_dir("vessel-faults-")
    try:
        try:
            database_outage(checks, tmp)
        except sh.Abort as e:  # part B does not depend on part A
            checks.failures.append(f"aborted: {e}")
            print(f"ABORT: {e}", flush=True)
        storage_faults(checks, tmp)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)])


if __name__ == "__main__":
    sh.run_main("test_server_faults", body)

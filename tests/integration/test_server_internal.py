#!/usr/bin/env python3
"""The remote-worker endpoints of `vessel serve` (/internal/v1/jobs/...).

Against a real server and its embedded PostgreSQL: missing or wrong worker
secret, missing or wrong job secret, bad payloads, a callback for an attempt
that lost its lease, replays after completion. Each refused call must change
nothing in the database; the secret is stored only as its SHA-256.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

VESSEL = os.environ.get("VESSEL_BIN", "build/server/vessel")
WORKER_SECRET = "test-worker-secret-0123456789"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def request(base, method, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text) if text else None
        except ValueError:
            return e.code, text


class Server:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        env = dict(os.environ, VESSEL_SERVER_WORKER_SECRET=WORKER_SECRET, VESSEL_LOG_LEVEL="info")
        self.stderr = open(os.path.join(data_dir, "server.log"), "w+")
        self.proc = subprocess.Popen(
            [VESSEL, "serve", "--data-dir", os.path.join(data_dir, "var"), "--listen",
             "127.0.0.1:0", "--workers", "0"], stderr=self.stderr, env=env)
        deadline = time.time() + 60
        self.base = None
        while time.time() < deadline and self.base is None:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early: " + self.log())
            for line in self.log().splitlines():
                if '"listening"' in line:
                    self.base = json.loads(line)["url"]
            time.sleep(0.1)
        if not self.base:
            raise RuntimeError("server did not start: " + self.log())

    def log(self):
        with open(self.stderr.name) as f:
            return f.read()

    def psql(self, sql):
        out = subprocess.run(
            ["psql", "-h", os.path.join(self.data_dir, "var", "run"), "-U", "vessel", "-d",
             "vessel", "-Atc", sql], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def make_wav(path, seconds=4):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", path], check=True)


def queued_upload(srv, token, wav):
    size = os.path.getsize(wav)
    auth = {"Authorization": "Bearer " + token}
    st, created = request(srv.base, "POST", "/api/v1/uploads",
                          {"filename": "t.wav", "content_type": "audio/wav", "size": size}, auth)
    assert st == 201, (st, created)
    with open(wav, "rb") as f:
        put = urllib.request.Request(created["upload"]["url"], data=f.read(), method="PUT",
                                     headers={"Content-Type": "audio/wav"})
    with urllib.request.urlopen(put, timeout=30) as r:
        assert r.status == 200
    st, body = request(srv.base, "POST", f"/api/v1/uploads/{created['id']}/complete", None, auth)
    assert st == 202, (st, body)
    return created["id"]


def main():
    if b"unknown command" in subprocess.run([VESSEL, "serve", "--x"], capture_output=True).stderr:
        return 77  # a build without the server
    tmp = tempfile.mkdtemp(prefix="vessel-internal-")
    os.chmod(tmp, 0o755)
    srv = Server(tmp)
    try:
        b = srv.base
        st, _ = request(b, "POST", "/api/v1/auth/register",
                        {"email": "w@example.com", "password": "long enough pw"})
        check(st == 201, "register")
        st, login = request(b, "POST", "/api/v1/auth/login",
                            {"email": "w@example.com", "password": "long enough pw"})
        token = login["token"]
        wav = os.path.join(tmp, "a.wav")
        make_wav(wav)
        up = queued_upload(srv, token, wav)

        def job_row():
            return srv.psql(f"SELECT state, attempts, progress, coalesce(lease_owner,'') FROM jobs "
                            f"WHERE upload_id = '{up}'")

        before = job_row()
        ws = {"x-worker-secret": WORKER_SECRET}
        # --- claim needs the worker secret
        st, body = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t1"})
        check(st == 401 and body["error"]["code"] == "unauthenticated", f"claim without secret → 401 ({st})")
        st, _ = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t1"},
                        {"x-worker-secret": WORKER_SECRET + "x"})
        check(st == 401, f"claim with a wrong secret → 401 ({st})")
        st, _ = request(b, "POST", "/internal/v1/jobs/claim", {"worker": 5}, ws)
        check(st == 400, f"claim with a bad payload → 400 ({st})")
        check(job_row() == before, "refused claims changed nothing: " + job_row())
        # The user API's bearer token is no worker secret.
        st, _ = request(b, "POST", "/internal/v1/jobs/claim", {}, {"Authorization": "Bearer " + token})
        check(st == 401, f"claim with a user token → 401 ({st})")

        st, claim = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t1"}, ws)
        check(st == 200 and claim["upload_id"] == up and claim["attempt"] == 1, f"claim → 200 ({st})")
        job, secret = claim["job_id"], claim["job_secret"]
        stored = srv.psql(f"SELECT job_secret_hash FROM uploads WHERE id = '{up}'")
        check(stored == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored,
              "only the SHA-256 of the job secret is stored")
        st, _ = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t2"}, ws)
        check(st == 204, f"nothing else due → 204 ({st})")

        both = {"x-worker-secret": WORKER_SECRET, "x-job-secret": secret}
        running = job_row()
        cases = [
            ("progress without the worker secret", {"x-job-secret": secret}, {"attempt": 1, "progress": 0.5}, 401),
            ("progress with a wrong worker secret", {"x-worker-secret": "nope", "x-job-secret": secret},
             {"attempt": 1, "progress": 0.5}, 401),
            ("progress without the job secret", ws, {"attempt": 1, "progress": 0.5}, 401),
            ("progress with a wrong job secret", dict(ws, **{"x-job-secret": "0" * 64}),
             {"attempt": 1, "progress": 0.5}, 403),
            ("progress out of range", both, {"attempt": 1, "progress": 1.5}, 400),
            ("progress with an unknown field", both, {"attempt": 1, "progress": 0.5, "x": 1}, 400),
            ("progress for another attempt", both, {"attempt": 2, "progress": 0.5}, 409),
            ("complete with a wrong job secret", dict(ws, **{"x-job-secret": "f" * 64}),
             {"attempt": 1, "duration_s": 4.0, "master_key": f"x/{up}/master.m3u8", "probe": {}}, 403),
        ]
        for what, headers, body, want in cases:
            st, resp = request(b, "POST", f"/internal/v1/jobs/{job}/progress"
                               if "progress" in what else f"/internal/v1/jobs/{job}/complete",
                               body, headers)
            check(st == want, f"{what} → {want} (got {st} {resp})")
        check(job_row() == running, "refused callbacks changed nothing: " + job_row())
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/progress", {"attempt": 1, "progress": 0.25}, both)
        check(st == 204, f"progress with both secrets → 204 ({st})")
        check(srv.psql(f"SELECT progress FROM jobs WHERE id = {job}") == "0.25", "progress recorded")

        # --- the lease is lost: another worker claims the expired job.
        srv.psql(f"UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = {job}")
        st, claim2 = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t2"}, ws)
        check(st == 200 and claim2["job_id"] == job and claim2["attempt"] == 2,
              f"expired lease re-claimed as attempt 2 ({st})")
        secret2 = claim2["job_secret"]
        check(secret2 != secret, "a new attempt gets a new job secret")
        taken = job_row()
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/progress", {"attempt": 1, "progress": 0.9}, both)
        check(st == 409, f"old attempt's progress → 409 ({st})")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/fail",
                        {"attempt": 1, "code": "corrupt_input", "message": "x"}, both)
        check(st == 409, f"old attempt's fail → 409 ({st})")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/progress", {"attempt": 2, "progress": 0.9}, both)
        check(st == 403, f"new attempt number with the old secret → 403 ({st})")
        check(job_row() == taken, "the lost-lease callbacks changed nothing")

        # --- complete: the master must exist where the layout says.
        user = srv.psql(f"SELECT user_id FROM uploads WHERE id = '{up}'")
        master_key = f"{user}/{up}/master.m3u8"
        both2 = {"x-worker-secret": WORKER_SECRET, "x-job-secret": secret2}
        done = {"attempt": 2, "duration_s": 4.0, "master_key": master_key,
                "probe": {"codec": "pcm_s16le", "title": "Remote"}}
        st, resp = request(b, "POST", f"/internal/v1/jobs/{job}/complete", done, both2)
        check(st == 409 and resp["error"]["code"] == "outputs_missing", f"complete before master exists → 409 ({st})")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/complete",
                        dict(done, master_key=f"{user}/other/master.m3u8"), both2)
        check(st == 400, f"complete naming another prefix → 400 ({st})")
        master = os.path.join(tmp, "var", "storage", user, up, "master.m3u8")
        with open(master, "w") as f:
            f.write("#EXTM3U\n")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/complete", done, both2)
        check(st == 204, f"complete → 204 ({st})")
        final = srv.psql(f"SELECT status, title, coalesce(job_secret_hash, '') FROM uploads WHERE id = '{up}'")
        check(final == "ready|Remote|", "upload ready, secret hash cleared: " + final)
        finished = job_row()
        for what, path, body in [
            ("replayed complete", "complete", done),
            ("replayed progress", "progress", {"attempt": 2, "progress": 0.5}),
            ("fail after complete", "fail", {"attempt": 2, "code": "corrupt_input", "message": "x"}),
        ]:
            st, _ = request(b, "POST", f"/internal/v1/jobs/{job}/{path}", body, both2)
            check(st == 409, f"{what} → 409 ({st})")
        check(job_row() == finished and srv.psql(f"SELECT status FROM uploads WHERE id = '{up}'") == "ready",
              "replays changed nothing")

        # --- fail: a permanent error fails the upload at once.
        up2 = queued_upload(srv, token, wav)
        st, c3 = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t3"}, ws)
        check(st == 200 and c3["upload_id"] == up2, "claim the second upload")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{c3['job_id']}/fail",
                        {"attempt": 1, "code": "unsupported_input", "message": "not audio"},
                        {"x-worker-secret": WORKER_SECRET, "x-job-secret": c3["job_secret"]})
        check(st == 204, f"fail → 204 ({st})")
        row = srv.psql(f"SELECT status, error FROM uploads WHERE id = '{up2}'")
        check(row.startswith("failed|") and "not audio" in row, "permanent failure recorded: " + row)
        # --- release: the attempt goes back uncounted, and only its holder may release it.
        up3 = queued_upload(srv, token, wav)
        st, c4 = request(b, "POST", "/internal/v1/jobs/claim", {"worker": "t4"}, ws)
        check(st == 200 and c4["upload_id"] == up3, "claim the third upload")
        h4 = {"x-worker-secret": WORKER_SECRET, "x-job-secret": c4["job_secret"]}
        st, _ = request(b, "POST", f"/internal/v1/jobs/{c4['job_id']}/release", {"attempt": 1},
                        {"x-worker-secret": WORKER_SECRET, "x-job-secret": "1" * 64})
        check(st == 403, f"release with a wrong job secret → 403 ({st})")
        st, _ = request(b, "POST", f"/internal/v1/jobs/{c4['job_id']}/release", {"attempt": 1}, h4)
        check(st == 204, f"release → 204 ({st})")
        row = srv.psql(f"SELECT state, attempts FROM jobs WHERE id = {c4['job_id']}")
        check(row == "queued|0", "released: queued, attempt not counted: " + row)
        st, _ = request(b, "POST", f"/internal/v1/jobs/{c4['job_id']}/release", {"attempt": 1}, h4)
        check(st == 409, f"replayed release → 409 ({st})")
        check(WORKER_SECRET not in srv.log() and secret not in srv.log(), "no secret in the logs")
    finally:
        rc = srv.stop()
        check(rc == 0, f"server exits 0 on SIGTERM ({rc})")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

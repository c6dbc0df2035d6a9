#!/usr/bin/env python3
"""Remote workers end to end: a real `vessel serve` with no in-process workers,
an upload made through the HTTP API, and `vessel worker --server URL
--worker-secret-file F` sharing the server's data dir (the local storage plugin
on a shared filesystem) but no database. The job ends ready with its master
playlist in storage; a worker with a wrong secret exits non-zero with a clear
error and leaves the upload queued.

Exits 77 (skipped) when this `vessel` has no `serve` command yet or ffmpeg is
missing. All traffic stays on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402

EXIT_SKIP = 77
WORKER_SECRET = "remote-worker-test-secret-0123456789abcdef"
# No proxy may see (or divert) the traffic to 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def clean_env(extra=None):
    """The caller's environment without VESSEL_* config overrides or proxies."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("VESSEL_") and k != "VESSEL_BIN" and not k.startswith("VESSEL_TEST"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(extra or {})
    return env


def serve_unavailable():
    """Why `vessel serve` cannot be tested here, or None."""
    if not h.have_tools():
        return "ffmpeg/ffprobe not installed"
    # An unknown flag: an existing `serve` refuses it before doing anything; the
    # scratch cwd keeps a default data dir from landing anywhere that matters.
    with tempfile.TemporaryDirectory(prefix="vessel-serve-probe-") as cwd:
        try:
            r = subprocess.run([h.vessel_bin(), "serve", "--no-such-flag-probe"], env=clean_env(),
                               cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=30)
        except subprocess.TimeoutExpired:
            return None  # it did not refuse the command; let the tests find out more
    if "unknown command" in r.stderr:
        return "this vessel has no `serve` command yet"
    return None


def http(method, url, body=None, token=None, headers=None, timeout=30):
    """(status, parsed JSON or raw bytes) for a request to 127.0.0.1 only."""
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", url
    hdrs = dict(headers or {})
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


class Server:
    """`vessel serve --workers 0` on 127.0.0.1:<free port> with its embedded PostgreSQL."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="vessel-remote-")
        os.chmod(self.tmp, 0o755)  # the embedded cluster runs as the unprivileged `vessel` user
        self.data = Path(self.tmp) / "data"
        self.log_path = Path(self.tmp) / "serve.log"
        self.workers = []
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [h.vessel_bin(), "serve", "--data-dir", str(self.data), "--listen", "127.0.0.1:0",
             "--workers", "0"],
            env=clean_env({"VESSEL_SERVER_WORKER_SECRET": WORKER_SECRET}),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log_file)
        try:
            self.base = self._wait_listening(timeout=120)
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "listening" not in line:
                    continue
                try:
                    url = json.loads(line).get("url", "")
                except ValueError:
                    continue
                parts = urllib.parse.urlsplit(url)
                if parts.hostname == "127.0.0.1" and parts.port:
                    return f"http://127.0.0.1:{parts.port}"
            if self.proc.poll() is not None:
                raise AssertionError(f"vessel serve exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"vessel serve did not log 'listening' within {timeout}s:\n{self.log()}")

    def log(self):
        text = self.log_path.read_text(errors="replace")
        return text[-4000:]

    def url(self, path):
        return self.base + path

    def user_token(self, email="remote@example.com", password="correct horse battery staple"):
        st, body = http("POST", self.url("/api/v1/auth/register"), {"email": email, "password": password})
        assert st in (200, 201), f"register: {st} {body}"
        st, body = http("POST", self.url("/api/v1/auth/login"), {"email": email, "password": password})
        assert st == 200 and body.get("token"), f"login: {st} {body}"
        return body["token"]

    def upload(self, token, path):
        """Creates an upload, PUTs the bytes, completes it; returns its id."""
        data = Path(path).read_bytes()
        st, created = http("POST", self.url("/api/v1/uploads"),
                           {"filename": Path(path).name, "content_type": "audio/wav", "size": len(data)},
                           token=token)
        assert st == 201, f"create upload: {st} {created}"
        up_id, target = created["id"], created["upload"]
        put_url = target["url"]
        if put_url.startswith("/"):
            put_url = self.url(put_url)
        st, body = http(target.get("method", "PUT"), put_url, data,
                        headers=target.get("headers") or {}, timeout=120)
        assert 200 <= st < 300, f"upload bytes: {st} {body}"
        st, body = http("POST", self.url(f"/api/v1/uploads/{up_id}/complete"), token=token)
        assert st == 202, f"complete upload: {st} {body}"
        return up_id

    def get_upload(self, token, up_id):
        st, body = http("GET", self.url(f"/api/v1/uploads/{up_id}"), token=token)
        assert st == 200, f"get upload: {st} {body}"
        return body.get("upload", body) if isinstance(body, dict) else body

    def spawn_worker(self, secret, extra_args=()):
        secret_file = Path(self.tmp) / f"worker-secret-{len(self.workers)}"
        secret_file.write_text(secret + "\n")
        os.chmod(secret_file, 0o600)
        log = open(Path(self.tmp) / f"worker-{len(self.workers)}.log", "w+")
        p = subprocess.Popen([h.vessel_bin(), "worker", "--server", self.base,
                              "--worker-secret-file", str(secret_file), "--data-dir", str(self.data),
                              "--workers", "1", *extra_args],
                             env=clean_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        p.log = log
        self.workers.append(p)
        return p

    def close(self):
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            p.log.close()
        self.proc.send_signal(signal.SIGTERM)  # also stops the embedded cluster
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
        subprocess.run(["rm", "-rf", self.tmp])


def worker_log(p):
    p.log.flush()
    p.log.seek(0)
    return p.log.read()[-4000:]


class RemoteWorker(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.media = Path(tempfile.mkdtemp(prefix="vessel-media-"))
        cls.wav = cls.media / "tone.wav"
        r = h.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                   "-i", "sine=frequency=440:sample_rate=44100:duration=8", "-ac", "2",
                   "-c:a", "pcm_s16le", str(cls.wav)], timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ffmpeg could not make the test wav: {r.stderr}")

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", str(cls.media)])

    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.close)

    def test_remote_worker_makes_upload_ready(self):
        s = self.server
        token = s.user_token()
        up_id = s.upload(token, self.wav)
        self.assertIn(s.get_upload(token, up_id)["status"], ("queued", "processing"))
        w = s.spawn_worker(WORKER_SECRET)
        deadline = time.time() + 120
        up = {}
        while time.time() < deadline:
            up = s.get_upload(token, up_id)
            if up["status"] in ("ready", "failed"):
                break
            if w.poll() is not None:
                self.fail(f"the remote worker exited ({w.returncode}):\n{worker_log(w)}")
            time.sleep(0.5)
        self.assertEqual(up.get("status"), "ready",
                         f"upload: {up}\n--- worker ---\n{worker_log(w)}\n--- serve ---\n{s.log()}")
        storage = s.data / "storage"
        if up.get("user_id"):
            masters = [storage / up["user_id"] / up_id / "master.m3u8"]
        else:
            masters = list(storage.glob(f"*/{up_id}/master.m3u8"))
        self.assertEqual(len(masters), 1, f"master playlists found: {masters}")
        self.assertTrue(masters[0].is_file(), f"no master playlist at {masters[0]}")
        self.assertTrue(masters[0].read_text().startswith("#EXTM3U"))
        self.assertNotIn(WORKER_SECRET, worker_log(w), "the worker logged its secret")
        w.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(timeout=60), 0, worker_log(w))
        self.assertNotIn(WORKER_SECRET, s.log(), "the server logged the worker secret")

    def test_wrong_secret_exits_with_clear_error_and_upload_stays_queued(self):
        s = self.server
        token = s.user_token()
        up_id = s.upload(token, self.wav)
        w = s.spawn_worker("not-the-" + WORKER_SECRET)
        try:
            code = w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail(f"a worker with a wrong secret kept running:\n{worker_log(w)}")
        log = worker_log(w)
        self.assertNotEqual(code, 0, log)
        errors = [line for line in log.splitlines() if line.startswith("vessel: error: ")]
        self.assertEqual(len(errors), 1, log)
        self.assertIn("secret", errors[0])
        self.assertNotIn(WORKER_SECRET, log, "the worker logged a secret")
        time.sleep(1)
        self.assertEqual(s.get_upload(token, up_id)["status"], "queued")


if __name__ == "__main__":
    why = serve_unavailable()
    if why:
        print(f"SKIP: {why}")
        sys.exit(EXIT_SKIP)
    unittest.main(verbosity=2)

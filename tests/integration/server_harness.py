"""Shared helpers for the `vessel serve` black-box tests (test_server_*.py).

- `Server`: one `vessel serve --listen 127.0.0.1:0` with its embedded PostgreSQL
  in a fresh 0755 temp dir; its JSON log on stderr goes to a file; `sql()` runs
  psql against the embedded cluster; `stop()` sends SIGTERM and times the exit.
- `Client`: HTTP to 127.0.0.1 only (no proxies), optional bearer token or cookie
  jar; every request returns a `Response` (status, headers, raw body, parsed JSON)
  whatever the status. Paths are sent exactly as given (no normalisation), so
  `..` / `%2e%2e` / `%2F` reach the server verbatim.
- `Checks`: soft checks that print one PASS/FAIL line each and a summary;
  `require()` aborts the run when later checks cannot make sense without it.
- API helpers: register/login, create → PUT → complete, wait for a status,
  mirror a ladder fetched through /media/ into a directory for hls_check.
- Storage: `Server(..., storage="s3")` starts the S3 test server (tests/s3/server.py:
  s3rver behind the botocore-verifying front) and points `vessel serve` at its
  bucket; `storage_files()`, `upload_files()`, `upload_exists()`, `read_stored()`
  look at the local directory or at the bucket alike. `storage_from_env()` reads
  VESSEL_TEST_STORAGE (local | s3) for tests that run with either.

Stdlib only (plus python3-botocore for storage="s3"). Never talks to anything but
127.0.0.1.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402

EXIT_SKIP = 77
PASSWORD = "correct horse battery staple"
RUNGS = ("64k", "128k", "192k", "256k")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What a file under <data>/storage may be called: <user>/<upload>/<one of the layout names>.
_U = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STORAGE_FILE_RE = re.compile(
    rf"^{_U}/{_U}/(original|master\.m3u8|[A-Za-z0-9_-]+/(playlist\.m3u8|segment_\d{{3,}}\.ts))$")


class Abort(Exception):
    """A required step failed; the remaining checks would only cascade."""


STORAGES = ("local", "s3")


def storage_from_env() -> str:
    """VESSEL_TEST_STORAGE: which store `vessel serve` uses in tests that run with
    either (default local)."""
    storage = os.environ.get("VESSEL_TEST_STORAGE", "local") or "local"
    if storage not in STORAGES:
        raise SystemExit(f"VESSEL_TEST_STORAGE={storage!r}: expected one of {', '.join(STORAGES)}")
    return storage


def s3_unavailable() -> str | None:
    """Why the S3 test server cannot run here (then exit 77), or None."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))
    from server import missing  # noqa: E402 (tests/s3/server.py)
    why = missing()
    if why:
        return why
    try:
        importlib.import_module("botocore.auth")  # tests/s3/bucket.py looks at the bucket with it
    except ImportError:
        return f"python3-botocore is not importable by {sys.executable}"
    return None


# --------------------------------------------------------------------------- checks

class Checks:
    """Soft assertions: every check prints a line; the run fails if any failed."""

    def __init__(self, name: str):
        self.name = name
        self.failures: list[str] = []
        self.passed = 0
        self.t0 = time.time()

    def _stamp(self) -> str:
        return f"[{time.time() - self.t0:6.1f}s]"

    def section(self, title: str) -> None:
        print(f"\n{self._stamp()} == {title}", flush=True)

    def info(self, text: str) -> None:
        print(f"{self._stamp()}    {text}", flush=True)

    def check(self, cond, what: str, detail="") -> bool:
        if cond:
            self.passed += 1
            print(f"{self._stamp()} PASS {what}", flush=True)
            return True
        line = f"{what}" + (f"\n         got: {detail}" if detail != "" else "")
        self.failures.append(line)
        print(f"{self._stamp()} FAIL {line}", flush=True)
        return False

    def equal(self, got, want, what: str) -> bool:
        return self.check(got == want, f"{what} == {want!r}", f"{got!r}")

    def status(self, resp: "Response", want, what: str, code: str | None = None) -> bool:
        """resp.status is `want` (an int or a tuple of ints) and, if given, the error code."""
        wants = want if isinstance(want, tuple) else (want,)
        ok = resp.status in wants and (code is None or resp.error_code == code)
        label = "/".join(map(str, wants)) + (f" {code}" if code else "")
        return self.check(ok, f"{what} -> {label}", resp.brief())

    def require(self, cond, what: str, detail="") -> None:
        if not self.check(cond, what, detail):
            raise Abort(what)

    def finish(self) -> int:
        secs = time.time() - self.t0
        print(f"\n{self.name}: {self.passed} passed, {len(self.failures)} failed in {secs:.1f} s")
        for f in self.failures:
            print(f"  FAILED: {f}")
        return 0 if not self.failures else 1


# --------------------------------------------------------------------------- environment

def clean_env(extra=None) -> dict:
    """The caller's environment without VESSEL_* config overrides or proxies."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("VESSEL_") and k != "VESSEL_BIN" and not k.startswith("VESSEL_TEST"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["VESSEL_LOG_LEVEL"] = "info"
    env.update(extra or {})
    return env


def serve_unavailable() -> str | None:
    """Why `vessel serve` cannot be tested here (then exit 77), or None."""
    if not h.have_tools():
        return "ffmpeg/ffprobe not installed"
    if not shutil.which("psql"):
        return "psql not installed"
    b = h.vessel_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        return None  # let the test fail loudly: a missing binary is a build problem
    try:
        r = subprocess.run([b, "serve", "--no-such-flag-probe"], env=clean_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if "unknown command" in r.stderr:
        return "this vessel has no `serve` command"
    return None


def make_temp_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)  # the embedded cluster runs as the unprivileged `vessel` user when root
    return d


# --------------------------------------------------------------------------- HTTP

# Every 5xx any client of this process received (a test may assert there were none).
SERVER_ERRORS: list[str] = []


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        if status >= 500:
            SERVER_ERRORS.append(f"{status} {body[:200]!r}")
        self.headers = headers  # http.client.HTTPMessage (case-insensitive get/get_all)
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name: str):
        return self.headers.get(name) if self.headers is not None else None

    @property
    def error(self) -> dict:
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"]
        return {}

    @property
    def error_code(self):
        return self.error.get("code")

    def brief(self, limit=300) -> str:
        body = self.body.decode("utf-8", "replace")
        if len(body) > limit:
            body = body[:limit] + f"...({len(self.body)} bytes)"
        return f"{self.status} {body}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands a 3xx back as an HTTPError (its status and Location) instead of following it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    """HTTP client for one identity: a bearer token, a cookie jar, or nobody.

    Redirects are followed by default, and urllib then repeats every header,
    Authorization included: pass follow_redirects=False to see a 302 (e.g. a
    segment answered with a presigned URL of the bucket) and fetch its Location
    without credentials, as a browser does across origins."""

    def __init__(self, base: str, token: str | None = None, cookies: bool = False):
        parts = urllib.parse.urlsplit(base)
        assert parts.hostname == "127.0.0.1", base
        self.base = base.rstrip("/")
        self.token = token
        self.jar = http.cookiejar.CookieJar() if cookies else None
        handlers = [urllib.request.ProxyHandler({})]  # no proxy may see the traffic
        if self.jar is not None:
            handlers.append(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener = urllib.request.build_opener(*handlers)
        # The same without following redirects (a 3xx is returned as it is).
        self.opener_no_redirect = urllib.request.build_opener(*handlers, _NoRedirect())
        self.user: dict | None = None

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def request(self, method: str, path: str, body: bytes | None = None, *, json_body=None,
                headers: dict | None = None, auth: bool = True, timeout: float = 60,
                follow_redirects: bool = True) -> Response:
        url = self.url(path)
        assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", url
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if self.jar is not None and method not in ("GET", "HEAD"):
            # What a browser sends with a same-origin write (the CSRF check needs it).
            hdrs.setdefault("Origin", self.base)
        req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        opener = self.opener if follow_redirects else self.opener_no_redirect
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.request("POST", path, json_body=json_body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def raw_request(base: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30) -> Response:
    """One request with http.client: the path is sent byte for byte (no quoting)."""
    parts = urllib.parse.urlsplit(base)
    assert parts.hostname == "127.0.0.1", base
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- the server

class Server:
    """`vessel serve` on 127.0.0.1:<free port> with its embedded PostgreSQL.

    share_data_with=another Server runs a second process on the same data dir
    (it attaches to the running cluster instead of starting one) and the same store.

    storage="s3" starts the S3 test server for this Server (stopped by close()) and
    passes its VESSEL_STORAGE_* variables to `vessel serve`; `self.s3` is its info
    and `self.bucket` a botocore-signed client of the bucket (tests/s3/bucket.py)."""

    def __init__(self, name: str, workers: int = 1, env_extra: dict | None = None,
                 share_data_with: "Server | None" = None, storage: str = "local"):
        self.owner = share_data_with is None
        self.tmp = make_temp_dir(f"vessel-{name}-") if self.owner else share_data_with.tmp
        self.data = self.tmp / "data" if self.owner else share_data_with.data
        self.storage = self.data / "storage"
        self.storage_kind = storage if self.owner else share_data_with.storage_kind
        self.s3 = None if self.owner else share_data_with.s3
        self.bucket = None if self.owner else share_data_with.bucket
        self.storage_env: dict = {} if self.owner else share_data_with.storage_env
        self._s3_server = None
        self.log_path = self.tmp / f"serve-{name}-{os.getpid()}-{time.time_ns()}.log"
        self._log = None
        self.proc = None
        try:
            if self.storage_kind not in STORAGES:
                raise ValueError(f"storage={self.storage_kind!r}: expected one of {STORAGES}")
            if self.storage_kind == "s3" and self.owner:
                self._start_s3()
            self.env = clean_env({**self.storage_env, **(env_extra or {})})
            self.t_start = time.time()
            self._log = open(self.log_path, "w")
            self.proc = subprocess.Popen(
                [h.vessel_bin(), "serve", "--data-dir", str(self.data), "--listen", "127.0.0.1:0",
                 "--workers", str(workers)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
            self.base = self._wait_listening(timeout=120)
        except BaseException:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self._log:
                self._log.close()
            if self.owner:
                self._reap_cluster()
                self._stop_s3()
                subprocess.run(["rm", "-rf", str(self.tmp)])
            raise
        self.startup_s = time.time() - self.t_start
        self.exit_code: int | None = None

    def _start_s3(self) -> None:
        s3_dir = str(Path(__file__).resolve().parent.parent / "s3")
        if s3_dir not in sys.path:
            sys.path.insert(0, s3_dir)
        from server import S3TestServer  # noqa: E402 (tests/s3/server.py)
        from bucket import Bucket  # noqa: E402 (tests/s3/bucket.py)
        self._s3_server = S3TestServer().start()
        self.s3 = self._s3_server.info
        self.storage_env = self._s3_server.storage_env()
        self.bucket = Bucket(self.s3)

    def _stop_s3(self) -> None:
        if self._s3_server is not None:
            self._s3_server.stop()
            self._s3_server = None

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for rec in self.log_records():
                if rec.get("msg") != "listening":
                    continue
                parts = urllib.parse.urlsplit(rec.get("url", ""))
                if parts.hostname == "127.0.0.1" and parts.port:
                    return f"http://127.0.0.1:{parts.port}"
            if self.proc.poll() is not None:
                raise Abort(f"vessel serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(0.1)
        raise Abort(f"vessel serve did not log 'listening' within {timeout}s:\n{self.log_tail()}")

    # --- logs
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n=4000) -> str:
        return self.log_text()[-n:]

    def log_records(self) -> list[dict]:
        out = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    # --- clients
    def client(self, token=None, cookies=False) -> Client:
        return Client(self.base, token=token, cookies=cookies)

    # --- database and storage (white-box observation only)
    def sql(self, query: str) -> list[list[str]]:
        r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-h", str(self.data / "run"), "-U", "vessel",
                            "-d", "vessel", "-v", "ON_ERROR_STOP=1", "-c", query],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr.strip()}")
        return [line.split("|") for line in r.stdout.strip().splitlines() if line]

    def sql_count(self, query: str) -> int:
        return int(self.sql(query)[0][0])

    def storage_files(self) -> list[str]:
        """Every stored object, relative, sorted: the files (not directories) under
        <data>/storage, or with storage="s3" every key in the bucket."""
        if self.storage_kind == "s3":
            return sorted(self.bucket.keys(""))
        if not self.storage.is_dir():
            return []
        return sorted(str(p.relative_to(self.storage)) for p in self.storage.rglob("*")
                      if not p.is_dir())

    def upload_dir(self, user_id: str, upload_id: str) -> Path:
        """Local storage only: the upload's directory (see upload_files for either store)."""
        return self.storage / user_id / upload_id

    def upload_files(self, user_id: str, upload_id: str) -> list[str]:
        """The stored objects of one upload, relative to its prefix, sorted."""
        prefix = f"{user_id}/{upload_id}/"
        if self.storage_kind == "s3":
            return sorted(k[len(prefix):] for k in self.bucket.keys(prefix))
        d = self.upload_dir(user_id, upload_id)
        if not d.is_dir():
            return []
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir())

    def upload_exists(self, user_id: str, upload_id: str) -> bool:
        """Anything left of the upload: its directory (even empty) on local disk,
        any key under its prefix in the bucket."""
        if self.storage_kind == "s3":
            return bool(self.bucket.keys(f"{user_id}/{upload_id}/"))
        return self.upload_dir(user_id, upload_id).exists()

    def read_stored(self, key: str) -> bytes | None:
        """One stored object's bytes (read behind Vessel's back), None when absent."""
        if self.storage_kind == "s3":
            return self.bucket.get(key)
        p = self.storage / key
        return p.read_bytes() if p.is_file() else None

    def postgres_pids(self) -> list[int]:
        """Processes (other than us) whose command line names this data dir: the
        embedded postgres and its children, or a stray vessel."""
        needle = str(self.data).encode()
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmd and b"postgres" in cmd:
                pids.append(int(d.name))
        return pids

    # --- lifecycle
    def stop(self, timeout: float = 30) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if still running after `timeout`, seconds)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, time.time() - t0
        return self.exit_code, time.time() - t0

    def close(self) -> None:
        """Best-effort teardown (after the checks): stop, kill if needed, remove the temp
        dir (and stop the S3 test server this Server started)."""
        if self.proc.poll() is None:
            code, _ = self.stop(timeout=60)
            if code is None:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self.owner:
            self._reap_cluster()
            self._stop_s3()
            subprocess.run(["rm", "-rf", str(self.tmp)])

    def _reap_cluster(self) -> None:
        """A cluster left behind by a broken stop: stop it by its own pid."""
        pids = self.postgres_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.time() + 10
        while pids and time.time() < deadline:
            time.sleep(0.2)
            pids = self.postgres_pids()


# --------------------------------------------------------------------------- API helpers

def register(c: Client, email: str, password: str = PASSWORD) -> Response:
    return c.post("/api/v1/auth/register", {"email": email, "password": password}, auth=False)


def login(c: Client, email: str, password: str = PASSWORD) -> Response:
    r = c.post("/api/v1/auth/login", {"email": email, "password": password}, auth=False)
    if r.status == 200 and isinstance(r.json, dict):
        c.user = r.json.get("user")
    return r


def new_user(server: Server, email: str, checks: Checks | None = None) -> Client:
    """Registers and logs in `email`; returns a bearer-token client (client.user set)."""
    c = server.client()
    r = register(c, email)
    if r.status != 201:
        raise Abort(f"register {email}: {r.brief()}")
    r = login(c, email)
    if r.status != 200 or not (r.json or {}).get("token"):
        raise Abort(f"login {email}: {r.brief()}")
    c.token = r.json["token"]
    if checks:
        checks.info(f"user {email} = {c.user['id']}")
    return c


def create_upload(c: Client, filename: str, content_type: str, size: int) -> Response:
    return c.post("/api/v1/uploads", {"filename": filename, "content_type": content_type, "size": size})


def put_url(created: dict, data: bytes, headers: dict | None = None, url: str | None = None) -> Response:
    """PUT `data` to a created upload's signed URL (no credentials: the URL is the grant)."""
    target = created["upload"]
    url = url or target["url"]
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "127.0.0.1", url
    hdrs = dict(target.get("headers") or {})
    hdrs.update(headers or {})
    return raw_request(f"http://127.0.0.1:{parts.port}", target.get("method", "PUT"),
                       parts.path + ("?" + parts.query if parts.query else ""), data, hdrs,
                       timeout=120)


def upload_bytes(c: Client, filename: str, content_type: str, data: bytes,
                 complete: bool = True) -> str:
    """create → PUT → (complete); returns the upload id. Aborts on any refusal."""
    r = create_upload(c, filename, content_type, len(data))
    if r.status != 201:
        raise Abort(f"create upload {filename!r}: {r.brief()}")
    created = r.json
    p = put_url(created, data)
    if p.status != 200:
        raise Abort(f"PUT {filename!r}: {p.brief()}")
    if complete:
        d = c.post(f"/api/v1/uploads/{created['id']}/complete")
        if d.status != 202:
            raise Abort(f"complete {filename!r}: {d.brief()}")
    return created["id"]


def get_upload(c: Client, upload_id: str) -> Response:
    return c.get(f"/api/v1/uploads/{upload_id}")


def wait_status(c: Client, upload_id: str, statuses=("ready", "failed"), timeout: float = 90,
                interval: float = 0.25) -> dict:
    """Polls GET /uploads/{id} until its status is in `statuses`; returns the last JSON
    (whatever it is, after the timeout)."""
    deadline = time.time() + timeout
    last: dict = {}
    while time.time() < deadline:
        r = get_upload(c, upload_id)
        if r.status == 200 and isinstance(r.json, dict):
            last = r.json
            if last.get("status") in statuses:
                return last
        else:
            last = {"http": r.brief()}
        time.sleep(interval)
    return last


def playlist_uris(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def absolute_uri_name(uri: str) -> str | None:
    """The file name an absolute playlist URI (a presigned URL of the bucket) points
    at, or None for a relative URI."""
    if "://" not in uri:
        return None
    return urllib.parse.unquote(urllib.parse.urlsplit(uri).path.rsplit("/", 1)[-1])


def fetch_ladder(c: Client, stream_url: str, dest: Path) -> list[tuple[str, Response]]:
    """GETs master.m3u8 at stream_url, every media playlist it names and every segment
    they name, writing each body to dest/<same relative path>. Returns
    [(relative path, Response)] in fetch order (a non-200 is recorded, not written).

    A segment URI that is absolute (S3: a presigned GET of the bucket) is fetched
    as it is, without the client's credentials, and stored as <rung>/<its file
    name>; the playlist is written to dest with those URIs replaced by the file
    names, so hls_check reads the same ladder as from local storage."""
    dest.mkdir(parents=True, exist_ok=True)
    base = stream_url.rsplit("/", 1)[0]
    fetched: list[tuple[str, Response]] = []

    def get(rel: str, url: str | None = None) -> Response:
        if url is None:
            r = c.get(f"{base}/{rel}")
        else:
            parts = urllib.parse.urlsplit(url)
            r = Client(f"{parts.scheme}://{parts.netloc}").get(url, auth=False)
        fetched.append((rel, r))
        if r.status == 200:
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(r.body)
        return r

    master = get("master.m3u8")
    if master.status != 200:
        return fetched
    for uri in playlist_uris(master.body.decode("utf-8", "replace")):
        pl = get(uri)
        if pl.status != 200:
            continue
        rung = uri.rsplit("/", 1)[0]
        text = pl.body.decode("utf-8", "replace")
        rewritten = False
        for seg in playlist_uris(text):
            name = absolute_uri_name(seg)
            if name is None:
                get(f"{rung}/{seg}")
            else:
                get(f"{rung}/{name}", url=seg)
                text = text.replace(seg, name, 1)
                rewritten = True
        if rewritten:
            (dest / uri).write_text(text)
    return fetched


def make_tone(path: Path, duration_s: float, codec_args=()) -> Path:
    """A plain stereo 440 Hz sine (fast to make; used where the ladder is not checked)."""
    r = h.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
               "-i", f"sine=frequency=440:sample_rate=44100:duration={duration_s}", "-ac", "2",
               *codec_args, str(path)], timeout=300)
    if r.returncode != 0:
        raise Abort(f"ffmpeg could not make {path.name}: {r.stderr}")
    return path


PNG_BYTES = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
             b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7"
             b"5\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def run_main(name: str, body) -> None:
    """Runs body(checks) with skip/abort handling and exits 0 / 1 / 77."""
    why = serve_unavailable()
    if why:
        print(f"SKIP: {why}")
        sys.exit(EXIT_SKIP)
    checks = Checks(name)
    try:
        body(checks)
    except Abort as e:
        checks.failures.append(f"aborted: {e}")
        print(f"ABORT: {e}", flush=True)
    except Exception as e:  # a bug in the test or an unexpected answer: report, do not hide
        import traceback
        traceback.print_exc()
        checks.failures.append(f"exception: {e!r}")
    sys.exit(checks.finish())

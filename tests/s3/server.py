#!/usr/bin/env python3
"""Starts the S3 test server: s3rver (npm) + the SigV4-verifying front (Debian's
python3-botocore), optionally with the fault-injecting proxy before them, all on
127.0.0.1 with fresh ports, credentials and a temp directory.

    client ──> [fault_proxy.py] ──> front.py (botocore verifies) ──> s3rver
                 (--faults)

As a library (tests/integration, bench):

    from server import S3TestServer, missing
    if (why := missing()): skip(why)
    with S3TestServer() as s3:
        s3.info          # {"endpoint", "bucket", "region", "access_key_id", ...}
        s3.storage_env() # VESSEL_STORAGE_* variables selecting this bucket

As a command:

    tests/s3/server.py [--faults]            prints the JSON once ready, runs until
                                             SIGTERM/SIGINT (or stdin closes with
                                             --until-stdin-eof)
    tests/s3/server.py [--faults] run -- CMD runs CMD with VESSEL_TEST_S3=<json>;
                                             exits with CMD's status, or 77 (skip)
                                             when node, s3rver or botocore is missing

The JSON: endpoint, bucket, region, access_key_id, secret_access_key, path_style
(true), s3rver_endpoint (direct, unsigned: for checks behind the plugin's back),
data_dir, fault_control (with --faults).
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SKIP = 77
START_TIMEOUT_S = 30


def s3rver_bin():
    override = os.environ.get("VESSEL_S3RVER")
    if override:
        return Path(override)
    return ROOT / "node_modules" / ".bin" / "s3rver"


def botocore_python():
    """An interpreter with Debian's python3-botocore: /usr/bin/python3 first."""
    candidates = ["/usr/bin/python3", sys.executable]
    for exe in candidates:
        if exe and Path(exe).exists():
            r = subprocess.run([exe, "-c", "import botocore.auth"], capture_output=True)
            if r.returncode == 0:
                return exe
    return None


def missing():
    """Why the S3 test server cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not s3rver_bin().exists():
        return f"s3rver is not installed ({s3rver_bin()}; run `npm ci` in {ROOT})"
    if botocore_python() is None:
        return "python3-botocore is not installed (apt-get install python3-botocore)"
    return None


def _read_line(proc, prefix, what, deadline, echo=False):
    """Reads stdout lines until one contains `prefix` and returns it; the rest of
    the output is drained in the background (echoed to stderr with `echo`) so the
    process never blocks on a full pipe."""
    found = threading.Event()
    result = {}

    def reader():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not found.is_set() and prefix in line:
                result["line"] = line
                found.set()
            elif echo:
                print(line, file=sys.stderr)

    threading.Thread(target=reader, daemon=True).start()
    found.wait(max(0.1, deadline - time.monotonic()))
    if "line" not in result:
        proc.kill()
        raise RuntimeError(f"{what} did not start (no '{prefix}' line)")
    return result["line"]


class S3TestServer:
    def __init__(self, faults=False, bucket="vessel-test", region="us-east-1", verbose=False):
        self.faults = faults
        self.bucket = bucket
        self.region = region
        self.verbose = verbose
        self.procs = []
        self.tmp = None
        self.info = None

    def _spawn(self, cmd, env=None):
        out = None if self.verbose else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        self.procs.append(proc)
        return proc

    def start(self):
        why = missing()
        if why:
            raise RuntimeError(why)
        deadline = time.monotonic() + START_TIMEOUT_S
        self.tmp = Path(tempfile.mkdtemp(prefix="vessel-s3-"))
        data = self.tmp / "data"
        data.mkdir()
        access_key = "VT" + secrets.token_hex(9).upper()
        secret = secrets.token_urlsafe(30)
        secret_file = self.tmp / "secret"
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
        try:
            # s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its
            # legacy provider: without it every listing past one page is a 500.
            node_env = dict(os.environ)
            node_env["NODE_OPTIONS"] = (node_env.get("NODE_OPTIONS", "") +
                                        " --openssl-legacy-provider").strip()
            s3rver = self._spawn([str(s3rver_bin()), "-d", str(data), "-a", "127.0.0.1",
                                  "-p", "0", "--no-vhost-buckets",
                                  "--configure-bucket", self.bucket]
                                 + ([] if self.verbose else ["--silent"]), node_env)
            line = _read_line(s3rver, "listening on", "s3rver", deadline, self.verbose)
            s3rver_port = int(line.rsplit(":", 1)[1])
            front = self._spawn([botocore_python(), str(HERE / "front.py"),
                                 "--upstream", f"127.0.0.1:{s3rver_port}", "--data-dir", str(data),
                                 "--bucket", self.bucket, "--region", self.region,
                                 "--access-key", access_key, "--secret-file", str(secret_file)]
                                + (["--verbose"] if self.verbose else []))
            front_port = int(_read_line(front, "LISTENING", "front.py", deadline).split()[1])
            endpoint_port, control = front_port, None
            if self.faults:
                proxy = self._spawn([sys.executable, str(HERE / "fault_proxy.py"),
                                     "--upstream", f"127.0.0.1:{front_port}"])
                fields = _read_line(proxy, "LISTENING", "fault_proxy.py", deadline).split()
                endpoint_port, control = int(fields[1]), f"http://127.0.0.1:{fields[2]}"
        except BaseException:
            self.stop()
            raise
        self.info = {
            "endpoint": f"http://127.0.0.1:{endpoint_port}",
            "bucket": self.bucket,
            "region": self.region,
            "access_key_id": access_key,
            "secret_access_key": secret,
            "path_style": True,
            "s3rver_endpoint": f"http://127.0.0.1:{s3rver_port}",
            "front_endpoint": f"http://127.0.0.1:{front_port}",
            "data_dir": str(data),
        }
        if control:
            self.info["fault_control"] = control
        return self

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self.procs = []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def storage_env(self):
        """Environment selecting this bucket as Vessel's storage (config by env)."""
        i = self.info
        return {
            "VESSEL_STORAGE_PLUGIN": "s3",
            "VESSEL_STORAGE_S3_ENDPOINT": i["endpoint"],
            "VESSEL_STORAGE_S3_REGION": i["region"],
            "VESSEL_STORAGE_S3_BUCKET": i["bucket"],
            "VESSEL_STORAGE_S3_ACCESS_KEY_ID": i["access_key_id"],
            "VESSEL_STORAGE_S3_SECRET_ACCESS_KEY": i["secret_access_key"],
            "VESSEL_STORAGE_S3_PATH_STYLE": "true",
        }

    def storage_toml(self):
        """The same as a config snippet."""
        i = self.info
        return (f'[storage]\nplugin = "s3"\n[storage.s3]\nendpoint = "{i["endpoint"]}"\n'
                f'region = "{i["region"]}"\nbucket = "{i["bucket"]}"\n'
                f'access_key_id = "{i["access_key_id"]}"\n'
                f'secret_access_key = "{i["secret_access_key"]}"\npath_style = true\n')


def main():
    ap = argparse.ArgumentParser(description="Start the S3 test server (s3rver + SigV4 front).")
    ap.add_argument("--faults", action="store_true", help="put the fault proxy in front")
    ap.add_argument("--bucket", default="vessel-test")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--until-stdin-eof", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="run -- CMD...: run CMD against the server")
    args = ap.parse_args()
    run = args.command[:1] == ["run"]
    cmd = [c for c in args.command[1:] if c != "--"] if run else []
    if args.command and not run:
        ap.error("the only subcommand is: run -- CMD...")
    why = missing()
    if why:
        print(f"s3 test server: skipped: {why}", file=sys.stderr)
        return SKIP
    with S3TestServer(args.faults, args.bucket, args.region, args.verbose) as server:
        if run:
            env = dict(os.environ, VESSEL_TEST_S3=json.dumps(server.info))
            proc = subprocess.Popen(cmd, env=env)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                return proc.wait()
        print(json.dumps(server.info), flush=True)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if args.until_stdin_eof:
            threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Self-test of the S3 test server (tests/s3/server.py) that the S3 plugin's tests
rely on: the SigV4-verifying front must accept what an independent client (botocore)
signs, and refuse unsigned requests, a wrong secret, a wrong region, a tampered
payload hash and expired or tampered presigned URLs; a plain HTTP client can use a
presigned PUT. Exit 77 (skip) when node, s3rver or botocore is missing.
"""

import hashlib
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))
from server import S3TestServer, missing  # noqa: E402

SKIP = 77


def send(method, url, headers=None, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    why = missing()
    try:
        from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        why = why or "botocore is not importable by this python3"
    if why:
        print(f"skipped: {why}")
        return SKIP

    failures = []

    def check(name, cond, detail=""):
        print(f"{'ok  ' if cond else 'FAIL'} {name}{(': ' + detail) if detail and not cond else ''}")
        if not cond:
            failures.append(name)

    with S3TestServer() as s3:
        i = s3.info
        base = f"{i['endpoint']}/{i['bucket']}/selftest"
        good = Credentials(i["access_key_id"], i["secret_access_key"])

        def signed(method, url, body=b"", creds=good, region=i["region"], headers=None):
            req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
            S3SigV4Auth(creds, "s3", region).add_auth(req)
            return dict(req.headers.items())

        body = b"hello from botocore"
        st, _ = send("PUT", base + "/a.txt", signed("PUT", base + "/a.txt", body), body)
        check("botocore-signed PUT accepted", st == 200, str(st))
        st, got = send("GET", base + "/a.txt", signed("GET", base + "/a.txt"))
        check("botocore-signed GET returns the body", st == 200 and got == body, f"{st} {got!r}")

        st, got = send("GET", base + "/a.txt")
        check("unsigned GET refused", st == 403 and b"AccessDenied" in got, f"{st} {got!r}")
        wrong = Credentials(i["access_key_id"], i["secret_access_key"] + "x")
        st, got = send("PUT", base + "/b.txt", signed("PUT", base + "/b.txt", body, wrong), body)
        check("wrong secret refused", st == 403 and b"SignatureDoesNotMatch" in got,
              f"{st} {got!r}")
        st, got = send("GET", base + "/a.txt", signed("GET", base + "/a.txt", region="eu-west-3"))
        check("wrong region refused", st in (400, 403), f"{st} {got!r}")
        h = signed("PUT", base + "/c.txt", body)
        st, got = send("PUT", base + "/c.txt", h, body + b"!")  # body no longer matches its hash
        check("tampered payload refused", st == 400 and b"XAmzContentSHA256Mismatch" in got,
              f"{st} {got!r}")
        h = signed("PUT", base + "/d.txt", body)
        h.pop("X-Amz-Content-SHA256", None)
        st, got = send("PUT", base + "/d.txt", h, body)
        check("missing x-amz-content-sha256 refused", st in (400, 403), f"{st} {got!r}")

        def presign(method, url, expires, headers=None):
            req = AWSRequest(method=method, url=url, headers=headers or {})
            S3SigV4QueryAuth(good, "s3", i["region"], expires=expires).add_auth(req)
            return req.url

        data = hashlib.sha256(b"x").digest() * 100
        url = presign("PUT", base + "/up.bin", 600, {"Content-Type": "audio/mpeg"})
        st, _ = send("PUT", url, {"Content-Type": "audio/mpeg"}, data)
        check("presigned PUT by a plain client accepted", st == 200, str(st))
        st, _ = send("PUT", url, {"Content-Type": "text/html"}, data)
        check("presigned PUT with another content type refused", st == 403, str(st))
        url = presign("GET", base + "/up.bin", 600)
        st, got = send("GET", url)
        check("presigned GET returns the upload", st == 200 and got == data, str(st))
        st, _ = send("GET", url.replace("up.bin", "a.txt"))
        check("presigned GET for another key refused", st == 403, str(st))
        short = presign("GET", base + "/up.bin", 1)
        time.sleep(2.1)
        st, got = send("GET", short)
        check("expired presigned GET refused", st == 403 and b"expired" in got, f"{st} {got!r}")

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""A small S3 client for tests, independent of Vessel's plugin: every request is
signed by botocore (S3SigV4Auth), so what it sees is what the bucket really holds.

    from bucket import Bucket
    b = Bucket(s3.info)                  # an S3TestServer's info (or VESSEL_TEST_S3)
    b.keys("u1/")                        # every key under the prefix, byte order
    b.get("u1/x/master.m3u8")            # bytes, or None when absent
    b.head("u1/x/master.m3u8")           # {"size", "etag", "content_type"} or None

Talks to the front (botocore-verified, no fault proxy) on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import urllib.parse
import xml.etree.ElementTree as ET

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class Bucket:
    def __init__(self, info: dict):
        self.endpoint = info.get("front_endpoint") or info["endpoint"]
        parts = urllib.parse.urlsplit(self.endpoint)
        assert parts.hostname == "127.0.0.1", self.endpoint
        self.port = parts.port
        self.name = info["bucket"]
        self.region = info["region"]
        self.creds = Credentials(info["access_key_id"], info["secret_access_key"])

    def _send(self, method: str, key: str = "", query: dict | None = None):
        path = f"/{self.name}/" + urllib.parse.quote(key, safe="/~")
        qs = urllib.parse.urlencode(sorted((query or {}).items()), quote_via=urllib.parse.quote)
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{qs}" if qs else "")
        req = AWSRequest(method=method, url=url, data=b"", headers={})
        S3SigV4Auth(self.creds, "s3", self.region).add_auth(req)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path + (f"?{qs}" if qs else ""), headers=dict(req.headers.items()))
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def keys(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix` (ListObjectsV2, all pages)."""
        out: list[str] = []
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            status, _, body = self._send("GET", "", q)
            if status != 200:
                raise RuntimeError(f"list {prefix!r}: HTTP {status} {body[:300]!r}")
            root = ET.fromstring(body)
            out += [c.findtext(f"{_NS}Key") for c in root.findall(f"{_NS}Contents")]
            if root.findtext(f"{_NS}IsTruncated") != "true":
                return out
            token = root.findtext(f"{_NS}NextContinuationToken")

    def get(self, key: str) -> bytes | None:
        status, _, body = self._send("GET", key)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"get {key!r}: HTTP {status} {body[:300]!r}")
        return body

    def head(self, key: str) -> dict | None:
        status, headers, _ = self._send("HEAD", key)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"head {key!r}: HTTP {status}")
        return {"size": int(headers.get("Content-Length", "0")), "etag": headers.get("ETag"),
                "content_type": headers.get("Content-Type")}

#!/usr/bin/python3
"""The SigV4-verifying front placed before s3rver in tests.

s3rver serves the S3 API well enough but does not check signatures at all, so
this front judges every request with an independent implementation, Debian's
python3-botocore (S3SigV4Auth for Authorization headers, S3SigV4QueryAuth for
presigned URLs), before forwarding it:

  - the access key, credential scope (date, region, service) and clock skew,
  - the signature over exactly the headers the client listed as signed,
  - x-amz-content-sha256 is present and, unless UNSIGNED-PAYLOAD, equals the
    SHA-256 of the body actually received,
  - presigned URLs: not expired, X-Amz-Expires within 7 days.

Refusals look like S3's (403 SignatureDoesNotMatch, InvalidAccessKeyId, ...).

It also fills gaps of s3rver 3.7 on the same data directory, so the plugin is
tested against S3 semantics: AbortMultipartUpload, ListMultipartUploads,
NoSuchUpload for parts/completes of unknown uploads, If-Match on GET (412
PreconditionFailed), 416 InvalidRange for a range of an empty object (s3rver
answers a 206 announcing one byte it never sends), and suffix ranges
(Range: bytes=-N, the last N bytes; s3rver serves the first N + 1). Verified requests reach
s3rver without their credentials (it would only compare the access key with its
own fixed one).

  front.py --upstream 127.0.0.1:PORT --data-dir DIR --bucket B --region R \
           --access-key AK --secret SK [--port 0]
prints "LISTENING <port>" once ready.
"""

import argparse
import base64
import calendar
import hashlib
import hmac
import http.client
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward  # noqa: E402

MAX_SKEW_S = 15 * 60
MAX_EXPIRES_S = 7 * 24 * 3600
AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
SUFFIX_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*-(\d+)\s*$")


class Refusal(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_amz_date(value):
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except (TypeError, ValueError):
        raise Refusal(403, "AccessDenied", f"invalid x-amz-date '{value}'")


class RWLock:
    """Many shared holders or one exclusive holder (writer-preferring)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.readers = 0
        self.writer = False
        self.waiting_writers = 0

    class _Held:
        def __init__(self, release):
            self.release = release

    def shared(self):
        with self.cond:
            while self.writer or self.waiting_writers:
                self.cond.wait()
            self.readers += 1

        def release():
            with self.cond:
                self.readers -= 1
                self.cond.notify_all()
        return self._Held(release)

    def exclusive(self):
        with self.cond:
            self.waiting_writers += 1
            while self.writer or self.readers:
                self.cond.wait()
            self.waiting_writers -= 1
            self.writer = True

        def release():
            with self.cond:
                self.writer = False
                self.cond.notify_all()
        return self._Held(release)


LOCK = RWLock()


class FrontHandler(forward.ForwardingHandler):
    server_version = "vessel-s3-front"
    # s3rver 3.7 sometimes stores an empty object when a PUT follows another one
    # quickly on a kept-alive connection (measured: 0 of 23 bytes): one upstream
    # connection per request avoids it.
    reuse_upstream = False
    cfg = None  # argparse namespace, set in main()

    # --- request parts -------------------------------------------------------------
    def split(self):
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        return parts.path, query

    def canonical_url(self, raw_path):
        # S3 canonicalises the decoded path; a client must send what it signed.
        path = urllib.parse.quote(urllib.parse.unquote(raw_path), safe="/~")
        return f"http://{self.headers.get('Host', '')}{path}"

    def signed_request(self, signed_names, params, body):
        headers = {}
        for name in signed_names:
            values = self.headers.get_all(name)
            if values is None:
                raise Refusal(403, "AccessDenied",
                              f"header '{name}' is listed as signed but was not sent")
            headers[name] = ",".join(values)
        path, _ = self.split()
        req = AWSRequest(method=self.command, url=self.canonical_url(path), headers=headers,
                         data=body, params=params)
        return req

    def check_scope(self, credential, amz_date):
        fields = credential.split("/")
        if len(fields) != 5:
            raise Refusal(400, "AuthorizationHeaderMalformed", f"bad credential '{credential}'")
        access_key, date, region, service, terminator = fields
        if access_key != self.cfg.access_key:
            raise Refusal(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.")
        if date != amz_date[:8] or region != self.cfg.region or service != "s3" or \
                terminator != "aws4_request":
            raise Refusal(400, "AuthorizationHeaderMalformed",
                          f"credential scope '{date}/{region}/{service}/{terminator}' is wrong "
                          f"(expected {amz_date[:8]}/{self.cfg.region}/s3/aws4_request)")

    def compare(self, auth, req, amz_date, given):
        req.context["timestamp"] = amz_date
        canonical = auth.canonical_request(req)
        string_to_sign = auth.string_to_sign(req, canonical)
        expected = auth.signature(string_to_sign, req)
        if not hmac.compare_digest(expected, given):
            if self.cfg.verbose:
                print(f"front: mismatch\n{canonical}\n--\n{string_to_sign}", file=sys.stderr)
            raise Refusal(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.")

    def verify(self, body):
        path, query = self.split()
        params = dict(query)
        creds = Credentials(self.cfg.access_key, self.cfg.secret)
        if "X-Amz-Algorithm" in params:
            return self.verify_presigned(query, params, body, creds)
        header = self.headers.get("Authorization")
        if not header:
            raise Refusal(403, "AccessDenied", "Anonymous access is not allowed.")
        m = AUTH_RE.match(header)
        if not m:
            raise Refusal(400, "InvalidArgument", "Only AWS4-HMAC-SHA256 is supported.")
        fields = {}
        for item in m.group(1).split(","):
            k, _, v = item.strip().partition("=")
            fields[k] = v
        try:
            credential, signed, given = (fields["Credential"], fields["SignedHeaders"],
                                         fields["Signature"])
        except KeyError:
            raise Refusal(400, "AuthorizationHeaderMalformed", "incomplete Authorization header")
        amz_date = self.headers.get("x-amz-date")
        if not amz_date:
            raise Refusal(403, "AccessDenied", "x-amz-date is required")
        when = parse_amz_date(amz_date)
        if abs(time.time() - when) > MAX_SKEW_S:
            raise Refusal(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is "
                          "too large.")
        self.check_scope(credential, amz_date)
        names = signed.split(";")
        if "host" not in names:
            raise Refusal(403, "AccessDenied", "host must be a signed header")
        payload = self.headers.get("x-amz-content-sha256")
        if payload is None:
            raise Refusal(400, "InvalidRequest",
                          "Missing required header for this request: x-amz-content-sha256")
        if payload != "UNSIGNED-PAYLOAD":
            if not HEX64.match(payload):
                raise Refusal(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-"
                              "PAYLOAD or a SHA-256 hex digest")
            if hashlib.sha256(body).hexdigest() != payload:
                raise Refusal(400, "XAmzContentSHA256Mismatch",
                              "The provided 'x-amz-content-sha256' header does not match what "
                              "was computed.")
        req = self.signed_request(names, query, body)
        self.compare(S3SigV4Auth(creds, "s3", self.cfg.region), req, amz_date, given)

    def verify_presigned(self, query, params, body, creds):
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            raise Refusal(400, "AuthorizationQueryParametersError", "unsupported algorithm")
        try:
            credential = params["X-Amz-Credential"]
            amz_date = params["X-Amz-Date"]
            expires = int(params["X-Amz-Expires"])
            names = params["X-Amz-SignedHeaders"].split(";")
            given = params["X-Amz-Signature"]
        except (KeyError, ValueError):
            raise Refusal(400, "AuthorizationQueryParametersError",
                          "X-Amz-Credential, -Date, -Expires, -SignedHeaders and -Signature "
                          "are required")
        if not 1 <= expires <= MAX_EXPIRES_S:
            raise Refusal(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires must be between 1 and 604800 seconds")
        when = parse_amz_date(amz_date)
        now = time.time()
        if now > when + expires:
            raise Refusal(403, "AccessDenied", "Request has expired")
        if when - now > MAX_SKEW_S:
            raise Refusal(403, "AccessDenied", "Request is not valid yet")
        self.check_scope(credential, amz_date)
        if "host" not in names:
            raise Refusal(403, "AccessDenied", "host must be a signed header")
        unsigned = [(k, v) for k, v in query if k != "X-Amz-Signature"]
        req = self.signed_request(names, unsigned, body)
        self.compare(S3SigV4QueryAuth(creds, "s3", self.cfg.region, expires), req, amz_date,
                     given)

    # --- the operations s3rver lacks ----------------------------------------------
    def uploads_dir(self):
        return Path(self.cfg.data_dir) / self.cfg.bucket / "._S3rver_uploads"

    def object_key(self, path):
        prefix = f"/{self.cfg.bucket}/"
        if not path.startswith(prefix):
            return None
        return urllib.parse.unquote(path[len(prefix):])

    def upload_of(self, upload_id, key):
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id or ""):
            return None
        d = self.uploads_dir() / upload_id
        try:
            if (d / "key").read_text() == key:
                return d
        except OSError:
            pass
        return None

    def multipart(self, body):
        path, query = self.split()
        params = dict(query)
        bucket_path = f"/{self.cfg.bucket}"
        if self.command == "GET" and path.rstrip("/") == bucket_path and "uploads" in params:
            return self.list_uploads(params)
        if self.command == "GET" and path.rstrip("/") == bucket_path and \
                params.get("list-type") == "2":
            return self.list_objects(params)
        key = self.object_key(path)
        if key is None or "uploadId" not in params:
            return None
        d = self.upload_of(params["uploadId"], key)
        if d is None:
            return self.error_answer(404, "NoSuchUpload",
                                     "The specified upload does not exist.")
        if self.command == "DELETE":
            shutil.rmtree(d, ignore_errors=True)
            return 204, {}, b""
        return None  # parts and completes of a known upload go to s3rver

    def list_uploads(self, params):
        prefix = params.get("prefix", "")
        key_marker = params.get("key-marker", "")
        id_marker = params.get("upload-id-marker", "")
        limit = max(1, min(1000, int(params.get("max-uploads", "1000") or 1000)))
        found = []
        root = self.uploads_dir()
        if root.is_dir():
            for d in root.iterdir():
                try:
                    key = (d / "key").read_text()
                    initiated = (d / "key").stat().st_mtime
                except OSError:
                    continue
                if key.startswith(prefix) and (key, d.name) > (key_marker, id_marker):
                    found.append((key, d.name, initiated))
        found.sort()
        page, truncated = found[:limit], len(found) > limit
        items = []
        for key, upload_id, initiated in page:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(initiated))
            items.append(f"<Upload><Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
                         f"<Initiated>{stamp}</Initiated></Upload>")
        tail = ""
        if truncated:
            tail = (f"<NextKeyMarker>{escape(page[-1][0])}</NextKeyMarker>"
                    f"<NextUploadIdMarker>{page[-1][1]}</NextUploadIdMarker>")
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>'
               f"<Bucket>{escape(self.cfg.bucket)}</Bucket><Prefix>{escape(prefix)}</Prefix>"
               f"<MaxUploads>{limit}</MaxUploads>"
               f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{tail}"
               + "".join(items) + "</ListMultipartUploadsResult>")
        return 200, {"Content-Type": "application/xml"}, xml.encode()

    def list_objects(self, params):
        """ListObjectsV2 from s3rver's data directory, in S3's byte order (s3rver
        walks directories, so "a-b" came after "a/b", and pages then lost keys)."""
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        try:
            limit = max(0, min(1000, int(params.get("max-keys", "1000") or 1000)))
        except ValueError:
            return self.error_answer(400, "InvalidArgument", "max-keys must be an integer")
        after = params.get("start-after", "")
        token = params.get("continuation-token")
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                return self.error_answer(400, "InvalidArgument",
                                         "The continuation token provided is incorrect")
        root = Path(self.cfg.data_dir) / self.cfg.bucket
        suffix = "._S3rver_object"
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "._S3rver_uploads"]
            rel = os.path.relpath(dirpath, root)
            for name in filenames:
                if not name.endswith(suffix):
                    continue
                key = (name if rel == "." else f"{rel}/{name}")[:-len(suffix)]
                if key.startswith(prefix) and key.encode() > after.encode():
                    found.append((key.encode(), key, os.path.join(dirpath, name)))
        found.sort()
        contents, prefixes, last = [], [], None
        for _, key, path in found:
            if len(contents) + len(prefixes) >= limit:
                break
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[:cut + len(delimiter)]
                    if not prefixes or prefixes[-1] != common:
                        prefixes.append(common)
                    last = key
                    continue
            try:
                st = os.stat(path)
                etag = Path(path + ".md5").read_text().strip()
            except OSError:
                continue
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(st.st_mtime))
            contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{stamp}"
                            f"</LastModified><ETag>&quot;{etag}&quot;</ETag><Size>{st.st_size}"
                            "</Size><StorageClass>STANDARD</StorageClass></Contents>")
            last = key
        truncated = last is not None and found and found[-1][1] != last and \
            len(contents) + len(prefixes) >= limit
        tail = ""
        if truncated:
            tail = ("<NextContinuationToken>" +
                    base64.urlsafe_b64encode(last.encode()).decode() + "</NextContinuationToken>")
        common = "".join(f"<CommonPrefixes><Prefix>{escape(c)}</Prefix></CommonPrefixes>"
                         for c in prefixes)
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
               'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               f"<Name>{escape(self.cfg.bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
               f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
               f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{tail}"
               + "".join(contents) + common + "</ListBucketResult>")
        return 200, {"Content-Type": "application/xml"}, xml.encode()

    def upstream_head(self):
        """HEAD of the requested object at the upstream: the response (body read)."""
        host, port = self.server.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            path, _ = self.split()
            conn.request("HEAD", path, headers={"Host": f"{host}:{port}"})
            resp = conn.getresponse()
            resp.read()
            return resp
        finally:
            conn.close()

    def if_match(self):
        """GET with If-Match: compare with the upstream's current ETag first."""
        wanted = self.headers.get("If-Match")
        if self.command != "GET" or not wanted:
            return None
        resp = self.upstream_head()
        etag = resp.getheader("ETag")
        if resp.status == 200 and etag is not None and wanted.strip() not in ("*", etag):
            return self.error_answer(412, "PreconditionFailed",
                                     "At least one of the pre-conditions you specified did "
                                     "not hold")
        return None

    def suffix_range(self):
        """GET with Range: bytes=-N (the last N bytes): s3rver serves bytes 0-N
        instead; ask for the explicit range of the last N bytes."""
        m = SUFFIX_RANGE_RE.match(self.headers.get("Range") or "")
        if self.command != "GET" or not m:
            return None
        resp = self.upstream_head()
        size = int(resp.getheader("Content-Length") or 0) if resp.status == 200 else None
        if size is None:
            return None  # let the upstream answer 404 / 403 as usual
        suffix = int(m.group(1))
        if suffix == 0 or size == 0:
            return self.error_answer(416, "InvalidRange", "The requested range is not satisfiable")
        del self.headers["Range"]
        self.headers["Range"] = f"bytes={max(0, size - suffix)}-{size - 1}"
        return None

    def fix_response(self, resp):
        # s3rver answers a range of an empty object with "206, Content-Range:
        # bytes 0-0/0, Content-Length: 1" and no body; S3 answers 416 InvalidRange.
        if resp.status == 206 and (resp.getheader("Content-Range") or "").endswith("/0"):
            status, headers, body = self.error_answer(416, "InvalidRange",
                                                      "The requested range is not satisfiable")
            headers["Content-Range"] = "bytes */0"
            return status, headers, body
        return None

    def error_answer(self, status, code, message):
        rid = f"front-{self.server.next_id()}"
        return status, {"Content-Type": "application/xml", "x-amz-request-id": rid}, \
            forward.error_xml(code, message, rid)

    def intercept(self, body):
        try:
            self.verify(body)
        except Refusal as r:
            self.server.refused += 1
            if self.cfg.verbose:
                print(f"front: refused {self.command} {self.path}: {r.code}: {r.message}\n"
                      f"  Authorization: {self.headers.get('Authorization')}", file=sys.stderr)
            return self.error_answer(r.status, r.code, r.message)
        answer = self.multipart(body) or self.if_match() or self.suffix_range()
        if answer is not None:
            return answer
        # s3rver removes emptied directories after a delete, racing puts into them
        # (measured: 500s, then s3rver exited): deletes run alone, writes together.
        path, query = self.split()
        deleting = self.command == "DELETE" and "uploadId" not in dict(query) or \
            self.command == "POST" and "delete" in dict(query)
        self.lock = LOCK.exclusive() if deleting else LOCK.shared()
        # Judged here; s3rver gets the request without credentials (it would only
        # check the access key against its own), as an anonymous one.
        parts = urllib.parse.urlsplit(self.path)
        kept = [p for p in parts.query.split("&")
                if p and not p.split("=", 1)[0].startswith("X-Amz-")]
        path = parts.path + ("?" + "&".join(kept) if kept else "")
        return path, ("authorization",)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="host:port of s3rver")
    ap.add_argument("--data-dir", required=True, help="s3rver's data directory")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-file", required=True, help="file holding the secret key")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    cfg = ap.parse_args()
    cfg.secret = Path(cfg.secret_file).read_text().strip()
    FrontHandler.cfg = cfg
    FrontHandler.verbose = cfg.verbose
    host, _, port = cfg.upstream.rpartition(":")
    server = forward.Server(cfg.port, FrontHandler, (host, int(port)))
    server.refused = 0
    print(f"LISTENING {forward.port_of(server)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())

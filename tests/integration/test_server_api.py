#!/usr/bin/env python3
"""`vessel serve` end to end, as an API client would use it: register, log in
(bearer token, and a second session through a cookie jar), upload a wav and an
mp3 (create → signed PUT → complete), wait until ready, fetch the whole HLS
ladder through /media/ and verify it with hls_check (ffprobe/ffmpeg), search and
page the library, fail and retry an upload, delete (also while it is being
transcoded) and check storage and database keep nothing of it, log out, then
SIGTERM while a long job runs and an upload PUT is in flight: the PUT finishes,
exit 0 within 30 s, the embedded PostgreSQL is gone; a restart on the same data
dir shows the job released (queued, the attempt not counted).

VESSEL_TEST_STORAGE=s3 runs the same checks with the server's storage in the S3
test server's bucket (tests/s3/server.py; meson test integration/test_server_api_s3):
the client PUTs the bytes to a presigned URL of the bucket, media playlists name
presigned GETs of the segments and /media/ answers a segment with a 302 to one;
what the local run reads under <data>/storage is read from the bucket (botocore,
tests/s3/bucket.py), and the request in flight at SIGTERM is an API request
(the bytes no longer pass through Vessel). Exit 77 also when node, s3rver or
botocore is missing.

One server for the whole file. Exit 0 pass, 1 fail, 77 skip. 127.0.0.1 only."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402
import server_harness as sh  # noqa: E402

DURATION_S = 8.0
UPLOAD_FIELDS = {"id", "filename", "content_type", "size", "status", "progress", "error",
                 "duration_s", "title", "artist", "album", "created_at", "updated_at", "stream_url"}
HLS_TYPE = "application/vnd.apple.mpegurl"
TS_TYPE = "video/mp2t"
STORAGE = sh.storage_from_env()
S3 = STORAGE == "s3"
NO_STORE = "private, no-store"


def bucket_url(server: sh.Server, key: str) -> str:
    """The path-style URL of `key` in the test bucket (presigned URLs start with it + "?")."""
    return f"{server.s3['endpoint']}/{server.s3['bucket']}/{key}"


def presigned_for(url: str, server: sh.Server, key: str) -> bool:
    """`url` is a SigV4 presigned URL of exactly `key` in the bucket."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return (url.startswith(bucket_url(server, key) + "?") and "X-Amz-Signature" in query
            and query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"] and "X-Amz-Expires" in query)


def s3_error_code(resp: sh.Response) -> str | None:
    """The <Code> of an S3 XML error body."""
    m = re.search(rb"<Code>([^<]*)</Code>", resp.body or b"")
    return m.group(1).decode() if m else None


def read_http_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response (headers and a Content-Length body) from `sock`."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while m and len(body) < int(m.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def main(ck: sh.Checks) -> None:
    media = sh.make_temp_dir("vessel-api-media-")
    server = None
    try:
        ck.section(f"start `vessel serve --workers 2` with {STORAGE} storage")
        server = sh.Server("api", workers=2, storage=STORAGE)
        ck.info(f"{server.base} up after {server.startup_s:.1f} s, data dir {server.data}"
                + (f", bucket {server.s3['bucket']} at {server.s3['endpoint']}" if S3 else ""))
        run_checks(ck, server, media)
    finally:
        if server:
            server.close()
        shutil.rmtree(media, ignore_errors=True)


def run_checks(ck: sh.Checks, server: sh.Server, media: Path) -> None:
    anon = server.client()
    ck.status(anon.get("/healthz"), 200, "GET /healthz")

    # ------------------------------------------------------------------ accounts
    ck.section("accounts: register, login (bearer + cookie), /me")
    ck.status(anon.get("/api/v1/me"), 401, "GET /me without credentials", "unauthenticated")
    r = sh.register(anon, "alice@example.com")
    ck.status(r, 201, "register alice@example.com")
    user = (r.json or {}).get("user") or {}
    ck.check(sh.UUID_RE.match(str(user.get("id", ""))) and user.get("email") == "alice@example.com",
             "register answers {user:{id (uuid), email}}", r.brief())
    r = sh.register(anon, "ALICE@Example.COM")
    ck.status(r, 409, "register the same email in other letter case", "email_taken")
    ck.equal(r.error.get("field"), "email", "409 email_taken names field")
    r = sh.register(anon, "not-an-email")
    ck.status(r, 400, "register an invalid email", "invalid_email")
    ck.equal(r.error.get("field"), "email", "invalid_email names field")
    r = sh.register(anon, "bob@example.com", password="123456789")
    ck.status(r, 400, "register a 9-character password", "invalid_password")
    ck.equal(r.error.get("field"), "password", "invalid_password names field")
    ck.status(sh.register(anon, "carol@example.com", password="1234567890"), 201,
              "register a 10-character password")

    wrong = sh.login(anon, "alice@example.com", "wrong password 123")
    unknown = sh.login(anon, "nobody@example.com", "wrong password 123")
    ck.status(wrong, 401, "login with a wrong password", "invalid_credentials")
    ck.status(unknown, 401, "login with an unknown email", "invalid_credentials")
    ck.check(wrong.body == unknown.body, "wrong password and unknown email answer byte-identical bodies",
             f"{wrong.body!r} vs {unknown.body!r}")

    alice = server.client()
    r = sh.login(alice, "alice@example.com")
    ck.require(r.status == 200 and isinstance(r.json, dict) and r.json.get("token"),
               "login alice (bearer) -> 200 {token,...}", r.brief())
    alice.token = r.json["token"]
    ck.check(r.json.get("user") == user, "login answers the registered user", r.brief())
    exp = r.json.get("expires_at")
    ck.check(isinstance(exp, int) and exp > time.time() + 3600, "login expires_at is a future unix time",
             repr(exp))
    cookie = r.header("Set-Cookie") or ""
    ck.check(cookie.startswith("vessel_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie,
             "login sets vessel_session; HttpOnly; SameSite=Lax", cookie)
    me = alice.get("/api/v1/me")
    ck.status(me, 200, "GET /me with the bearer token")
    ck.equal(me.json, {"id": user.get("id"), "email": "alice@example.com"}, "GET /me body")
    ck.status(server.client(token="not-a-real-token").get("/api/v1/me"), 401, "GET /me with a bogus token")

    browser = server.client(cookies=True)  # the second session: cookie jar only, no bearer
    r = sh.login(browser, "alice@example.com")
    ck.status(r, 200, "login alice again (cookie jar session)")
    jar = {c.name: c.value for c in browser.jar}
    ck.check("vessel_session" in jar and jar["vessel_session"] != alice.token,
             "the cookie jar holds a second, different session token", repr(list(jar)))
    ck.status(browser.get("/api/v1/me"), 200, "GET /me with the cookie only")

    # ------------------------------------------------------------------ uploads
    ck.section("uploads: create → PUT → complete, wav (bearer) and mp3 (cookie)")
    wav = h.make_audio(media / "sunrise.wav", DURATION_S)
    mp3 = h.make_audio(media / "drive.mp3", DURATION_S,
                       metadata={"title": "Evening Tune", "artist": "Zebra Quartet", "album": "Tests"})
    wav_bytes, mp3_bytes = wav.read_bytes(), mp3.read_bytes()

    r = sh.create_upload(alice, "Sunrise Tone.wav", "audio/wav", len(wav_bytes))
    ck.require(r.status == 201 and isinstance(r.json, dict), "POST /uploads (wav) -> 201", r.brief())
    created = r.json
    wav_id = created.get("id", "")
    up = created.get("upload") or {}
    ck.check(sh.UUID_RE.match(wav_id) and created.get("status") == "uploading",
             "create answers {id (uuid), status: uploading}", r.brief())
    url = str(up.get("url", ""))
    original_key = f"{user.get('id')}/{wav_id}/original"
    if S3:
        ck.check(up.get("method") == "PUT" and presigned_for(url, server, original_key)
                 and up.get("headers") == {"Content-Type": "audio/wav"} and up.get("expires_at"),
                 "create answers upload {method PUT, presigned URL of <user>/<id>/original in the "
                 "bucket, headers {Content-Type}, expires_at}", r.brief())
    else:
        ck.check(up.get("method") == "PUT" and url.startswith(server.base + "/")
                 and "expires=" in url and "sig=" in url and isinstance(up.get("headers"), dict)
                 and up.get("expires_at"),
                 "create answers upload {method PUT, absolute signed url, headers, expires_at}",
                 r.brief())
    g = sh.get_upload(alice, wav_id)
    ck.status(g, 200, "GET the new upload")
    ck.check(isinstance(g.json, dict) and set(g.json) == UPLOAD_FIELDS,
             "GET /uploads/{id} has exactly the documented fields", sorted((g.json or {}).keys()))
    ck.check((g.json or {}).get("status") == "uploading" and (g.json or {}).get("stream_url") is None
             and (g.json or {}).get("filename") == "Sunrise Tone.wav"
             and (g.json or {}).get("size") == len(wav_bytes),
             "a fresh upload: uploading, stream_url null, filename and size as declared", g.brief())
    ck.status(alice.post(f"/api/v1/uploads/{wav_id}/complete"), 409,
              "complete before the bytes are PUT", "content_missing")
    p = sh.put_url(created, wav_bytes)
    ck.status(p, 200, "PUT the wav to the signed URL (no credentials)")
    if S3:
        ck.check(p.header("ETag"), "PUT answer: the bucket's 200 with an ETag", p.brief())
    else:
        ck.equal(p.json, {"id": wav_id, "size": len(wav_bytes)}, "PUT answer")
    ck.check(server.read_stored(original_key) == wav_bytes,
             "storage holds exactly the PUT bytes as <user>/<id>/original")
    if S3:
        # A presigned URL is a grant until it expires, not a one-time token: the
        # bucket takes the same PUT again (complete checks the stored size).
        ck.status(sh.put_url(created, wav_bytes), 200, "PUT the same presigned URL again (S3: allowed)")
        short = sh.put_url(created, wav_bytes[:-1])
        ck.check(short.status == 403 and s3_error_code(short) == "SignatureDoesNotMatch",
                 "PUT a body of another size than declared: the bucket refuses it (size is signed)",
                 short.brief(200))
    else:
        ck.status(sh.put_url(created, wav_bytes), 409, "PUT the same URL again", "already_uploaded")
    c = alice.post(f"/api/v1/uploads/{wav_id}/complete")
    ck.status(c, 202, "complete the wav")
    ck.equal(c.json, {"id": wav_id, "status": "queued"}, "complete answer")
    ck.status(alice.post(f"/api/v1/uploads/{wav_id}/complete"), 409, "complete a second time")

    # CSRF: a cookie-authenticated write from another site's page, or with no
    # Origin at all, is refused; the same write from our own page passes.
    mp3_meta = {"filename": "night drive.mp3", "content_type": "audio/mpeg", "size": len(mp3_bytes)}
    ck.status(browser.post("/api/v1/uploads", mp3_meta, headers={"Origin": "http://evil.example"}),
              403, "cookie write from a foreign Origin", "csrf_rejected")
    noorigin = browser.request("POST", "/api/v1/uploads", json_body=mp3_meta,
                               headers={"Origin": "null"})
    ck.status(noorigin, 403, "cookie write with an opaque Origin", "csrf_rejected")
    r = sh.create_upload(browser, "night drive.mp3", "audio/mpeg", len(mp3_bytes))
    ck.require(r.status == 201, "POST /uploads (mp3) with the cookie session -> 201", r.brief())
    mp3_created = r.json
    mp3_id = mp3_created["id"]
    ck.status(sh.put_url(mp3_created, mp3_bytes), 200, "PUT the mp3")
    ck.status(browser.post(f"/api/v1/uploads/{mp3_id}/complete"), 202, "complete the mp3 (cookie session)")

    ready = {}
    for name, uid in (("wav", wav_id), ("mp3", mp3_id)):
        t0 = time.time()
        st = sh.wait_status(alice, uid, timeout=90)
        ready[name] = st
        ck.require(st.get("status") == "ready", f"{name} becomes ready within 90 s "
                   f"(took {time.time() - t0:.1f} s)", st)
        ck.check(st.get("progress") == 1.0 and st.get("error") is None
                 and abs(float(st.get("duration_s") or 0) - DURATION_S) < 0.25,
                 f"{name}: progress 1.0, error null, duration_s ≈ {DURATION_S}", st)
        ck.equal(st.get("stream_url"), f"/media/{user['id']}/{uid}/master.m3u8", f"{name} stream_url")
    ck.check(ready["mp3"].get("title") == "Evening Tune" and ready["mp3"].get("artist") == "Zebra Quartet"
             and ready["mp3"].get("album") == "Tests", "mp3 title/artist/album come from its tags",
             ready["mp3"])

    # ------------------------------------------------------------------ media
    ck.section("media: fetch master + playlists + segments through /media/, verify with hls_check")
    ladder_toml = h.ladder_path("hls-aac")
    for name, uid, src in (("wav", wav_id, wav), ("mp3", mp3_id, mp3)):
        dest = media / f"fetched-{name}"
        fetched = sh.fetch_ladder(alice, ready[name]["stream_url"], dest)
        bad = [f"{rel}: {resp.brief(120)}" for rel, resp in fetched if resp.status != 200]
        ck.check(not bad, f"{name}: all {len(fetched)} files of the ladder fetched with 200", bad)
        rels = [rel for rel, _ in fetched]
        ck.equal(sorted(rel for rel in rels if rel.endswith("playlist.m3u8")),
                 sorted(f"{rg}/playlist.m3u8" for rg in sh.RUNGS), f"{name}: media playlists in master")
        wrong_type = [(rel, resp.header("Content-Type")) for rel, resp in fetched
                      if resp.header("Content-Type") != (TS_TYPE if rel.endswith(".ts") else HLS_TYPE)]
        ck.check(not wrong_type, f"{name}: Content-Type {HLS_TYPE} for playlists, {TS_TYPE} for segments",
                 wrong_type[:5])
        if S3:
            # Vessel serves the playlists; a media playlist names presigned GETs that
            # expire, so it must not be cached; segments come from the bucket.
            bad_cache = [rel for rel, resp in fetched
                         if (rel == "master.m3u8" and not (resp.header("Cache-Control") and resp.header("ETag")))
                         or (rel.endswith("/playlist.m3u8") and resp.header("Cache-Control") != NO_STORE)
                         or (rel.endswith(".ts") and not resp.header("ETag"))]
            ck.check(not bad_cache, f"{name}: master has Cache-Control and ETag, media playlists "
                     f"Cache-Control: {NO_STORE}, segments the bucket's ETag", bad_cache[:5])
            not_presigned = []
            for rel, resp in fetched:
                if rel.endswith("/playlist.m3u8") and resp.status == 200:
                    rung = rel.split("/")[0]
                    for u in sh.playlist_uris(resp.body.decode("utf-8", "replace")):
                        seg_key = f"{user['id']}/{uid}/{rung}/{sh.absolute_uri_name(u)}"
                        if not presigned_for(u, server, seg_key):
                            not_presigned.append(u)
            ck.check(not not_presigned, f"{name}: every segment URI in the media playlists is a "
                     "presigned GET of that segment in the bucket", not_presigned[:3])
        else:
            no_cache = [rel for rel, resp in fetched if not resp.header("Cache-Control") or not resp.header("ETag")]
            ck.check(not no_cache, f"{name}: every media response has Cache-Control and ETag", no_cache[:5])
        # What was served (presigned URIs read as the file names they point at)
        # is byte for byte what the store holds.
        differ = [rel for rel, resp in fetched
                  if resp.status == 200
                  and server.read_stored(f"{user['id']}/{uid}/{rel}") != (dest / rel).read_bytes()]
        ck.check(not differ, f"{name}: served bytes equal the stored files", differ[:5])
        if not S3:
            ck.check(all(resp.body == (dest / rel).read_bytes() for rel, resp in fetched if resp.status == 200),
                     f"{name}: playlists served as stored (relative URIs)")
        fails = h.check_ladder(dest, ladder_toml, DURATION_S, source_path=src)
        ck.check(not fails, f"{name}: hls_check.check_ladder on the fetched ladder: no failures",
                 h.format_failures(fails))

    base = f"/media/{user['id']}/{wav_id}"
    seg = f"{base}/64k/segment_000.ts"
    seg_key = f"{user['id']}/{wav_id}/64k/segment_000.ts"
    if S3:
        # /media/ hands a segment to the bucket: 302 to a fresh presigned GET. The
        # Range / conditional requests below then go to the bucket, without
        # Vessel's credentials (a browser does not carry them to another origin).
        moved = alice.get(seg, follow_redirects=False)
        seg_url = moved.header("Location") or ""
        ck.check(moved.status == 302 and presigned_for(seg_url, server, seg_key)
                 and moved.header("Cache-Control") == NO_STORE,
                 f"GET a segment through /media/ -> 302 to a presigned GET of it, Cache-Control: {NO_STORE}",
                 f"{moved.brief(100)} Location={seg_url!r} Cache-Control={moved.header('Cache-Control')!r}")
        ck.status(anon.get(seg, follow_redirects=False), 401, "the segment's 302 needs credentials")
        seg_client = sh.Client(server.s3["endpoint"])

        def seg_get(headers=None):
            return seg_client.get(seg_url, headers=headers, auth=False)
    else:
        def seg_get(headers=None):
            return alice.get(seg, headers=headers)
    full = seg_get()
    ck.check(full.status == 200 and full.body == server.read_stored(seg_key),
             "GET the segment -> 200, the stored bytes", full.brief(60))
    rng = seg_get({"Range": "bytes=100-299"})
    ck.status(rng, 206, "GET a segment with Range: bytes=100-299")
    ck.equal(rng.header("Content-Range"), f"bytes 100-299/{len(full.body)}", "206 Content-Range")
    ck.check(rng.body == full.body[100:300], "206 body is exactly those bytes", len(rng.body))
    tail = seg_get({"Range": "bytes=-50"})
    ck.check(tail.status == 206 and tail.body == full.body[-50:], "Range: bytes=-50 -> 206, the last 50 bytes",
             tail.brief(60))
    for past in (f"bytes={len(full.body) + 1000}-{len(full.body) + 2000}", f"bytes={len(full.body)}-"):
        r = seg_get({"Range": past})
        if S3:
            # S3 states the size in its error body (ActualObjectSize), not in Content-Range.
            ck.check(r.status == 416 and s3_error_code(r) == "InvalidRange"
                     and f"<ActualObjectSize>{len(full.body)}</ActualObjectSize>".encode() in r.body,
                     f"Range: {past} (starts at/after the end) -> 416 InvalidRange, "
                     f"ActualObjectSize {len(full.body)}", r.brief(300))
            continue
        ck.check(r.status == 416 and r.header("Content-Range") == f"bytes */{len(full.body)}"
                 and r.error_code == "range_not_satisfiable",
                 f"Range: {past} (starts at/after the end) -> 416 range_not_satisfiable, "
                 f"Content-Range: bytes */{len(full.body)}",
                 f"{r.brief(100)} Content-Range={r.header('Content-Range')!r}")
    etag = full.header("ETag")
    nm = seg_get({"If-None-Match": etag or '"none"'})
    ck.check(nm.status == 304 and nm.body == b"", "If-None-Match with the segment's ETag -> 304, no body",
             nm.brief(60))
    m = alice.get(f"{base}/master.m3u8")
    nm = alice.get(f"{base}/master.m3u8", headers={"If-None-Match": m.header("ETag") or '"none"'})
    ck.status(nm, 304, "If-None-Match with the master's ETag")
    ck.status(browser.get(f"{base}/master.m3u8"), 200, "master via the cookie session (a browser player)")
    ck.status(alice.get(f"{base}/original"), 404, "the original is not served")
    ck.status(anon.get(f"{base}/master.m3u8"), 401, "master without credentials")

    # ------------------------------------------------------------------ library
    ck.section("library: newest first, q search (case-insensitive), keyset pages")

    def ids(resp):
        return [it.get("id") for it in (resp.json or {}).get("items", [])] if resp.status == 200 else resp.brief()

    lib = alice.get("/api/v1/uploads")
    ck.status(lib, 200, "GET /uploads")
    ck.equal(ids(lib), [mp3_id, wav_id], "library, newest first")
    ck.check(lib.json and lib.json.get("next_cursor") is None, "single page: next_cursor null", lib.brief())
    ck.check(lib.json and all(set(it) == UPLOAD_FIELDS for it in lib.json["items"]),
             "list items have the same fields as GET /uploads/{id}", lib.brief())
    for q, want, what in (("sunrise", [wav_id], "filename, lower case"),
                          ("SUNRISE%20TONE", [wav_id], "filename, upper case, with a space"),
                          ("NIGHT", [mp3_id], "filename, upper case"),
                          ("zebra", [mp3_id], "artist tag"),
                          ("eVeNiNg", [mp3_id], "title tag, mixed case"),
                          ("no-such-thing", [], "nothing")):
        ck.equal(ids(alice.get(f"/api/v1/uploads?q={q}")), want, f"q={q} ({what})")
    p1 = alice.get("/api/v1/uploads?limit=1")
    ck.equal(ids(p1), [mp3_id], "limit=1 page 1")
    cursor = (p1.json or {}).get("next_cursor")
    ck.check(isinstance(cursor, str) and cursor, "page 1 has a next_cursor", p1.brief())
    p2 = alice.get(f"/api/v1/uploads?limit=1&cursor={cursor}")
    ck.equal(ids(p2), [wav_id], "limit=1 page 2 (cursor)")
    ck.check(p2.json and p2.json.get("next_cursor") is None, "page 2 is the last: next_cursor null", p2.brief())
    q1 = alice.get("/api/v1/uploads?q=N&limit=1")
    q2 = alice.get(f"/api/v1/uploads?q=N&limit=1&cursor={(q1.json or {}).get('next_cursor')}")
    ck.equal(ids(q1) + ids(q2), [mp3_id, wav_id], "q=N (both match) paged with limit=1")
    ck.equal(ids(alice.get("/api/v1/uploads?status=ready")), [mp3_id, wav_id], "status=ready")
    ck.equal(ids(alice.get("/api/v1/uploads?status=failed")), [], "status=failed (none yet)")
    ck.status(alice.get("/api/v1/uploads?status=done"), 400, "status=done (not a status)")
    ck.status(alice.get("/api/v1/uploads?limit=0"), 400, "limit=0")
    ck.status(alice.get("/api/v1/uploads?cursor=garbage!"), 400, "cursor=garbage!")
    k1 = alice.get("/api/v1/uploads?limit=1")
    r = sh.create_upload(alice, "interloper.wav", "audio/wav", 1000)  # newer than both, between two pages
    ck.status(r, 201, "create an upload between fetching page 1 and page 2")
    k2 = alice.get(f"/api/v1/uploads?limit=1&cursor={(k1.json or {}).get('next_cursor')}")
    ck.check(ids(k2) == [wav_id] and (k2.json or {}).get("next_cursor") is None,
             "keyset paging: page 2 after an insert is still the wav, nothing repeated or shifted", k2.brief())

    # ------------------------------------------------------------------ failure and retry
    ck.section("a failing upload (ID3 header + random bytes) and retry")
    garbage = b"ID3" + os.urandom(4096)
    bad_id = sh.upload_bytes(alice, "garbage.mp3", "audio/mpeg", garbage)
    ck.info(f"garbage upload {bad_id} completed (its header sniffs as audio)")
    st = sh.wait_status(alice, bad_id, statuses=("failed", "ready"), timeout=60)
    ck.equal(st.get("status"), "failed", "the garbage upload fails")
    ck.check(st.get("error") and st.get("stream_url") is None, "failed: error set, stream_url null", st)
    jobs = server.sql(f"SELECT id, state, attempts, max_attempts FROM jobs WHERE upload_id = '{bad_id}' ORDER BY id")
    ck.check(len(jobs) == 1 and jobs[0][1] == "failed" and jobs[0][2] == "1",
             "one job, failed after 1 attempt (permanent: not retried by the queue)", jobs)
    ck.equal(ids(alice.get("/api/v1/uploads?status=failed")), [bad_id], "status=failed lists it")
    r = alice.post(f"/api/v1/uploads/{bad_id}/retry")
    ck.status(r, 202, "retry the failed upload")
    ck.equal(r.json, {"id": bad_id, "status": "queued"}, "retry answer")
    st = sh.wait_status(alice, bad_id, statuses=("failed", "ready"), timeout=60)
    ck.equal(st.get("status"), "failed", "it fails again after the retry")
    jobs2 = server.sql(f"SELECT id, state, attempts, max_attempts FROM jobs WHERE upload_id = '{bad_id}' ORDER BY id")
    ck.check(len(jobs2) == 2 and jobs2[0][0] == jobs[0][0] and jobs2[1][1] == "failed" and jobs2[1][2] == "1"
             and jobs2[1][3] == jobs[0][3],
             "retry made a new job row with a fresh attempt budget (attempts 1 of max again)", jobs2)
    attempts = server.sql("SELECT a.attempt FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                          f"WHERE j.upload_id = '{bad_id}' ORDER BY a.job_id, a.attempt")
    ck.equal([a[0] for a in attempts], ["1", "1"], "job_attempts: attempt 1 of each job")
    ck.status(alice.post(f"/api/v1/uploads/{wav_id}/retry"), 409, "retry a ready upload")
    r = sh.create_upload(alice, "pending.wav", "audio/wav", 1000)
    pending_id = (r.json or {}).get("id", "00000000-0000-0000-0000-000000000000")
    ck.status(alice.post(f"/api/v1/uploads/{pending_id}/retry"), 409, "retry an upload still uploading")

    # ------------------------------------------------------------------ delete
    ck.section("delete: storage and database keep nothing")
    wav_files = server.upload_files(user["id"], wav_id)
    ck.check("master.m3u8" in wav_files and "original" in wav_files
             and "64k/segment_000.ts" in wav_files,
             "before: the wav's original and ladder are in storage", wav_files[:8])
    wav_jobs = [j[0] for j in server.sql(f"SELECT id FROM jobs WHERE upload_id = '{wav_id}'")]
    d = alice.delete(f"/api/v1/uploads/{wav_id}")
    ck.check(d.status == 204 and d.body == b"", "DELETE the wav -> 204, no body", d.brief())
    ck.status(sh.get_upload(alice, wav_id), 404, "GET it afterwards", "not_found")
    ck.status(alice.get(f"{base}/master.m3u8"), 404, "its master.m3u8 afterwards")
    ck.check(not server.upload_exists(user["id"], wav_id),
             "D/storage/<user>/<id>/ is gone" if not S3 else "no key under <user>/<id>/ is left in the bucket",
             server.upload_files(user["id"], wav_id)[:5])
    ck.equal(server.sql_count(f"SELECT count(*) FROM uploads WHERE id = '{wav_id}'"), 0, "uploads rows")
    ck.equal(server.sql_count(f"SELECT count(*) FROM jobs WHERE upload_id = '{wav_id}'"), 0, "jobs rows")
    if wav_jobs:
        ck.equal(server.sql_count(f"SELECT count(*) FROM job_attempts WHERE job_id IN ({','.join(wav_jobs)})"),
                 0, "job_attempts rows")
    ck.status(alice.delete(f"/api/v1/uploads/{wav_id}"), 404, "DELETE it again")
    ck.equal(ids(alice.get("/api/v1/uploads?status=ready")), [mp3_id], "the library no longer lists it")
    d = alice.delete(f"/api/v1/uploads/{bad_id}")
    ck.status(d, 204, "DELETE the failed upload")
    ck.check(not server.upload_exists(user["id"], bad_id), "its original is gone from storage")

    ck.section("delete while processing (120 s wav)")
    long_wav = sh.make_tone(media / "long.wav", 120)
    long_id = sh.upload_bytes(alice, "long.wav", "audio/wav", long_wav.read_bytes())
    st = sh.wait_status(alice, long_id, statuses=("processing", "ready", "failed"), timeout=60, interval=0.05)
    ck.require(st.get("status") == "processing", "the long upload reaches processing", st)

    def long_left():
        return server.upload_exists(user["id"], long_id)

    def long_files():
        return server.upload_files(user["id"], long_id)[:8]

    # Delete once the transcode really runs: its first segment is stored (committed
    # while the rungs go on encoding) and master.m3u8 (written last) is not. With
    # S3 the worker first fetches the original; a DELETE before that only fails
    # the fetch and would test nothing of the transcode's cleanup.
    deadline = time.time() + 60
    stored = long_files()
    while time.time() < deadline and "64k/segment_000.ts" not in stored:
        time.sleep(0.05)
        stored = server.upload_files(user["id"], long_id)
    ck.require("64k/segment_000.ts" in stored and "master.m3u8" not in stored,
               "a segment of the long upload is stored while its job still runs", stored[:8])
    d = alice.delete(f"/api/v1/uploads/{long_id}")
    t_del = time.time()
    ck.status(d, 204, "DELETE while processing")
    # The DELETE empties the prefix at once, but the worker may still write segments
    # until its next heartbeat (workers.heartbeat_s = 5 s) tells it the job was
    # cancelled; it then removes what it wrote (after the commits it already
    # started). Wait for that (its log line) or 20 s.
    def worker_cancelled():
        return any(rec.get("upload_id") == long_id and "cancel" in str(rec.get("msg", ""))
                   and rec.get("job_id") is not None and "deleted" not in str(rec.get("msg", ""))
                   for rec in server.log_records())

    while time.time() - t_del < 20 and not (worker_cancelled() and not long_left()):
        time.sleep(0.2)
    settled = time.time() - t_del
    ck.check(not long_left(), f"nothing left under its prefix {settled:.1f} s after the DELETE "
             f"(worker reported its cancellation: {worker_cancelled()})", long_files())
    time.sleep(2)  # a worker that missed the cancellation would have written more by now
    ck.check(not long_left(), "still nothing under its prefix 2 s later", long_files())
    ck.equal(server.sql_count(f"SELECT count(*) FROM uploads WHERE id = '{long_id}'"), 0, "uploads rows")
    ck.equal(server.sql_count(f"SELECT count(*) FROM jobs WHERE upload_id = '{long_id}'"), 0, "jobs rows")
    ck.status(sh.get_upload(alice, long_id), 404, "GET it afterwards")

    files = server.storage_files()
    odd = [f for f in files if not sh.STORAGE_FILE_RE.match(f)]
    ck.check(not odd, "storage holds only <user>/<upload>/<layout> files (no temp leftovers)", odd[:10])

    # ------------------------------------------------------------------ logout
    ck.section("logout revokes the token")
    old_cookie = {c.name: c.value for c in browser.jar}.get("vessel_session", "")
    r = alice.post("/api/v1/auth/logout")
    ck.check(r.status == 204, "logout (bearer) -> 204", r.brief())
    ck.status(alice.get("/api/v1/me"), 401, "GET /me with the logged-out token")
    ck.status(alice.get("/api/v1/uploads"), 401, "GET /uploads with the logged-out token")
    ck.status(browser.get("/api/v1/me"), 200, "the cookie session is still valid")
    r = browser.post("/api/v1/auth/logout")
    ck.status(r, 204, "logout (cookie) -> 204")
    ck.check("Max-Age=0" in (r.header("Set-Cookie") or "") or not any(c.name == "vessel_session" for c in browser.jar),
             "logout clears the cookie", r.header("Set-Cookie"))
    ck.status(browser.get("/api/v1/me"), 401, "GET /me with the cookie jar after logout")
    stale = server.client().get("/api/v1/me", headers={"Cookie": f"vessel_session={old_cookie}"})
    ck.status(stale, 401, "the old cookie value replayed by hand (revoked, not just cleared)")

    # ------------------------------------------------------------------ shutdown
    ck.section("SIGTERM with a job running and an upload in flight")
    ck.status(anon.get("/healthz"), 200, "GET /healthz before stopping")
    log = server.log_text()
    ck.check("handler threw" not in log, "server stderr has no 'handler threw' line",
             [line for line in log.splitlines() if "handler threw" in line][:3])
    ck.check(alice.token not in log and old_cookie not in log, "no session token appears in the server log")
    if S3:
        ck.check(server.s3["secret_access_key"] not in log, "the bucket's secret key is not in the server log")
    ck.check(server.postgres_pids(), "the embedded postgres runs before the stop", server.postgres_pids())
    again = server.client()
    r = sh.login(again, "alice@example.com")
    ck.require(r.status == 200, "log in again", r.brief())
    again.token = r.json["token"]
    # A job long enough (900 s of audio, ~1 min to transcode here) to still run
    # when the workers' shutdown grace (20 s) ends: it must be released, not lost.
    flac = sh.make_tone(media / "long.flac", 900)
    busy_id = sh.upload_bytes(again, "long.flac", "audio/flac", flac.read_bytes())
    st = sh.wait_status(again, busy_id, statuses=("processing", "ready", "failed"), timeout=60)
    ck.require(st.get("status") == "processing", "the 900 s upload is processing", st)
    port = urllib.parse.urlsplit(server.base).port
    if S3:
        # The bytes go to the bucket, not through Vessel: the request in flight is
        # the API call creating the upload, half of its JSON body sent.
        inflight_id, inflight = None, None
        body = json.dumps({"filename": "inflight.wav", "content_type": "audio/wav",
                           "size": len(wav_bytes)}).encode()
        head = (f"POST /api/v1/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {again.token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        what, want = "the POST /uploads in flight when SIGTERM arrived finishes with 201", b"HTTP/1.1 201"
    else:
        r = sh.create_upload(again, "inflight.wav", "audio/wav", len(wav_bytes))
        ck.require(r.status == 201, "create the upload that will be in flight", r.brief())
        inflight_id, inflight = r.json["id"], r.json
        parts = urllib.parse.urlsplit(inflight["upload"]["url"])
        body = wav_bytes
        head = (f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\n"
                f"Content-Type: audio/wav\r\nContent-Length: {len(wav_bytes)}\r\n\r\n").encode()
        what, want = "the PUT in flight when SIGTERM arrived finishes with 200", b"HTTP/1.1 200"
    half = len(body) // 2
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(head + body[:half])
    time.sleep(0.5)
    t_term = time.time()
    server.proc.send_signal(signal.SIGTERM)
    # Send the rest only once the HTTP server is really stopping (its listening
    # socket is closed: connections are refused); before that, finishing the
    # body would race the shutdown and prove nothing.
    refused_after = None
    while time.time() - t_term < 10:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            refused_after = time.time() - t_term
            break
        time.sleep(0.02)
    ck.info("listening socket closed " + (f"{refused_after:.2f} s after SIGTERM" if refused_after is not None
                                          else "? (still accepting after 10 s)") + "; sending the rest of the body")
    answer = b""
    try:
        sock.sendall(body[half:])
        answer = read_http_response(sock)
    except OSError as e:
        answer = answer or f"({e!r})".encode()
    finally:
        sock.close()
    status_line = answer.split(b"\r\n", 1)[0]
    ck.check(status_line.startswith(want), f"{what} (in-flight requests finish)",
             answer[:200] or "connection closed without an answer")
    inflight_stored = status_line.startswith(want)
    if S3 and inflight_stored:
        try:
            inflight = json.loads(answer.partition(b"\r\n\r\n")[2])
            inflight_id = inflight["id"]
        except (ValueError, KeyError, TypeError):
            inflight = None
        ck.check(inflight and presigned_for(inflight["upload"]["url"], server,
                                            f"{user['id']}/{inflight_id}/original"),
                 "its answer is an upload with a presigned PUT of the bucket", answer[:300])
        # The client goes on without Vessel: the bucket takes the bytes while it stops.
        put = sh.put_url(inflight, wav_bytes) if inflight else None
        inflight_stored = bool(put and put.status == 200)
        ck.check(inflight_stored, "PUT its bytes to the bucket while the server stops -> 200",
                 put.brief() if put else "no upload")
    try:
        code = server.proc.wait(timeout=max(0.1, 30 - (time.time() - t_term)))
    except subprocess.TimeoutExpired:
        code = None
    secs = time.time() - t_term
    ck.check(code == 0, f"vessel serve exits 0 within 30 s after SIGTERM (took {secs:.1f} s)",
             f"exit={code}\n{server.log_tail(1500)}")
    pids = server.postgres_pids()
    deadline = time.time() + 5
    while pids and time.time() < deadline:
        time.sleep(0.2)
        pids = server.postgres_pids()
    ck.check(not pids, "no postgres process with the data dir in its command line is left", pids)
    ck.check("server stopped" in server.log_text(), "the log says 'server stopped'")

    ck.section("restart on the same data dir (no workers): what the stop left behind")
    restarted = sh.Server("api-restart", workers=0, share_data_with=server)
    try:
        ck.info(f"restarted at {restarted.base} after {restarted.startup_s:.1f} s")
        c2 = restarted.client(token=again.token)
        st = c2.get(f"/api/v1/uploads/{busy_id}").json or {}
        ck.equal(st.get("status"), "queued", "the job running at SIGTERM was released (upload queued again)")
        rows = restarted.sql(f"SELECT state FROM jobs WHERE upload_id = '{busy_id}'")
        ck.equal(rows, [["queued"]], "its job row is queued")
        ck.equal(restarted.sql_count("SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                                     f"WHERE j.upload_id = '{busy_id}'"), 0,
                 "the released attempt does not count")
        leftovers = restarted.upload_files(user["id"], busy_id)
        ck.check(leftovers == ["original"], "the released job left only its original in storage",
                 leftovers[:8])
        st = c2.get(f"/api/v1/uploads/{inflight_id}").json or {} if inflight_id else {}
        if inflight_stored:
            ck.status(c2.post(f"/api/v1/uploads/{inflight_id}/complete"), 202,
                      "the upload that was in flight is complete-able (its bytes were stored)")
        else:
            ck.info(f"in-flight upload after restart: {st}")
        code, secs = restarted.stop(timeout=30)
        ck.check(code == 0, f"the restarted server exits 0 after SIGTERM (took {secs:.1f} s)", code)
        ck.check(not restarted.postgres_pids(), "and its postgres is gone", restarted.postgres_pids())
    finally:
        restarted.close()


if __name__ == "__main__":
    if S3 and (why := sh.s3_unavailable()):
        print(f"SKIP: the S3 test server cannot run here: {why}")
        sys.exit(sh.EXIT_SKIP)
    sh.run_main("test_server_api" + ("[s3]" if S3 else ""), main)

#!/usr/bin/env python3
"""`vessel serve` under hostile or broken input: malformed JSON, wrong types,
missing and unknown fields, a JSON body over 64 KiB (413), unicode and hostile
filenames (kept verbatim for display, never used as a path), control characters
(400), a PNG declared audio/mpeg (415 at complete, never ready), a client that
disconnects mid-upload (nothing partial is kept, the URL works again),
Content-Length mismatches, bad signatures, an expired upload URL (from a second
server on the same data dir with VESSEL_SERVER_UPLOAD_URL_TTL_S=1), bad library
queries. The server still answers /healthz afterwards, never answered 5xx, and
its log has no "handler threw" line.

One server for the whole file (plus the short-lived second one). Exit 0 pass,
1 fail, 77 skip. 127.0.0.1 only."""

import http.client
import json
import shutil
import socket
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402
import server_harness as sh  # noqa: E402

MAX_UPLOAD = 5_000_000
SNAKE = "abcdefghijklmnopqrstuvwxyz_"


def main(ck: sh.Checks) -> None:
    media = sh.make_temp_dir("vessel-bad-media-")
    server = None
    try:
        ck.section(f"start `vessel serve --workers 1` with VESSEL_SERVER_MAX_UPLOAD_BYTES={MAX_UPLOAD}")
        server = sh.Server("bad", workers=1, env_extra={"VESSEL_SERVER_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
        ck.info(f"{server.base} up after {server.startup_s:.1f} s")
        run_checks(ck, server, media)
        ck.section("the server is still fine")
        ck.status(server.client().get("/healthz"), 200, "GET /healthz after all of it")
        log = server.log_text()
        ck.check("handler threw" not in log, "server stderr has no 'handler threw' line",
                 [line for line in log.splitlines() if "handler threw" in line][:3])
        ck.check(not sh.SERVER_ERRORS, "no request was answered 5xx", sh.SERVER_ERRORS[:5])
        code, secs = server.stop(timeout=30)
        ck.check(code == 0, f"SIGTERM: exit 0 within 30 s (took {secs:.1f} s)", code)
    finally:
        if server:
            server.close()
        shutil.rmtree(media, ignore_errors=True)


def is_error_shape(r: sh.Response) -> bool:
    """{"error": {"code": snake_case, "message": non-empty string, ...}}"""
    e = r.error
    code = e.get("code")
    return (isinstance(code, str) and code and all(c in SNAKE for c in code)
            and isinstance(e.get("message"), str) and e.get("message") != "")


def upload_files(server: sh.Server, user_id: str, upload_id: str) -> list[str]:
    d = server.upload_dir(user_id, upload_id)
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir()) if d.exists() else []


def run_checks(ck: sh.Checks, server: sh.Server, media: Path) -> None:
    ck.section("setup")
    u = sh.new_user(server, "mallory@example.com", ck)
    uid = u.user["id"]
    wav = sh.make_tone(media / "tone.wav", 8).read_bytes()
    mp3 = h.make_audio(media / "tone.mp3", 8.0).read_bytes()
    raw_post = lambda path, body, hdrs=None: u.request(  # noqa: E731
        "POST", path, body, headers={"Content-Type": "application/json", **(hdrs or {})})

    # ------------------------------------------------------------------ JSON bodies
    ck.section("POST /api/v1/uploads: malformed JSON, wrong types, missing and unknown fields")
    good = {"filename": "ok.wav", "content_type": "audio/wav", "size": 1000}
    malformed = [b"", b"{", b"not json", b"[]", b'"a string"', b"null", b"123", b"{}{}",
                 b'{"filename":"a.wav","content_type":"audio/wav","size":10',
                 b'{"filename":"a.wav","content_type":"audio/wav","size":10} trailing',
                 b"{'filename':'a.wav'}", b'{"filename":"\xff\xfe.wav","content_type":"audio/wav","size":10}']
    for body in malformed:
        r = raw_post("/api/v1/uploads", body)
        ck.check(r.status == 400 and is_error_shape(r), f"malformed body {body[:40]!r} -> 400 + error JSON",
                 r.brief())
    variants = []
    for field, bad_values in (("filename", [5, None, [], {}, True, ""]),
                              ("content_type", [1, None, ["audio/wav"], ""]),
                              ("size", ["10", 1.5, 1e3, True, None, [], -1, 0, 2 ** 70, -(2 ** 63)])):
        for v in bad_values:
            variants.append((f"{field}={json.dumps(v)}", {**good, field: v}))
    for field in good:
        variants.append((f"missing {field}", {k: v for k, v in good.items() if k != field}))
    variants += [("unknown field 'extra'", {**good, "extra": 1}),
                 ("unknown field 'Filename'", {**good, "Filename": "x.wav"}),
                 ("unknown field 'user_id'", {**good, "user_id": "00000000-0000-0000-0000-000000000000"}),
                 ("unknown field 'storage_key'", {**good, "storage_key": "../../etc/passwd"})]
    for what, obj in variants:
        r = u.post("/api/v1/uploads", obj)
        ck.check(r.status == 400 and is_error_shape(r), f"{what} -> 400 + error JSON", r.brief())
    ck.status(u.post("/api/v1/uploads", good), 201, "(control) the good body -> 201")

    ck.section("sizes and content types")
    ck.status(u.post("/api/v1/uploads", {**good, "size": MAX_UPLOAD + 1}), 413, "size = max + 1")
    ck.status(u.post("/api/v1/uploads", {**good, "size": MAX_UPLOAD}), 201, "size = max")
    for ct in ("image/png", "text/plain", "application/octet-stream", "video/mp4"):
        r = u.post("/api/v1/uploads", {**good, "content_type": ct})
        ck.check(r.status == 415 and is_error_shape(r), f"content_type {ct} -> 415", r.brief())

    ck.section("request bodies over 64 KiB")
    base = json.dumps(good).encode()
    exact = base[:-1] + b" " * (65536 - len(base)) + b"}"
    over = base[:-1] + b" " * (65537 - len(base)) + b"}"
    ck.status(raw_post("/api/v1/uploads", exact), 201, "a 65536-byte JSON body is accepted")
    r = raw_post("/api/v1/uploads", over)
    ck.check(r.status == 413 and is_error_shape(r), "a 65537-byte JSON body -> 413", r.brief())
    big = json.dumps({**good, "filename": "a" * 70000}).encode()
    ck.status(raw_post("/api/v1/uploads", big), 413, "a 70 KB filename in the JSON body")
    ck.status(raw_post("/api/v1/auth/register", b'{"email":"' + b"a" * 70000 + b'@x.com","password":"x"}'),
              413, "a 70 KB register body")

    def chunks():
        yield base[:-1]
        for _ in range(80):
            yield b" " * 1024
        yield b"}"
    conn_resp = chunked_post(server.base, "/api/v1/uploads", chunks(), u.token)
    ck.status(conn_resp, 413, "an 81 KB chunked JSON body (no Content-Length)")

    ck.section("auth bodies")
    for body, what in ((b"{", "malformed"), (b'{"email":5,"password":"0123456789"}', "email not a string"),
                       (b'{"email":"x@example.com"}', "missing password"),
                       (b'{"email":"x@example.com","password":"0123456789","admin":true}', "unknown field")):
        for path in ("/api/v1/auth/register", "/api/v1/auth/login"):
            r = u.request("POST", path, body, headers={"Content-Type": "application/json"}, auth=False)
            ck.check(r.status == 400 and is_error_shape(r), f"{path}: {what} -> 400", r.brief())

    # ------------------------------------------------------------------ filenames
    ck.section("hostile and unicode filenames: kept verbatim, never a path")
    names = ["../../etc/passwd", "..", "/etc/shadow", "C:\\Windows\\system32\\evil.wav", "名前 🎵.mp3",
             "a" * 255, "é" * 127 + "a", "%2e%2e%2fescape.wav", "$(touch pwned).wav",
             "<script>alert(1)</script>.mp3", "  spaced  out  ", "\u202egnp.mp3", "'; DROP TABLE uploads; --"]
    created_names = {}
    for name in names:
        r = u.post("/api/v1/uploads", {"filename": name, "content_type": "audio/wav", "size": len(wav)})
        label = repr(name) if len(name) < 40 else f"{name[:12]!r}… ({len(name.encode())} bytes)"
        if not ck.status(r, 201, f"filename {label}"):
            continue
        created_names[r.json["id"]] = (name, r.json)
        g = u.get(f"/api/v1/uploads/{r.json['id']}")
        ck.check(g.status == 200 and (g.json or {}).get("filename") == name,
                 f"GET shows filename {label} verbatim", g.brief(200))
    lib = u.get("/api/v1/uploads?limit=100")
    listed = {i["id"]: i["filename"] for i in (lib.json or {}).get("items", [])}
    ck.check(all(listed.get(i) == n for i, (n, _) in created_names.items()),
             "the library lists every hostile filename verbatim",
             {i: listed.get(i) for i, (n, _) in created_names.items() if listed.get(i) != n})
    for name, why in (("a" * 256, "256 bytes"), ("名" * 86, "258 bytes of UTF-8"), ("", "empty")):
        r = u.post("/api/v1/uploads", {"filename": name, "content_type": "audio/wav", "size": 10})
        ck.status(r, 400, f"filename of {why}")
    for ch, what in (("\n", "LF"), ("\r", "CR"), ("\t", "TAB"), ("\x00", "NUL"), ("\x1b[31m", "ESC"),
                     ("\x7f", "DEL"), ("\x01", "SOH"), ("\x1f", "US")):
        r = u.post("/api/v1/uploads", {"filename": f"evil{ch}name.wav", "content_type": "audio/wav", "size": 10})
        ck.check(r.status == 400 and is_error_shape(r), f"control character {what} in filename -> 400", r.brief())
    r = raw_post("/api/v1/uploads", b'{"filename":"\\ud800.wav","content_type":"audio/wav","size":10}')
    ck.status(r, 400, "a lone UTF-16 surrogate escape in filename")

    # Two of them all the way to ready: the name must not steer where anything is written.
    by_name = {n: (i, c) for i, (n, c) in created_names.items()}
    ready_ids = []
    for name, data, ct in (("../../etc/passwd", wav, "audio/wav"), ("名前 🎵.mp3", mp3, "audio/mpeg")):
        if name not in by_name:
            continue
        if name == "名前 🎵.mp3":  # created above as audio/wav with the wav's size: make a fitting one
            r = u.post("/api/v1/uploads", {"filename": name, "content_type": ct, "size": len(data)})
            ck.status(r, 201, f"create {name!r} as {ct}")
            upl_id, created = r.json["id"], r.json
        else:
            upl_id, created = by_name[name]
        ck.status(sh.put_url(created, data), 200, f"PUT {name!r}")
        ck.status(u.post(f"/api/v1/uploads/{upl_id}/complete"), 202, f"complete {name!r}")
        ready_ids.append((name, upl_id))
    for name, upl_id in ready_ids:
        st = sh.wait_status(u, upl_id, timeout=90)
        ck.check(st.get("status") == "ready" and st.get("filename") == name,
                 f"{name!r} becomes ready, filename still verbatim", st)
        ck.check((server.upload_dir(uid, upl_id) / "master.m3u8").is_file(),
                 f"{name!r}: its ladder is under <user>/<upload>/")
    for q, want in (("名前", "名前 🎵.mp3"), ("🎵", "名前 🎵.mp3"), ("../../ETC/PASSWD", "../../etc/passwd")):
        r = u.get("/api/v1/uploads?q=" + urllib.parse.quote(q))
        found = [i["filename"] for i in (r.json or {}).get("items", [])]
        ck.check(r.status == 200 and want in found, f"q={q!r} finds {want!r}", r.brief(200))
    files = server.storage_files()
    odd = [f for f in files if not sh.STORAGE_FILE_RE.match(f)]
    ck.check(not odd, "D/storage holds only <user>/<upload>/<layout> files", odd[:10])
    dirs = sorted(str(p.relative_to(server.storage)) for p in server.storage.rglob("*") if p.is_dir())
    odd_dirs = [d for d in dirs if not all(sh.UUID_RE.match(s) for s in d.split("/")[:2])
                or len(d.split("/")) > 3]
    ck.check(not odd_dirs, "every directory under D/storage is <user>[/<upload>[/<rung>]]", odd_dirs[:10])
    strays = [str(p) for p in server.tmp.rglob("*")
              if p.name in ("passwd", "shadow", "pwned", "evil.wav", "escape.wav") or "名前" in p.name]
    ck.check(not strays, "no file named after a filename exists anywhere under the temp dir", strays[:5])

    # ------------------------------------------------------------------ not audio
    ck.section("content that is not audio")
    for name, data in (("fake.mp3", sh.PNG_BYTES), ("notes.mp3", b"just some text, not audio\n" * 40)):
        r = u.post("/api/v1/uploads", {"filename": name, "content_type": "audio/mpeg", "size": len(data)})
        ck.require(r.status == 201, f"create {name}", r.brief())
        upl_id = r.json["id"]
        ck.status(sh.put_url(r.json, data), 200, f"PUT {name} (the PUT does not look inside)")
        c = u.post(f"/api/v1/uploads/{upl_id}/complete")
        ck.status(c, 415, f"complete {name} declared audio/mpeg", "not_audio")
        time.sleep(1.5)
        st = u.get(f"/api/v1/uploads/{upl_id}").json or {}
        ck.check(st.get("status") == "uploading" and st.get("stream_url") is None,
                 f"{name} never becomes ready (still uploading, no stream_url)", st)
        ck.equal(server.sql_count(f"SELECT count(*) FROM jobs WHERE upload_id = '{upl_id}'"), 0,
                 f"{name}: no job was queued")
        ck.status(u.post(f"/api/v1/uploads/{upl_id}/complete"), 415, f"complete {name} again: still 415")

    # ------------------------------------------------------------------ PUT problems
    ck.section("PUT: Content-Length mismatch, no length, bad signatures")
    r = u.post("/api/v1/uploads", {"filename": "cl.wav", "content_type": "audio/wav", "size": len(wav)})
    ck.require(r.status == 201, "create cl.wav", r.brief())
    cl_id, cl = r.json["id"], r.json
    short = sh.put_url(cl, wav[:1000])
    ck.check(short.status in (400, 413) and short.error_code == "size_mismatch",
             "PUT 1000 bytes with Content-Length 1000 (declared more) -> 400/413 size_mismatch", short.brief())
    long_ = sh.put_url(cl, wav + b"\0" * 10)
    ck.check(long_.status in (400, 413) and long_.error_code == "size_mismatch",
             "PUT 10 bytes more than declared -> 400/413 size_mismatch", long_.brief())
    parts = urllib.parse.urlsplit(cl["upload"]["url"])
    target = parts.path + "?" + parts.query
    lying = lying_put(server.base, target, wav, claimed=len(wav), send=len(wav) - 100)
    ck.check(lying is None or (lying.status >= 400),
             "PUT claiming the right Content-Length but sending 100 bytes less, then closing -> no success",
             lying.brief() if lying else "connection closed")
    r = chunked_put(server.base, target, [wav[:1000], wav[1000:]])
    ck.check(400 <= r.status < 500, "PUT with chunked encoding (no Content-Length) -> 4xx", r.brief())
    q = dict(urllib.parse.parse_qsl(parts.query))
    sig = q["sig"]
    tampered_sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    for what, query in (("tampered sig", f"expires={q['expires']}&sig={tampered_sig}"),
                        ("no sig", f"expires={q['expires']}"),
                        ("no expires", f"sig={sig}"),
                        ("expires moved by 1 s", f"expires={int(q['expires']) + 1}&sig={sig}"),
                        ("garbage expires", f"expires=soon&sig={sig}"),
                        ("empty query", "")):
        r = sh.raw_request(server.base, "PUT", parts.path + ("?" + query if query else ""), wav,
                           {"Content-Type": "audio/wav"})
        ck.status(r, 403, f"PUT with {what}", "invalid_signature")
    time.sleep(0.3)
    ck.equal(upload_files(server, uid, cl_id), [], "after every refused PUT: no bytes stored for the upload")
    ck.equal((u.get(f"/api/v1/uploads/{cl_id}").json or {}).get("status"), "uploading", "still uploading")
    ck.status(sh.put_url(cl, wav), 200, "then the honest PUT with the same URL succeeds")
    ck.equal(upload_files(server, uid, cl_id), ["original"], "and only 'original' is stored")

    # ------------------------------------------------------------------ disconnect mid-PUT
    ck.section("a client that disconnects mid-PUT")
    r = u.post("/api/v1/uploads", {"filename": "cut.wav", "content_type": "audio/wav", "size": len(wav)})
    ck.require(r.status == 201, "create cut.wav", r.brief())
    cut_id, cut = r.json["id"], r.json
    parts = urllib.parse.urlsplit(cut["upload"]["url"])
    target = parts.path + "?" + parts.query
    for sent in (0, len(wav) // 2, len(wav) - 1):
        mid = None
        with socket.create_connection(("127.0.0.1", parts.port), timeout=10) as s:
            s.sendall(put_head(target, parts.port, len(wav)) + wav[:sent])
            if sent:
                time.sleep(0.5)  # let the server write some of it
                mid = upload_files(server, uid, cut_id)
        ck.info(f"sent {sent} of {len(wav)} bytes and closed; files while receiving: {mid}")
        deadline = time.time() + 5
        files = upload_files(server, uid, cut_id)
        while files and time.time() < deadline:
            time.sleep(0.1)
            files = upload_files(server, uid, cut_id)
        ck.equal(files, [], f"after a disconnect at byte {sent}: no original, no temp file")
        st = u.get(f"/api/v1/uploads/{cut_id}").json or {}
        ck.equal(st.get("status"), "uploading", f"after a disconnect at byte {sent}: still uploading")
    ck.status(u.post(f"/api/v1/uploads/{cut_id}/complete"), 409, "complete after the disconnects",
              "content_missing")
    with socket.create_connection(("127.0.0.1", parts.port), timeout=20) as s:
        s.sendall(put_head(target, parts.port, len(wav)) + wav[:1000])
        time.sleep(0.3)
        ck.status(sh.put_url(cut, wav), 409, "a second PUT while the first is still receiving")
        ck.status(u.post(f"/api/v1/uploads/{cut_id}/complete"), 409,
                  "complete while the PUT is still receiving", "content_missing")
    time.sleep(0.3)

    ck.section("DELETE while the PUT is still receiving")
    r = u.post("/api/v1/uploads", {"filename": "gone.wav", "content_type": "audio/wav", "size": len(wav)})
    ck.require(r.status == 201, "create gone.wav", r.brief())
    gone_id, gone = r.json["id"], r.json
    gparts = urllib.parse.urlsplit(gone["upload"]["url"])
    with socket.create_connection(("127.0.0.1", gparts.port), timeout=20) as s:
        s.sendall(put_head(gparts.path + "?" + gparts.query, gparts.port, len(wav)) + wav[:len(wav) // 2])
        time.sleep(0.3)
        ck.status(u.delete(f"/api/v1/uploads/{gone_id}"), 204, "DELETE the upload mid-PUT")
        answer = b""
        try:
            s.sendall(wav[len(wav) // 2:])
            s.settimeout(10)
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as e:
            answer = answer or repr(e).encode()
    first_line = answer.split(b"\r\n", 1)[0][:80]
    ck.info(f"the PUT's answer: {first_line!r}")
    ck.check(not answer.startswith(b"HTTP/1.1 2"), "the PUT of a deleted upload does not succeed",
             answer[:160])
    deadline = time.time() + 5
    while time.time() < deadline and server.upload_dir(uid, gone_id).exists():
        time.sleep(0.1)
    ck.check(not server.upload_dir(uid, gone_id).exists(), "nothing of it is left in storage",
             upload_files(server, uid, gone_id))
    ck.status(u.get(f"/api/v1/uploads/{gone_id}"), 404, "GET it")

    ck.section("after the disconnects, the same URL works")
    ck.status(sh.put_url(cut, wav), 200, "a new PUT with the same URL succeeds")
    ck.equal(upload_files(server, uid, cut_id), ["original"], "exactly the original is stored")
    ck.status(u.post(f"/api/v1/uploads/{cut_id}/complete"), 202, "complete")
    st = sh.wait_status(u, cut_id, timeout=90)
    ck.equal(st.get("status"), "ready", "the re-uploaded file becomes ready")

    # ------------------------------------------------------------------ expired URL
    ck.section("an expired upload URL (second server on the same data dir, upload_url_ttl_s=1)")
    second = None
    try:
        t0 = time.time()
        second = sh.Server("bad-ttl", workers=0, env_extra={"VESSEL_SERVER_UPLOAD_URL_TTL_S": "1"},
                           share_data_with=server)
        ck.info(f"second server {second.base} up after {time.time() - t0:.1f} s")
        c2 = second.client(token=u.token)
        r = c2.post("/api/v1/uploads", {"filename": "late.wav", "content_type": "audio/wav", "size": len(wav)})
        ck.require(r.status == 201, "create an upload on the second server", r.brief())
        late_id, late = r.json["id"], r.json
        code, _ = second.stop(timeout=30)
        ck.check(code == 0, "the second server stops cleanly (exit 0)", code)
        time.sleep(2.2)
        parts = urllib.parse.urlsplit(late["upload"]["url"])
        r = sh.raw_request(server.base, "PUT", parts.path + "?" + parts.query, wav, {"Content-Type": "audio/wav"})
        ck.status(r, 403, "PUT 2 s after a 1 s URL expired (to the first server)", "url_expired")
        ck.equal(upload_files(server, uid, late_id), [], "nothing stored for the expired PUT")
        ck.status(u.get("/api/v1/uploads?limit=1"), 200,
                  "the first server still reaches the database after the second one stopped")
    finally:
        if second:
            second.close()

    # ------------------------------------------------------------------ queries and ids
    ck.section("library queries and ids")
    for qs in ("status=bogus", "status=READY", "limit=0", "limit=101", "limit=abc", "limit=-1", "limit=1.5",
               "limit=", "cursor=garbage", "cursor=AAAA", "cursor=%00", "cursor=%00garbage",
               "limit=1%00x", "status=ready%00x", "q=" + "x" * 201):
        r = u.get(f"/api/v1/uploads?{qs}")
        ck.check(r.status == 400 and is_error_shape(r), f"GET /uploads?{qs[:40]} -> 400", r.brief())
    ck.status(u.get("/api/v1/uploads?limit=100"), 200, "(control) limit=100")
    for method, path in (("GET", "/api/v1/uploads/not-a-uuid"), ("DELETE", "/api/v1/uploads/not-a-uuid"),
                         ("POST", "/api/v1/uploads/not-a-uuid/complete"),
                         ("POST", "/api/v1/uploads/not-a-uuid/retry"),
                         ("GET", "/api/v1/uploads/" + "f" * 5000),
                         ("GET", "/api/v1/uploads/00000000-0000-0000-0000-00000000000g")):
        r = u.request(method, path)
        ck.check(r.status == 404 and is_error_shape(r), f"{method} {path[:60]} -> 404", r.brief())
    for value in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b c", "Bearer " + "x" * 8000,
                  "Bearer \u00e9t\u00e9", u.token):
        r = u.request("GET", "/api/v1/me", headers={"Authorization": value.encode("utf-8").decode("latin-1")},
                      auth=False)
        ck.status(r, 401, f"Authorization: {value[:30]!r}{'…' if len(value) > 30 else ''}", "unauthenticated")
    for value in ("vessel_session=", "vessel_session=" + "y" * 4000, "vessel_session=a;vessel_session=b",
                  "other=1; vessel_session"):
        r = u.request("GET", "/api/v1/me", headers={"Cookie": value}, auth=False)
        ck.status(r, 401, f"Cookie: {value[:40]!r}", "unauthenticated")
    r = u.get("/api/v1/no/such/route")
    ck.check(r.status == 404 and is_error_shape(r), "unknown route -> 404 + error JSON", r.brief())


def put_head(target: str, port: int, length: int) -> bytes:
    return (f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def lying_put(base: str, target: str, data: bytes, claimed: int, send: int):
    """Sends `send` bytes after `Content-Length: claimed`, half-closes, reads any answer."""
    port = urllib.parse.urlsplit(base).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(put_head(target, port, claimed) + data[:send])
        s.shutdown(socket.SHUT_WR)
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    if not buf:
        return None
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return sh.Response(status, None, body)


def chunked_put(base: str, target: str, pieces) -> sh.Response:
    port = urllib.parse.urlsplit(base).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("PUT", target, body=iter(pieces), headers={"Content-Type": "audio/wav"},
                     encode_chunked=True)
        resp = conn.getresponse()
        return sh.Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def chunked_post(base: str, path: str, pieces, token: str) -> sh.Response:
    port = urllib.parse.urlsplit(base).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=pieces, encode_chunked=True,
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return sh.Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


if __name__ == "__main__":
    sh.run_main("test_server_bad_input", main)

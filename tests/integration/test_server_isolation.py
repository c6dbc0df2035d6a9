#!/usr/bin/env python3
"""`vessel serve`: one user can never see, change or stream another user's uploads.

Users A and B. A owns a ready upload, a failed one and one still uploading; B owns
a ready one and one uploading. Every cell: B gets 404 for each of A's uploads on
GET /uploads/{id}, DELETE, complete and retry, byte-identical (status + body) to
the answer for an id that never existed; 404 for every /media/ path of A's
(master, playlist, segment, original; with A's user id and with B's own in the
path); B's listing and q search never show A's uploads; no credentials → 401; A's
signed upload URL with B's upload id in the path → 403; `..`, `%2e%2e`, `%2F` (and
friends) in paths never return A's files. Afterwards A's uploads are untouched.

One server for the whole file. Exit 0 pass, 1 fail, 77 skip. 127.0.0.1 only."""

import os
import shutil
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_harness as sh  # noqa: E402

A_NAME = "alice-secret-song.wav"
B_NAME = "bob-own-song.wav"


def main(ck: sh.Checks) -> None:
    media = sh.make_temp_dir("vessel-iso-media-")
    server = None
    try:
        ck.section("start `vessel serve --workers 2`")
        server = sh.Server("iso", workers=2)
        ck.info(f"{server.base} up after {server.startup_s:.1f} s")
        run_checks(ck, server, media)
        ck.section("stop")
        ck.check("handler threw" not in server.log_text(), "server stderr has no 'handler threw' line")
        code, secs = server.stop(timeout=30)
        ck.check(code == 0, f"SIGTERM: exit 0 within 30 s (took {secs:.1f} s)", code)
    finally:
        if server:
            server.close()
        shutil.rmtree(media, ignore_errors=True)


def run_checks(ck: sh.Checks, server: sh.Server, media: Path) -> None:
    ck.section("setup: A and B, their uploads")
    a = sh.new_user(server, "a@example.com", ck)
    b = sh.new_user(server, "b@example.com", ck)
    anon = server.client()
    A, B = a.user["id"], b.user["id"]
    wav = sh.make_tone(media / "tone.wav", 8).read_bytes()  # 2 segments per rung (6 s + 2 s)

    a_ready = sh.upload_bytes(a, A_NAME, "audio/wav", wav)
    b_ready = sh.upload_bytes(b, B_NAME, "audio/wav", wav)
    a_failed = sh.upload_bytes(a, "alice-broken.mp3", "audio/mpeg", b"ID3" + os.urandom(4096))
    # Pending uploads of the same declared size: the signatures differ only by id.
    r = sh.create_upload(a, "alice-pending.wav", "audio/wav", len(wav))
    ck.require(r.status == 201, "A creates a pending upload", r.brief())
    a_pending_created = r.json
    a_pending = r.json["id"]
    r = sh.create_upload(b, "bob-pending.wav", "audio/wav", len(wav))
    ck.require(r.status == 201, "B creates a pending upload", r.brief())
    b_pending = r.json["id"]
    for who, c, uid, want in (("A", a, a_ready, "ready"), ("B", b, b_ready, "ready"),
                              ("A", a, a_failed, "failed")):
        st = sh.wait_status(c, uid, timeout=90)
        ck.require(st.get("status") == want, f"{who}'s upload {uid} is {want}", st)
    a_uploads = {"ready": a_ready, "failed": a_failed, "uploading": a_pending}
    ck.info(f"A={A} ready={a_ready} failed={a_failed} uploading={a_pending}")
    ck.info(f"B={B} ready={b_ready} uploading={b_pending}")
    a_jobs_before = server.sql_count(
        f"SELECT count(*) FROM jobs j JOIN uploads u ON u.id = j.upload_id WHERE u.user_id = '{A}'")
    a_files_before = [f for f in server.storage_files() if f.startswith(A + "/")]

    # ------------------------------------------------------------------ API cells
    ck.section("B on A's uploads: 404, byte-identical to an id that never existed")
    never = str(uuid.uuid4())
    ops = (("GET", "/api/v1/uploads/{id}"), ("DELETE", "/api/v1/uploads/{id}"),
           ("POST", "/api/v1/uploads/{id}/complete"), ("POST", "/api/v1/uploads/{id}/retry"))
    for method, pattern in ops:
        missing = b.request(method, pattern.format(id=never))
        ck.status(missing, 404, f"B {method} {pattern} with a random uuid", "not_found")
        for state, uid in a_uploads.items():
            r = b.request(method, pattern.format(id=uid))
            ck.check(r.status == 404 and (r.status, r.body) == (missing.status, missing.body),
                     f"B {method} {pattern} on A's {state} upload -> 404, same bytes as never-existed",
                     f"{r.brief()}  vs  {missing.brief()}")
    ck.status(a.get(f"/api/v1/uploads/{b_ready}"), 404, "and the other way round: A GET B's upload")

    # ------------------------------------------------------------------ media cells
    ck.section("B on A's /media/ paths")
    paths = ("master.m3u8", "64k/playlist.m3u8", "64k/segment_000.ts", "256k/segment_001.ts", "original")
    for path in paths:
        ck.status(a.get(f"/media/{A}/{a_ready}/{path}"), 404 if path == "original" else 200,
                  f"(control) A GET /media/A/a_ready/{path}")
    for path in paths:
        baseline = b.get(f"/media/{A}/{never}/{path}")
        for label, user in (("A's user id", A), ("B's own user id", B)):
            r = b.get(f"/media/{user}/{a_ready}/{path}")
            ck.check(r.status == 404 and (r.status, r.body) == (baseline.status, baseline.body),
                     f"B GET /media/<{label}>/a_ready/{path} -> 404, same bytes as a never-existing upload",
                     r.brief(120))
    for hdrs in ({"Range": "bytes=0-99"}, {"If-None-Match": "*"}):
        r = b.get(f"/media/{A}/{a_ready}/64k/segment_000.ts", headers=hdrs)
        ck.status(r, 404, f"B GET A's segment with {hdrs}")

    # ------------------------------------------------------------------ listing
    ck.section("B's library and search")
    a_ids = set(a_uploads.values())
    listing = b.get("/api/v1/uploads?limit=100")
    items = (listing.json or {}).get("items", []) if listing.status == 200 else None
    ck.check(items is not None and {i["id"] for i in items} == {b_ready, b_pending},
             "B's library lists exactly B's two uploads", listing.brief())
    for q in ("alice", "ALICE-SECRET", "secret-song", "broken", ".wav"):
        r = b.get(f"/api/v1/uploads?q={q}")
        got = {i["id"] for i in (r.json or {}).get("items", [])} if r.status == 200 else {r.brief()}
        ck.check(not (got & a_ids) and r.status == 200, f"B q={q} finds none of A's uploads", got)
    for status in ("ready", "failed", "uploading"):
        r = b.get(f"/api/v1/uploads?status={status}")
        got = {i["id"] for i in (r.json or {}).get("items", [])} if r.status == 200 else {r.brief()}
        ck.check(not (got & a_ids), f"B status={status} lists none of A's uploads", got)
    a_page = a.get("/api/v1/uploads?limit=1")
    a_cursor = (a_page.json or {}).get("next_cursor")
    if a_cursor:
        r = b.get(f"/api/v1/uploads?limit=100&cursor={a_cursor}")
        got = {i["id"] for i in (r.json or {}).get("items", [])} if r.status == 200 else set()
        ck.check(r.status in (200, 400) and not (got & a_ids),
                 "B paging with A's cursor never yields A's uploads", r.brief())
    ck.check(len((a.get(f"/api/v1/uploads?q={A_NAME}").json or {}).get("items", [])) == 1,
             "(control) A's own q search finds it")

    # ------------------------------------------------------------------ no credentials
    ck.section("no credentials -> 401")
    bogus = server.client(token="x" * 43)
    for method, path in (("GET", f"/api/v1/uploads/{a_ready}"), ("DELETE", f"/api/v1/uploads/{a_ready}"),
                         ("POST", f"/api/v1/uploads/{a_pending}/complete"),
                         ("POST", f"/api/v1/uploads/{a_failed}/retry"), ("GET", "/api/v1/uploads"),
                         ("GET", "/api/v1/me"), ("POST", "/api/v1/auth/logout"),
                         ("GET", f"/media/{A}/{a_ready}/master.m3u8"),
                         ("GET", f"/media/{A}/{a_ready}/64k/segment_000.ts")):
        ck.status(anon.request(method, path), 401, f"anonymous {method} {path}", "unauthenticated")
        ck.status(bogus.request(method, path), 401, f"bogus bearer {method} {path}")
    r = anon.post("/api/v1/uploads", {"filename": "x.wav", "content_type": "audio/wav", "size": 10})
    ck.status(r, 401, "anonymous POST /api/v1/uploads")

    # ------------------------------------------------------------------ signed URL
    ck.section("signed upload URL bound to its upload")
    url = a_pending_created["upload"]["url"]
    swapped = url.replace(f"/uploads/{a_pending}/", f"/uploads/{b_pending}/")
    ck.check(swapped != url, "built A's signed URL with B's upload id in the path")
    r = sh.put_url(a_pending_created, wav, url=swapped)
    ck.status(r, 403, "PUT A's signature onto B's upload id", "invalid_signature")
    r = sh.put_url(a_pending_created, wav, url=url.replace(f"/uploads/{a_pending}/", f"/uploads/{never}/"))
    ck.status(r, 403, "PUT A's signature onto a never-existing id", "invalid_signature")
    ck.check(not server.upload_dir(B, b_pending).exists()
             or not any(server.upload_dir(B, b_pending).rglob("*")),
             "nothing stored under B's pending upload")
    ck.status(b.post(f"/api/v1/uploads/{b_pending}/complete"), 409,
              "B's pending upload still has no content (complete)", "content_missing")

    # ------------------------------------------------------------------ traversal
    ck.section("dot-dot and encoded separators never reach A's files")
    a_master = (server.upload_dir(A, a_ready) / "master.m3u8").read_bytes()
    a_original = (server.upload_dir(A, a_ready) / "original").read_bytes()
    a_segment = (server.upload_dir(A, a_ready) / "64k" / "segment_000.ts").read_bytes()
    secrets = (a_master, a_original[:4096], a_segment[:4096])
    probes_b = [
        f"/media/{B}/{b_ready}/../../{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/%2e%2e/%2e%2e/{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/%2E%2E/%2E%2E/{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/..%2F..%2F{A}%2F{a_ready}%2Fmaster.m3u8",
        f"/media/{B}/{b_ready}/%2e%2e%2f%2e%2e%2f{A}%2f{a_ready}%2fmaster.m3u8",
        f"/media/{B}/{b_ready}/64k/..%2F..%2F..%2F{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/..%5C..%5C{A}%5C{a_ready}%5Cmaster.m3u8",
        f"/media/{B}/..%2F{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/../../{A}/{a_ready}/64k/segment_000.ts",
        f"/media/{B}/{b_ready}/%2e%2e/%2e%2e/{A}/{a_ready}/original",
        f"/media/{A}%2F{a_ready}/master.m3u8/x",
        f"/media/{B}/{b_ready}/%252e%252e/%252e%252e/{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/.%2e/.%2e/{A}/{a_ready}/master.m3u8",
        f"/media/{B}/{b_ready}/....//....//{A}/{a_ready}/master.m3u8",
        f"/api/v1/uploads/{b_ready}/../{a_ready}",
        f"/api/v1/uploads/%2e%2e/{a_ready}",
        f"/api/v1/uploads/{b_ready}%2F..%2F{a_ready}",
    ]
    probes_a = [  # A's own prefix: the original is never served, however it is spelled
        f"/media/{A}/{a_ready}/64k/../original",
        f"/media/{A}/{a_ready}/64k/%2e%2e/original",
        f"/media/{A}/{a_ready}/64k%2F..%2Foriginal",
        f"/media/{A}/{a_ready}/./original",
        f"/media/{A}/{a_ready}/%2e/original",
        f"/media/{A}/{a_ready}/64k/..%2Foriginal",
        f"/media/{A}/{a_ready}/original%00.ts",
        f"/media/{A}/{a_ready}/64k/segment_000.ts/../../original",
    ]
    for who, c, probes in (("B", b, probes_b), ("A", a, probes_a)):
        for p in probes:
            r = sh.raw_request(server.base, "GET", p,
                               headers={"Authorization": f"Bearer {c.token}"})
            leaked = any(s and s in r.body for s in secrets) or (who == "B" and b"#EXTM3U" in r.body)
            ck.check(400 <= r.status < 500 and not leaked,
                     f"{who} GET {p} -> 4xx, none of A's bytes", r.brief(100))

    # ------------------------------------------------------------------ A untouched
    ck.section("A's uploads are untouched")
    for state, uid in a_uploads.items():
        r = a.get(f"/api/v1/uploads/{uid}")
        ck.check(r.status == 200 and (r.json or {}).get("status") == state,
                 f"A's {state} upload is still {state}", r.brief())
    ck.equal(server.sql_count(
        f"SELECT count(*) FROM jobs j JOIN uploads u ON u.id = j.upload_id WHERE u.user_id = '{A}'"),
        a_jobs_before, "A's job rows (no job was created or cancelled by B)")
    ck.equal([f for f in server.storage_files() if f.startswith(A + "/")], a_files_before,
             "A's stored files")
    ck.status(a.get(f"/media/{A}/{a_ready}/master.m3u8"), 200, "A still streams its master")
    files = server.storage_files()
    odd = [f for f in files if not sh.STORAGE_FILE_RE.match(f)]
    ck.check(not odd, "storage holds only <user>/<upload>/<layout> files", odd[:10])


if __name__ == "__main__":
    sh.run_main("test_server_isolation", main)

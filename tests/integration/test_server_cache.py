#!/usr/bin/env python3
"""`vessel serve`: the read caches never serve what the database no longer says.

The server caches library pages, "this upload is yours and ready" for /media/,
and session lookups (server/src/cache.hpp). Here the library cache lives 60 s
(VESSEL_SERVER_LIBRARY_CACHE_MS), so a page that changes sooner can only have
been dropped by the change feed (LISTEN) or by the server's own write:

- a change written straight into PostgreSQL (as a worker or another server on
  another machine would: title, a new row, a status) shows in the next pages
  within a few seconds, on a page that was cached before;
- a create and a delete through the API show on the very next request;
- a segment of an upload that stops being ready is 404 within a few seconds;
- a logout through this server refuses the token on the very next request; a
  session revoked in the database (a logout through another server) is refused
  within session_cache_ms (1 s by default);
- and every log line about an upload names its request or job (log::Context).

Exit 0 pass, 1 fail, 77 skip. 127.0.0.1 only."""

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_harness as sh  # noqa: E402

FEED_DEADLINE_S = 5.0  # far below the 60 s the pages may live


def library(c: sh.Client, query: str = "limit=50") -> dict:
    r = c.get(f"/api/v1/uploads?{query}")
    if r.status != 200:
        raise sh.Abort(f"GET /api/v1/uploads?{query}: {r.brief()}")
    return {item["id"]: item for item in r.json["items"]}


def wait_for(pred, deadline_s: float) -> float | None:
    """Seconds until pred() held (polling every 20 ms), or None."""
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        if pred():
            return time.time() - t0
        time.sleep(0.02)
    return None


def main(ck: sh.Checks) -> None:
    media = sh.make_temp_dir("vessel-cache-media-")
    server = None
    try:
        ck.section("start `vessel serve` with 60 s library pages")
        server = sh.Server("cache", workers=1,
                           env_extra={"VESSEL_SERVER_LIBRARY_CACHE_MS": "60000"})
        run_checks(ck, server, media)
        ck.section("structured logs name what they are about")
        records = server.log_records()
        about_upload = [r for r in records if "upload_id" in r]
        orphans = [r for r in about_upload if "request_id" not in r and "job_id" not in r]
        ck.check(about_upload and not orphans,
                 f"each of the {len(about_upload)} lines about an upload names its request or job",
                 orphans[:3])
        job_lines = [r for r in records if "job_id" in r]
        ck.check(job_lines and all("upload_id" in r and "user_id" in r for r in job_lines),
                 f"each of the {len(job_lines)} lines about a job names its upload and user",
                 [r for r in job_lines if "upload_id" not in r or "user_id" not in r][:3])
        with_request = [r for r in records if "request_id" in r and "upload_id" in r]
        ck.check(any("user_id" in r for r in with_request),
                 "request lines carry the caller's user_id")
        ck.section("stop")
        ck.check("handler threw" not in server.log_text(), "server stderr has no 'handler threw' line")
        code, secs = server.stop(timeout=30)
        ck.check(code == 0, f"SIGTERM: exit 0 within 30 s (took {secs:.1f} s)", code)
    finally:
        if server:
            server.close()
        shutil.rmtree(media, ignore_errors=True)


def run_checks(ck: sh.Checks, server: sh.Server, media: Path) -> None:
    a = sh.new_user(server, "cache-a@example.com", ck)
    b = sh.new_user(server, "cache-b@example.com", ck)
    A = a.user["id"]
    wav = sh.make_tone(media / "tone.wav", 8).read_bytes()
    ready = sh.upload_bytes(a, "first.wav", "audio/wav", wav)
    st = sh.wait_status(a, ready, timeout=120)
    ck.require(st.get("status") == "ready", "A's upload is ready", st)

    ck.section("a change written into PostgreSQL reaches a cached page through the feed")
    for _ in range(3):  # cached now
        page = library(a)
    ck.check(page[ready]["title"] != "Renamed by SQL", "the page shows the probed title first")
    server.sql(f"UPDATE uploads SET title = 'Renamed by SQL' WHERE id = '{ready}'")
    took = wait_for(lambda: library(a)[ready]["title"] == "Renamed by SQL", FEED_DEADLINE_S)
    ck.check(took is not None, f"the new title is listed within {FEED_DEADLINE_S:.0f} s "
             f"(took {took if took is None else round(took, 3)} s; pages live 60 s)")
    q_page = library(a, "q=renamed")
    ck.check(ready in q_page, "and a search for it finds it")

    ck.section("a row inserted by another server shows up")
    library(a)
    server.sql(
        "INSERT INTO uploads (id, user_id, storage_key, filename, content_type, size_bytes) "
        f"VALUES ('00000000-0000-4000-8000-000000000001', '{A}', "
        f"'{A}/00000000-0000-4000-8000-000000000001/original', 'elsewhere.wav', 'audio/wav', 10)")
    took = wait_for(lambda: "00000000-0000-4000-8000-000000000001" in library(a), FEED_DEADLINE_S)
    ck.check(took is not None, f"listed within {FEED_DEADLINE_S:.0f} s "
             f"(took {took if took is None else round(took, 3)} s)")

    ck.section("this server's own writes show on the very next request")
    library(a)
    r = sh.create_upload(a, "new-one.wav", "audio/wav", len(wav))
    ck.require(r.status == 201, "create", r.brief())
    created = r.json["id"]
    ck.check(created in library(a), "a created upload is on the next page at once")
    ck.status(a.delete(f"/api/v1/uploads/{created}"), 204, "delete it")
    ck.check(created not in library(a), "a deleted upload is gone from the next page at once")
    ck.check(not library(b), "B's library stays empty throughout (pages are per user)")

    ck.section("/media/ of an upload that stops being ready")
    seg = f"/media/{A}/{ready}/64k/segment_000.ts"
    for _ in range(3):
        r = a.get(seg)
    ck.status(r, 200, "A's segment is served (and remembered as ready)")
    ck.status(b.get(seg), 404, "never to B")
    server.sql(f"UPDATE uploads SET status = 'failed', error = 'set by SQL' WHERE id = '{ready}'")
    took = wait_for(lambda: a.get(seg).status == 404, FEED_DEADLINE_S)
    ck.check(took is not None, f"404 within {FEED_DEADLINE_S:.0f} s of the status change "
             f"(took {took if took is None else round(took, 3)} s)")
    ck.check(library(a)[ready]["status"] == "failed", "and the page says failed")

    ck.section("sessions")
    second = server.client()
    r = sh.login(second, "cache-a@example.com")
    ck.require(r.status == 200, "a second session for A", r.brief())
    second.token = r.json["token"]
    for _ in range(3):
        ck.status(second.get("/api/v1/me"), 200, "the session works (and is cached)")
    ck.status(second.post("/api/v1/auth/logout"), 204, "logout through this server")
    ck.status(second.get("/api/v1/me"), 401, "the token is refused on the very next request")
    third = server.client()
    r = sh.login(third, "cache-a@example.com")
    ck.require(r.status == 200, "a third session for A", r.brief())
    third.token = r.json["token"]
    for _ in range(3):
        ck.status(third.get("/api/v1/me"), 200, "the third session works (and is cached)")
    server.sql(f"UPDATE sessions SET revoked_at = now() WHERE revoked_at IS NULL "
               f"AND user_id = '{A}' AND created_at = (SELECT max(created_at) FROM sessions "
               f"WHERE user_id = '{A}')")
    took = wait_for(lambda: third.get("/api/v1/me").status == 401, 2.5)
    ck.check(took is not None, "revoked in the database (another server's logout): refused within "
             f"session_cache_ms = 1 s (took {took if took is None else round(took, 3)} s)")
    ck.status(a.get("/api/v1/me"), 200, "A's first session is untouched")


if __name__ == "__main__":
    sh.run_main("test_server_cache", main)

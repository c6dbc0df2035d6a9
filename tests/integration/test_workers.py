#!/usr/bin/env python3
"""Durable jobs end to end with real processes and a real PostgreSQL (the
embedded cluster): several `vessel worker` processes share one queue; a worker
killed with SIGKILL loses its lease and the job still ends ready with nothing
partial left; SIGTERM stops a worker cleanly; `vessel cleanup` removes failed
uploads' files and rows (dry run changes nothing)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402


class Cluster:
    """A data dir whose embedded PostgreSQL is owned by a `--workers 0` process
    (the role `vessel serve` plays in production)."""

    def __init__(self, env_extra=None):
        self.tmp = tempfile.mkdtemp(prefix="vessel-workers-")
        os.chmod(self.tmp, 0o755)  # the cluster runs as the unprivileged `vessel` user
        self.data = Path(self.tmp) / "data"
        self.env = dict(os.environ, **(env_extra or {}))
        for k in list(self.env):
            if k.startswith("VESSEL_") and k not in (env_extra or {}) and not k.startswith("VESSEL_TEST"):
                if k != "VESSEL_BIN":
                    del self.env[k]
        self.procs = []
        self.owner = self.spawn_worker(0)
        deadline = time.time() + 60
        while time.time() < deadline:
            r = self.vessel(["status", "00000000-0000-0000-0000-000000000000"], check=False)
            if r.returncode == 65:
                return
            time.sleep(0.3)
        raise AssertionError("embedded PostgreSQL did not come up: " + r.stderr)

    def vessel(self, args, check=True, timeout=120):
        r = subprocess.run([h.vessel_bin(), *args, "--data-dir", str(self.data)], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"vessel {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def spawn_worker(self, n, env_extra=None):
        env = dict(self.env, **(env_extra or {}))
        log = open(Path(self.tmp) / f"worker-{len(self.procs)}.log", "w")
        p = subprocess.Popen([h.vessel_bin(), "worker", "--workers", str(n), "--data-dir", str(self.data)],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def submit(self, path, pipeline="hls-aac-lite"):
        r = self.vessel(["submit", str(path), "--pipeline", pipeline, "--user", "t@example.com"])
        return json.loads(r.stdout)

    def status(self, upload_id):
        return json.loads(self.vessel(["status", upload_id]).stdout)

    def sql(self, query):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-h", str(self.data / "run"), "-U", "vessel",
                            "-d", "vessel", "-c", query], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr}")
        return [line.split("|") for line in r.stdout.strip().splitlines() if line]

    def wait_all(self, ids, states=("ready",), timeout=300):
        deadline = time.time() + timeout
        last = {}
        while time.time() < deadline:
            last = {i: self.status(i)["status"] for i in ids}
            if all(s in states for s in last.values()):
                return last
            time.sleep(0.5)
        raise AssertionError(f"not all {states} after {timeout}s: {last}")

    def close(self):
        for p in self.procs[1:]:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.owner.send_signal(signal.SIGTERM)  # stops the embedded cluster
        try:
            self.owner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.owner.kill()
        subprocess.run(["rm", "-rf", self.tmp])


def temp_files(root: Path):
    return [p for p in root.rglob("*") if ".tmp." in p.name]


class Workers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.media = Path(tempfile.mkdtemp(prefix="vessel-media-"))
        cls.short = cls.media / "short.wav"
        h.make_audio(cls.short, 6.0)
        cls.long = cls.media / "long.wav"
        h.make_audio(cls.long, 240.0)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", str(cls.media)])

    def test_three_workers_thirty_jobs_each_exactly_once(self):
        c = Cluster()
        try:
            ids = [c.submit(self.short)["upload_id"] for _ in range(30)]
            for _ in range(3):
                c.spawn_worker(1)
            c.wait_all(ids, timeout=400)
            rows = c.sql("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
            self.assertEqual(rows[0][0], "30")
            dup = c.sql("SELECT job_id FROM job_attempts GROUP BY job_id HAVING count(*) > 1")
            self.assertEqual(dup, [], "a job ran more than once")
            workers = c.sql("SELECT count(DISTINCT split_part(worker, '/', 1)) FROM job_attempts")
            self.assertGreaterEqual(int(workers[0][0]), 2, "jobs were not shared between processes")
            for i in ids:
                st = c.status(i)
                prefix = c.data / "storage" / st["user_id"] / i
                self.assertTrue((prefix / "master.m3u8").is_file())
                self.assertEqual(st["progress"], 1.0)
            self.assertEqual(temp_files(c.data / "storage"), [])
        finally:
            c.close()

    def test_killed_worker_loses_lease_and_job_completes(self):
        fast = {"VESSEL_WORKERS_LEASE_S": "3", "VESSEL_WORKERS_HEARTBEAT_S": "1"}
        c = Cluster(fast)
        try:
            up = c.submit(self.long, pipeline="hls-aac")["upload_id"]
            victim = c.spawn_worker(1)
            deadline = time.time() + 120
            while time.time() < deadline:
                st = c.status(up)
                if st["status"] == "processing" and st["progress"] >= 0.15:
                    break
                time.sleep(0.2)
            else:
                self.fail(f"never got going: {st}")
            victim.kill()  # SIGKILL mid-transcode
            victim.wait()
            self.assertEqual(c.status(up)["status"], "processing")
            c.spawn_worker(1)
            c.wait_all([up], timeout=300)
            attempts = c.sql(f"SELECT attempt, outcome FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                             f"WHERE j.upload_id = '{up}' ORDER BY attempt")
            self.assertEqual([a[0] for a in attempts], ["1", "2"], attempts)
            self.assertEqual(attempts[-1][1], "succeeded")
            st = c.status(up)
            out = c.data / "storage" / st["user_id"] / up
            self.assertEqual(temp_files(c.data / "storage"), [], "partial files left")
            fails = h.check_ladder(out, h.ladder_path("hls-aac"), 240.0, decode=False)
            # The original sits beside the ladder in storage.
            fails = [f for f in fails if "original" not in f]
            self.assertEqual(fails, [], h.format_failures(fails))
        finally:
            c.close()

    def test_sigterm_stops_worker_and_releases_its_job(self):
        c = Cluster({"VESSEL_WORKERS_SHUTDOWN_GRACE_S": "1", "VESSEL_WORKERS_HEARTBEAT_S": "1"})
        try:
            up = c.submit(self.long, pipeline="hls-aac")["upload_id"]
            w = c.spawn_worker(1)
            deadline = time.time() + 120
            while time.time() < deadline and c.status(up)["status"] != "processing":
                time.sleep(0.2)
            t0 = time.time()
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=30)
            self.assertEqual(w.returncode, 0)
            self.assertLess(time.time() - t0, 15)
            st = c.status(up)
            self.assertEqual(st["status"], "queued", "a stopped worker must give its job back")
            attempts = c.sql(f"SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                             f"WHERE j.upload_id = '{up}'")
            self.assertEqual(attempts[0][0], "0", "a released attempt does not count")
        finally:
            c.close()

    def test_permanent_failure_and_cleanup(self):
        c = Cluster()
        try:
            bad = self.media / "not-audio.mp3"
            bad.write_text("this is not audio\n" * 100)
            bad_id = c.submit(bad)["upload_id"]
            good_id = c.submit(self.short)["upload_id"]
            c.spawn_worker(1)
            c.wait_all([good_id], timeout=120)
            st = c.wait_all([bad_id], states=("failed",), timeout=120)
            bad_st = c.status(bad_id)
            self.assertIn("not", bad_st["error"])
            attempts = c.sql(f"SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                             f"WHERE j.upload_id = '{bad_id}'")
            self.assertEqual(attempts[0][0], "1", "a permanent failure must not be retried")
            bad_dir = c.data / "storage" / bad_st["user_id"] / bad_id
            self.assertTrue((bad_dir / "original").is_file())
            dry = json.loads(c.vessel(["cleanup", "--dry-run"]).stdout)
            self.assertEqual((dry["found"], dry["deleted_rows"], dry["dry_run"]), (1, 0, True))
            self.assertTrue((bad_dir / "original").is_file(), "dry run deleted a file")
            real = json.loads(c.vessel(["cleanup"]).stdout)
            self.assertEqual((real["found"], real["deleted_rows"], real["errors"]), (1, 1, 0))
            self.assertGreaterEqual(real["deleted_objects"], 1)
            self.assertFalse(bad_dir.exists())
            self.assertEqual(c.vessel(["status", bad_id], check=False).returncode, 65)
            self.assertEqual(c.status(good_id)["status"], "ready", "cleanup touched a healthy upload")
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

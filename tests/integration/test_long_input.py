#!/usr/bin/env python3
"""A 2-hour input is not bad input: it transcodes, and peak memory does not grow
with the input's length (2 h vs 10 min, same ladder, peak RSS via wait4).

Uses a one-rung test ladder (mono 32 kbit/s, 6 s segments) so the test stays a
couple of minutes on 2 cores; the pipeline code is the same for every ladder."""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402

LADDER = """name = "long-test"
container = "mpegts"
segment_duration_s = 6.0
[[rungs]]
name = "32k"
codec = "aac"
bitrate_kbps = 32
sample_rate_hz = 22050
channels = 1
"""


def make_mp3(path: Path, seconds: int):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=330:sample_rate=22050:duration={seconds}", "-ac", "1",
                    "-c:a", "libmp3lame", "-b:a", "32k", str(path)], check=True, timeout=600)


def transcode_peak_rss_mb(src: Path, out: Path, pipelines: Path) -> float:
    env = dict(os.environ, VESSEL_TRANSCODE_PIPELINES_PATH=str(pipelines))
    proc = subprocess.Popen([h.vessel_bin(), "transcode", "--pipeline", "long-test", str(src), str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, rusage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"vessel failed on {src.name}: {stderr}")
    return rusage.ru_maxrss / 1024


class LongInput(unittest.TestCase):
    def test_two_hours_in_flat_memory(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            pipelines = tmp / "pipelines"
            pipelines.mkdir()
            (pipelines / "long-test.toml").write_text(LADDER)
            short, long_ = tmp / "short.mp3", tmp / "long.mp3"
            make_mp3(short, 600)
            make_mp3(long_, 7200)
            rss_short = transcode_peak_rss_mb(short, tmp / "out-short", pipelines)
            rss_long = transcode_peak_rss_mb(long_, tmp / "out-long", pipelines)
            print(f"peak RSS: 10 min {rss_short:.1f} MB, 2 h {rss_long:.1f} MB")
            playlist = (tmp / "out-long" / "32k" / "playlist.m3u8").read_text()
            total = sum(float(l.split(":")[1].rstrip(",")) for l in playlist.splitlines()
                        if l.startswith("#EXTINF:"))
            self.assertAlmostEqual(total, 7200.0, delta=0.2)
            self.assertEqual(playlist.count("#EXTINF:"), 1200)
            # 12x the input may cost a few MB of bookkeeping (segment records), not 12x.
            self.assertLess(rss_long, rss_short + 16,
                            f"memory grows with input length: {rss_short:.1f} → {rss_long:.1f} MB")


if __name__ == "__main__":
    unittest.main(verbosity=2)

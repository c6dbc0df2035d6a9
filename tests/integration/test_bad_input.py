#!/usr/bin/env python3
"""Bad inputs, bad configs, unwritable outputs and usage errors: right exit code, one
'vessel: error: ' line on stderr, no crash, no hang, no OUTDIR and no temp litter."""

import shutil
import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402
from hls_check import cached_input  # noqa: E402

USAGE, DATAERR, SOFTWARE, CANTCREAT, TEMPFAIL, CONFIG = 64, 65, 70, 73, 75, 78
TIMEOUT_S = 60


def setUpModule():
    h.require_vessel()


class BadInputCase(h.VesselCase):
    def setUp(self):
        self.work = self.tmpdir()          # where OUTDIR would go
        self.inputs = self.tmpdir()        # bad input files live here
        self.out = self.work / "out"

    def assertFails(self, args, code, *mentions, env=None, outdir_existed=False):
        """Run vessel and check every failure-path rule."""
        before = h.dir_listing(self.work)
        out_before = h.dir_listing(self.out) if outdir_existed else None
        res = self.vessel(args, env=env, cwd=self.work, timeout=TIMEOUT_S)
        self.assertErrorLine(res, code, *mentions)
        if outdir_existed:
            self.assertEqual(h.dir_listing(self.out), out_before, "pre-existing OUTDIR was changed")
        else:
            self.assertFalse(self.out.exists(), "OUTDIR was created on failure")
        self.assertEqual(h.dir_listing(self.work), before, "litter left in OUTDIR's parent")
        return res

    def either_ok_or_dataerr(self, src, real_duration_s):
        """Damaged-but-partly-usable input: exit 0 with a valid ladder of what is really
        there, or exit 65 cleanly. Never a crash, a hang or a half-made OUTDIR."""
        before = h.dir_listing(self.work)
        res = self.vessel(["transcode", src, self.out], cwd=self.work, timeout=TIMEOUT_S)
        if res.returncode == 0:
            self.assertEqual(h.dir_listing(self.work), sorted(before + ["out"]),
                             "litter left beside OUTDIR")
            self.assertLadder(self.out, "hls-aac", real_duration_s, duration_tol_s=0.15)
        else:
            self.assertErrorLine(res, DATAERR)
            self.assertFalse(self.out.exists(), "OUTDIR was created on failure")
            self.assertEqual(h.dir_listing(self.work), before, "litter left in OUTDIR's parent")

    # ---------------------------------------------------------------- inputs (65)
    def test_missing_file(self):
        self.assertFails(["transcode", self.inputs / "nope.mp3", self.out], DATAERR, "nope.mp3")

    def test_probe_missing_file(self):
        self.assertFails(["probe", self.inputs / "nope.mp3"], DATAERR, "nope.mp3")

    def test_zero_byte_mp3(self):
        p = self.inputs / "empty.mp3"
        p.write_bytes(b"")
        self.assertFails(["transcode", p, self.out], DATAERR)

    def test_text_named_mp3(self):
        p = self.inputs / "notes.mp3"
        p.write_text("This is not audio.\n" * 200)
        self.assertFails(["transcode", p, self.out], DATAERR)

    def test_png_named_mp3(self):
        p = self.inputs / "picture.mp3"
        r = h.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                   "color=c=red:s=64x64", "-frames:v", "1", "-f", "image2", "-c:v", "png", p])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(p.read_bytes()[:4], b"\x89PNG")
        self.assertFails(["transcode", p, self.out], DATAERR)

    def test_truncated_mp3_1k(self):
        p = self.inputs / "trunc1k.mp3"
        p.write_bytes(cached_input("in.mp3", 20.0).read_bytes()[:1024])
        self.assertFails(["transcode", p, self.out], DATAERR)

    def test_truncated_mp3_half(self):
        data = cached_input("in.mp3", 20.0).read_bytes()
        p = self.inputs / "trunc50.mp3"
        p.write_bytes(data[: len(data) // 2])
        real = h.decoded_duration(p)
        self.assertGreater(real, 5.0)
        self.either_ok_or_dataerr(p, real)

    def test_wav_with_lying_header(self):
        p = self.inputs / "liar.wav"
        shutil.copy(cached_input("in.wav", 12.0), p)
        b = bytearray(p.read_bytes())
        self.assertEqual(b[:4], b"RIFF")
        b[4:8] = struct.pack("<I", 0x7FFFFF00)
        i = b.find(b"data", 12)
        self.assertGreater(i, 0)
        b[i + 4:i + 8] = struct.pack("<I", 0x7FFFF000)
        p.write_bytes(bytes(b))
        self.either_ok_or_dataerr(p, 12.0)

    # ---------------------------------------------------------------- pipelines / config (64/78)
    def test_unknown_pipeline(self):
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", "--pipeline", "no-such-ladder", src, self.out], USAGE,
                         "no-such-ladder")

    def test_config_unknown_key(self):
        cfg = self.inputs / "vessel.toml"
        cfg.write_text('[transcode]\nfrobnicate_level = 3\n')
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", "--config", cfg, src, self.out], CONFIG, "frobnicate_level")

    def test_config_syntax_error(self):
        cfg = self.inputs / "vessel.toml"
        cfg.write_text('[transcode\npipeline = "hls-aac\n')
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", "--config", cfg, src, self.out], CONFIG)

    # ---------------------------------------------------------------- output (73)
    def test_outdir_parent_is_regular_file(self):
        blocker = self.work / "blocker"
        blocker.write_text("x")
        src = cached_input("in.mp3", 12.0)
        before = h.dir_listing(self.work)
        res = self.vessel(["transcode", src, blocker / "out"], cwd=self.work, timeout=TIMEOUT_S)
        self.assertErrorLine(res, CANTCREAT)
        self.assertEqual(blocker.read_text(), "x")
        self.assertEqual(h.dir_listing(self.work), before, "litter left in the work dir")

    def test_outdir_not_empty(self):
        self.out.mkdir()
        (self.out / "keep.txt").write_text("precious")
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", src, self.out], CANTCREAT, outdir_existed=True)
        self.assertEqual((self.out / "keep.txt").read_text(), "precious")

    # ---------------------------------------------------------------- usage (64)
    def test_no_arguments(self):
        self.assertFails([], USAGE)

    def test_unknown_subcommand(self):
        self.assertFails(["frobnicate", "x"], USAGE, "frobnicate")

    def test_unknown_flag(self):
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", "--frobnicate", src, self.out], USAGE, "--frobnicate")

    def test_transcode_missing_outdir_argument(self):
        src = cached_input("in.mp3", 12.0)
        self.assertFails(["transcode", src], USAGE)


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""Self-test of hls_check.check_ladder: it must pass a good ffmpeg-made ladder and fail
each kind of broken one. Does not need the vessel binary."""

import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402

SRC_S = 20.0  # 3 full 6 s segments + a 2 s tail (excluded from the peak rate)


def setUpModule():
    if not h.have_tools():
        raise unittest.SkipTest("ffmpeg/ffprobe not installed")
    global WORK, GOOD, LADDER, INPUT
    WORK = tempfile.TemporaryDirectory(prefix="hls-selftest-")
    LADDER = h.ladder_path("hls-aac")
    INPUT = h.make_audio(Path(WORK.name) / "in.mp3", SRC_S)
    GOOD = h.ffmpeg_ladder(INPUT, Path(WORK.name) / "good", LADDER)


def tearDownModule():
    WORK.cleanup()


class CheckerSelfTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="hls-mut-")
        self.tmp = Path(self._tmp.name)
        self.out = self.tmp / "out"
        shutil.copytree(GOOD, self.out)

    def tearDown(self):
        self._tmp.cleanup()

    # -- helpers
    def edit(self, rel, fn):
        p = self.out / rel
        p.write_text(fn(p.read_text()))

    def ladder_variant(self, fn):
        """A copy of the ladder TOML with text substitutions applied."""
        p = self.tmp / "ladder.toml"
        p.write_text(fn(Path(LADDER).read_text()))
        return p

    def check(self, ladder=None, src=SRC_S, decode=False):
        return h.check_ladder(self.out, ladder or LADDER, src, decode=decode)

    def assertFailsWith(self, fails, pattern):
        self.assertTrue(fails, "checker accepted a broken ladder")
        self.assertTrue(any(re.search(pattern, f) for f in fails),
                        f"no failure matches {pattern!r}; got:\n  " + "\n  ".join(fails))

    # -- good output passes
    def test_good_ladder_passes(self):
        fails = h.check_ladder(self.out, LADDER, SRC_S, source_path=INPUT)
        self.assertEqual(fails, [], h.format_failures(fails))

    def test_level_mismatch_with_source(self):
        quiet = h.make_audio(self.tmp / "quiet.wav", SRC_S, gain_db=-6)
        fails = h.check_ladder(self.out, LADDER, SRC_S, source_path=quiet)
        self.assertFailsWith(fails, r"\[64k\] decoded RMS level .* vs source")

    def test_good_single_segment_and_lite_ladder_pass(self):
        src = h.make_audio(self.tmp / "short.wav", 3.0)
        lite = h.ladder_path("hls-aac-lite")
        out = h.ffmpeg_ladder(src, self.tmp / "short", lite)
        fails = h.check_ladder(out, lite, 3.0)
        self.assertEqual(fails, [], h.format_failures(fails))
        self.assertEqual(len(list((out / "48k").glob("*.ts"))), 1)

    # -- media playlist syntax
    def test_missing_endlist(self):
        self.edit("64k/playlist.m3u8", lambda t: t.replace("#EXT-X-ENDLIST\n", ""))
        self.assertFailsWith(self.check(), r"\[64k\].*ENDLIST")

    def test_missing_extm3u_and_version(self):
        self.edit("128k/playlist.m3u8",
                  lambda t: re.sub(r"#EXT-X-VERSION:\d+\n", "", t.replace("#EXTM3U\n", "")))
        fails = self.check()
        self.assertFailsWith(fails, r"\[128k\].*#EXTM3U")
        self.assertFailsWith(fails, r"\[128k\].*VERSION")

    def test_targetduration_too_small_or_fractional(self):
        self.edit("64k/playlist.m3u8", lambda t: t.replace("#EXT-X-TARGETDURATION:6",
                                                           "#EXT-X-TARGETDURATION:5"))
        self.assertFailsWith(self.check(), r"rounds above TARGETDURATION 5")
        self.edit("64k/playlist.m3u8", lambda t: t.replace("#EXT-X-TARGETDURATION:5",
                                                           "#EXT-X-TARGETDURATION:6.0"))
        self.assertFailsWith(self.check(), r"TARGETDURATION must appear once as an integer")

    def test_media_sequence_and_playlist_type(self):
        self.edit("192k/playlist.m3u8", lambda t: t.replace("MEDIA-SEQUENCE:0", "MEDIA-SEQUENCE:1")
                  .replace("#EXT-X-PLAYLIST-TYPE:VOD\n", ""))
        fails = self.check()
        self.assertFailsWith(fails, r"\[192k\].*MEDIA-SEQUENCE")
        self.assertFailsWith(fails, r"\[192k\].*PLAYLIST-TYPE")

    # -- segment files
    def test_missing_segment_file(self):
        (self.out / "64k" / "segment_001.ts").unlink()
        self.assertFailsWith(self.check(), r"segment_001\.ts does not exist")

    def test_segment_dropped_from_playlist(self):
        self.edit("64k/playlist.m3u8",
                  lambda t: re.sub(r"#EXTINF:[^\n]*\nsegment_001\.ts\n", "", t))
        fails = self.check()
        self.assertFailsWith(fails, r"segment_001\.ts present but not listed")
        self.assertFailsWith(fails, r"expected index 001")

    def test_stray_ts_file(self):
        shutil.copy(self.out / "64k" / "segment_000.ts", self.out / "64k" / "segment_099.ts")
        self.assertFailsWith(self.check(), r"segment_099\.ts present but not listed")

    def test_segments_out_of_order(self):
        def swap(t):
            t = t.replace("segment_001.ts", "@@").replace("segment_002.ts", "segment_001.ts")
            return t.replace("@@", "segment_002.ts")
        self.edit("256k/playlist.m3u8", swap)
        self.assertFailsWith(self.check(), r"\[256k\] segment #1 is segment_002\.ts")

    def test_bad_segment_names(self):
        d = self.out / "128k"
        for p in sorted(d.glob("segment_*.ts")):
            p.rename(d / p.name.replace("segment_0", "seg"))
        self.edit("128k/playlist.m3u8", lambda t: t.replace("segment_0", "seg"))
        self.assertFailsWith(self.check(), r"'seg00\.ts' is not segment_NNN\.ts")

    def test_stray_entry_in_outdir(self):
        (self.out / ".vessel-tmp-123").mkdir()
        self.assertFailsWith(self.check(), r"unexpected entry in OUTDIR")

    # -- durations / timestamps
    def test_wrong_segment_length_in_ladder(self):
        lad = self.ladder_variant(lambda t: t.replace("segment_duration_s = 6.0",
                                                      "segment_duration_s = 4.0"))
        fails = self.check(ladder=lad)
        self.assertFailsWith(fails, r"EXTINF .* not 4\.0")
        self.assertFailsWith(fails, r"measured .* not 4\.0")

    def test_tail_merged_into_last_segment(self):
        # 6+6+6+2 s -> 6+6+8 s: concatenate the last two TS files (still valid MPEG-TS),
        # keep the playlist self-consistent (EXTINF sum, TARGETDURATION 8).
        d = self.out / "64k"
        with open(d / "segment_002.ts", "ab") as f:
            f.write((d / "segment_003.ts").read_bytes())
        (d / "segment_003.ts").unlink()
        def merge(t):
            ext = re.findall(r"#EXTINF:([\d.]+),", t)
            t = re.sub(r"#EXTINF:[\d.]+,\nsegment_003\.ts\n", "", t)
            t = t.replace(f"#EXTINF:{ext[2]},", f"#EXTINF:{float(ext[2]) + float(ext[3]):.6f},")
            return re.sub(r"TARGETDURATION:\d+", "TARGETDURATION:8", t)
        self.edit("64k/playlist.m3u8", merge)
        fails = self.check()
        self.assertFailsWith(fails, r"\[64k\] segment_002\.ts: last segment EXTINF")
        self.assertFailsWith(fails, r"\[64k\] segment_002\.ts: last segment measured")
        self.assertFailsWith(fails, r"\[64k\] #EXT-X-TARGETDURATION:8 too large")

    def test_lying_extinf(self):
        self.edit("64k/playlist.m3u8", lambda t: t.replace("#EXTINF:6.0", "#EXTINF:6.4", 1))
        self.assertFailsWith(self.check(), r"\[64k\] sum of EXTINF")

    def test_extinf_disagrees_with_media(self):
        # +0.3 s on one segment, -0.3 s on the next: sum and ±0.5 s rule still hold,
        # only the per-segment comparison with ffprobe catches it.
        def shift(t):
            ext = re.findall(r"#EXTINF:([\d.]+),", t)
            a, b = float(ext[0]) + 0.3, float(ext[1]) - 0.3
            t = t.replace(f"#EXTINF:{ext[0]},", f"#EXTINF:{a:.6f},", 1)
            return t.replace(f"#EXTINF:{ext[1]},", f"#EXTINF:{b:.6f},", 1)
        self.edit("128k/playlist.m3u8", shift)
        fails = self.check()
        self.assertFailsWith(fails, r"\[128k\] segment_000\.ts: EXTINF .* ffprobe measures")
        self.assertFailsWith(fails, r"\[128k\] segment_001\.ts: EXTINF .* ffprobe measures")

    def test_zero_extinf(self):
        self.edit("64k/playlist.m3u8", lambda t: re.sub(r"#EXTINF:[\d.]+,(\nsegment_003)",
                                                        r"#EXTINF:0.000,\1", t))
        self.assertFailsWith(self.check(), r"\[64k\] segment_003\.ts: #EXTINF .* not > 0")

    def test_source_duration_mismatch(self):
        fails = self.check(src=SRC_S + 1.0)
        self.assertFailsWith(fails, r"sum of EXTINF")
        self.assertFailsWith(fails, r"measured sum")

    def test_timestamp_reset(self):
        seg = self.out / "128k" / "segment_002.ts"
        tmp = self.tmp / "reset.ts"
        # A plain remux restarts the timestamps (at the mpegts mux delay, ~1.4 s).
        r = h.run(["ffmpeg", "-nostdin", "-v", "error", "-i", seg, "-c", "copy",
                   "-f", "mpegts", tmp])
        self.assertEqual(r.returncode, 0, r.stderr)
        shutil.move(tmp, seg)
        self.assertFailsWith(self.check(), r"\[128k\] pts discontinuity segment_001\.ts -> segment_002")

    # -- stream properties / bit rates
    def test_wrong_sample_rate_and_channels(self):
        lad = self.ladder_variant(lambda t: t.replace("sample_rate_hz = 44100\nchannels = 2",
                                                      "sample_rate_hz = 48000\nchannels = 1", 1))
        fails = self.check(ladder=lad)
        self.assertFailsWith(fails, r"\[64k\].*sample rate 44100, expected 48000")
        self.assertFailsWith(fails, r"\[64k\].*2 channels, expected 1")

    def test_audio_bitrate_off_nominal(self):
        lad = self.ladder_variant(lambda t: t.replace("bitrate_kbps = 64", "bitrate_kbps = 96"))
        fails = self.check(ladder=lad)
        self.assertFailsWith(fails, r"\[64k\] audio bit rate .* nominal 96")

    def test_wire_rate_over_limit(self):
        # Pad every 256k segment with null TS packets (PID 0x1FFF): decodable, but fat.
        null_pkt = b"\x47\x1f\xff\x10" + b"\xff" * 184
        for p in (self.out / "256k").glob("*.ts"):
            with open(p, "ab") as f:
                f.write(null_pkt * (p.stat().st_size // 188 // 4))
        self.assertFailsWith(self.check(), r"\[256k\] on-the-wire .* > limit")

    # -- master playlist
    def test_inflated_bandwidth(self):
        def inflate(t):
            return re.sub(r"(?<=[:,])BANDWIDTH=(\d+)",
                          lambda m: f"BANDWIDTH={int(int(m.group(1)) * 1.5)}", t, count=1)
        self.edit("master.m3u8", inflate)
        self.assertFailsWith(self.check(), r"\[64k\]: BANDWIDTH .* measured peak")

    def test_understated_bandwidth(self):
        # BANDWIDTH must be >= 0.9 x the measured peak: 0.8 x the average must fail.
        self.edit("master.m3u8", lambda t: re.sub(
            r"BANDWIDTH=\d+,AVERAGE-BANDWIDTH=(\d+)(,CODECS=\"mp4a.40.2\"\n256k)",
            lambda m: f"BANDWIDTH={int(int(m.group(1)) * 0.8)},AVERAGE-BANDWIDTH={m.group(1)}"
                      f"{m.group(2)}", t))
        self.assertFailsWith(self.check(), r"\[256k\]: BANDWIDTH")

    def test_deflated_average_bandwidth(self):
        self.edit("master.m3u8", lambda t: re.sub(
            r"AVERAGE-BANDWIDTH=(\d+)", lambda m: f"AVERAGE-BANDWIDTH={int(m.group(1)) // 2}", t))
        self.assertFailsWith(self.check(), r"AVERAGE-BANDWIDTH .* measured average")

    def test_master_missing_tags_and_rung(self):
        def mangle(t):
            t = t.replace("#EXT-X-INDEPENDENT-SEGMENTS\n", "").replace('"mp4a.40.2"', '"mp4a.40.5"', 1)
            return re.sub(r"#EXT-X-STREAM-INF:[^\n]*\n192k/playlist\.m3u8\n", "", t)
        self.edit("master.m3u8", mangle)
        fails = self.check()
        self.assertFailsWith(fails, r"INDEPENDENT-SEGMENTS")
        self.assertFailsWith(fails, r"\[64k\]: CODECS")
        self.assertFailsWith(fails, r"0 #EXT-X-STREAM-INF for 192k/playlist\.m3u8")

    def test_master_duplicate_and_unknown_variant(self):
        self.edit("master.m3u8", lambda t: t + '#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="mp4a.40.2"\n'
                  '64k/playlist.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\n512k/playlist.m3u8\n')
        fails = self.check()
        self.assertFailsWith(fails, r"2 #EXT-X-STREAM-INF for 64k")
        self.assertFailsWith(fails, r"'512k/playlist\.m3u8' matches no rung")

    def test_missing_master(self):
        (self.out / "master.m3u8").unlink()
        self.assertFailsWith(self.check(), r"master\.m3u8 missing")

    # -- decoding
    def test_corrupt_segment_fails_decode(self):
        p = self.out / "192k" / "segment_001.ts"
        data = bytearray(p.read_bytes())
        # Keep the TS sync bytes and headers, garble the AAC payload of many packets.
        for off in range(188 * 3, len(data) - 188, 188 * 2):
            data[off + 20: off + 180] = bytes((i * 37 + 11) & 0xFF for i in range(160))
        p.write_bytes(bytes(data))
        fails = self.check(decode=True)
        self.assertFailsWith(fails, r"\[192k\] ffmpeg decode of playlist\.m3u8 not clean")
        self.assertFailsWith(fails, r"ffmpeg decode of master\.m3u8 not clean")


if __name__ == "__main__":
    unittest.main(verbosity=2)

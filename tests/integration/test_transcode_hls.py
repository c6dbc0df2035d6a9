#!/usr/bin/env python3
"""`vessel transcode` end to end: many input formats -> HLS ladder, checked by hls_check
(ffprobe/ffmpeg measurements), plus `vessel probe` and `vessel plugins --json`."""

import json
import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402
from hls_check import cached_input  # noqa: E402


def setUpModule():
    h.require_vessel()


class TranscodeDefaultLadder(h.VesselCase):
    def test_mp3_40s_stereo_44k(self):
        src = cached_input("in.mp3", 40.0)
        out = self.transcode_ok(src, 40.0)
        self.assertEqual(h.dir_listing(out), ["128k", "192k", "256k", "64k", "master.m3u8"])

    def test_wav_40s(self):
        self.transcode_ok(cached_input("in.wav", 40.0), 40.0)

    def _format(self, filename, encoder, duration=26.0, **kw):
        if not h.encoder_available(encoder):
            self.skipTest(f"ffmpeg here cannot encode {encoder}")
        src = cached_input(filename, duration, codec=encoder, **kw)
        self.transcode_ok(src, duration)

    def test_flac(self):
        self._format("in.flac", "flac")

    def test_ogg_vorbis(self):
        self._format("in.ogg", "libvorbis")

    def test_opus(self):
        self._format("in.opus", "libopus")  # 48 kHz source -> resampled to 44.1 kHz

    def test_m4a_aac(self):
        self._format("in.m4a", "aac")

    def test_mono_8k_wav_is_resampled(self):
        src = cached_input("mono8k.wav", 26.0, sample_rate=8000, channels=1)
        st = h.ffprobe_json("-show_streams", src)["streams"][0]
        self.assertEqual((int(st["sample_rate"]), st["channels"]), (8000, 1))
        # Content ends at 4 kHz: an AAC encoder cannot (and should not) fill 192/256 kbit/s
        # with it (ffmpeg's own encoder tops out near 142), so only the upper bound applies.
        self.transcode_ok(src, 26.0, audio_bitrate_floor=False)

    def test_96k_24bit_wav_is_resampled(self):
        src = cached_input("hires.wav", 26.0, sample_rate=96000, codec="pcm_s24le")
        st = h.ffprobe_json("-show_streams", src)["streams"][0]
        self.assertEqual((int(st["sample_rate"]), st["codec_name"]), (96000, "pcm_s24le"))
        self.transcode_ok(src, 26.0)

    def test_short_3s_single_segment(self):
        out = self.transcode_ok(cached_input("short.wav", 3.0), 3.0)
        for rung in ("64k", "128k", "192k", "256k"):
            segs = sorted(p.name for p in (out / rung).glob("*.ts"))
            self.assertEqual(segs, ["segment_000.ts"], f"{rung}: expected a single segment")

    def test_exact_multiple_of_segment_length(self):
        # 12 s = 2 x 6 s: the encoder's extra frame may spill into a 1-frame third segment,
        # which is fine, but then its EXTINF must be its real (non-zero) length.
        self.transcode_ok(cached_input("in.wav", 12.0), 12.0)

    def test_existing_empty_outdir_is_accepted(self):
        parent = self.tmpdir()
        out = parent / "out"
        out.mkdir()
        self.transcode_ok(cached_input("in.mp3", 14.0), 14.0, outdir=out)


class TranscodeLiteLadder(h.VesselCase):
    def test_lite_ladder(self):
        src = cached_input("in.mp3", 30.0)
        out = self.transcode_ok(src, 30.0, ladder_name="hls-aac-lite",
                                args=["--pipeline", "hls-aac-lite"])
        self.assertEqual(h.dir_listing(out), ["48k", "96k", "master.m3u8"])
        # 4 s segments: 30 s -> 7 full + a 2 s tail
        self.assertEqual(len(list((out / "48k").glob("*.ts"))), 8)


class Probe(h.VesselCase):
    def test_probe_mp3_tags(self):
        tags = {"title": "Test Tone Étude", "artist": "Vessel QA", "album": "Ladders, Vol. 1"}
        src = cached_input("tagged.mp3", 12.0, metadata=tags)
        res = self.vessel(["probe", src], timeout=60)
        self.assertEqual(res.returncode, 0, h.describe_result(res))
        try:
            info = json.loads(res.stdout)
        except json.JSONDecodeError as exc:
            self.fail(f"probe stdout is not JSON ({exc}): {res.stdout[:500]!r}")
        problems = []
        for key, typ in (("duration_s", (int, float)), ("codec", str), ("sample_rate", int),
                         ("channels", int), ("container", str), ("tags", dict)):
            if not isinstance(info.get(key), typ) or isinstance(info.get(key), bool):
                problems.append(f"{key}: {info.get(key)!r} is not {typ}")
        if "bit_rate" not in info or not (info["bit_rate"] is None or
                                          isinstance(info["bit_rate"], int)):
            problems.append(f"bit_rate: {info.get('bit_rate')!r} is not int|null")
        if isinstance(info.get("duration_s"), (int, float)) and abs(info["duration_s"] - 12.0) > 0.1:
            problems.append(f"duration_s {info['duration_s']} != 12.0 ± 0.1")
        if info.get("sample_rate") != 44100:
            problems.append(f"sample_rate {info.get('sample_rate')} != 44100")
        if info.get("channels") != 2:
            problems.append(f"channels {info.get('channels')} != 2")
        if "mp3" not in str(info.get("codec", "")).lower():
            problems.append(f"codec {info.get('codec')!r} does not say mp3")
        if "mp3" not in str(info.get("container", "")).lower():
            problems.append(f"container {info.get('container')!r} does not say mp3")
        if isinstance(info.get("bit_rate"), int) and abs(info["bit_rate"] - 192000) > 0.15 * 192000:
            problems.append(f"bit_rate {info['bit_rate']} not ~192000")
        got_tags = info.get("tags") if isinstance(info.get("tags"), dict) else {}
        for k, v in tags.items():
            if got_tags.get(k) != v:
                problems.append(f"tags.{k}: {got_tags.get(k)!r} != {v!r}")
        self.assertEqual(problems, [], f"probe JSON: {json.dumps(info, ensure_ascii=False)}")


class Plugins(h.VesselCase):
    def test_plugins_json(self):
        res = self.vessel(["plugins", "--json"], timeout=60)
        self.assertEqual(res.returncode, 0, h.describe_result(res))
        try:
            data = json.loads(res.stdout)
        except json.JSONDecodeError as exc:
            self.fail(f"plugins --json stdout is not JSON ({exc}): {res.stdout[:500]!r}")
        plugins = data.get("plugins")
        self.assertIsInstance(plugins, list, res.stdout)
        problems = []
        for p in plugins:
            missing = {"kind", "name", "version", "abi_version", "path"} - set(p)
            if missing:
                problems.append(f"{p}: missing {sorted(missing)}")
        index = {(p.get("kind"), p.get("name")): p for p in plugins}
        for want in (("storage", "local"), ("codec", "aac")):
            p = index.get(want)
            if p is None:
                problems.append(f"{want[0]}/{want[1]} not listed")
                continue
            if p.get("abi_version") != 3:
                problems.append(f"{want}: abi_version {p.get('abi_version')!r} != 3")
            if not isinstance(p.get("version"), str) or not p.get("version"):
                problems.append(f"{want}: version {p.get('version')!r} not a non-empty string")
            if not (isinstance(p.get("path"), str) and os.path.exists(p["path"])):
                problems.append(f"{want}: path {p.get('path')!r} does not exist")
        self.assertEqual(problems, [], f"plugins --json: {res.stdout[:2000]}")

    def test_plugins_plain(self):
        res = self.vessel(["plugins"], timeout=60)
        self.assertEqual(res.returncode, 0, h.describe_result(res))
        for word in ("storage", "local", "codec", "aac"):
            self.assertIn(word, res.stdout, h.describe_result(res))


if __name__ == "__main__":
    unittest.main(verbosity=2)

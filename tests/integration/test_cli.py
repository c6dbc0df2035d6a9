#!/usr/bin/env python3
"""CLI surface: --help, --version, and how the pipeline is chosen
(--pipeline > VESSEL_TRANSCODE_PIPELINE > config file [transcode] pipeline > default)."""

import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hls_check as h  # noqa: E402
from hls_check import cached_input  # noqa: E402

DUR = 14.0  # hls-aac: 6+6+2 s; hls-aac-lite: 4+4+4+2 s
LITE_RUNGS = ["48k", "96k", "master.m3u8"]
FULL_RUNGS = ["128k", "192k", "256k", "64k", "master.m3u8"]


def setUpModule():
    h.require_vessel()


class Cli(h.VesselCase):
    def test_help(self):
        res = self.vessel(["--help"], timeout=30)
        self.assertEqual(res.returncode, 0, h.describe_result(res))
        for word in ("transcode", "probe", "plugins"):
            self.assertIn(word, res.stdout, f"--help should mention {word}\n{h.describe_result(res)}")

    def test_version(self):
        res = self.vessel(["--version"], timeout=30)
        self.assertEqual(res.returncode, 0, h.describe_result(res))
        self.assertRegex(res.stdout, r"\d+\.\d+", "--version should print a version number")


class PipelineSelection(h.VesselCase):
    def config(self, text) -> Path:
        p = self.tmpdir() / "vessel.toml"
        p.write_text(text)
        return p

    def test_env_var_picks_pipeline(self):
        out = self.transcode_ok(cached_input("in.mp3", DUR), DUR, ladder_name="hls-aac-lite",
                                env={"VESSEL_TRANSCODE_PIPELINE": "hls-aac-lite"})
        self.assertEqual(h.dir_listing(out), LITE_RUNGS)

    def test_config_file_picks_pipeline(self):
        cfg = self.config('[transcode]\npipeline = "hls-aac-lite"\n')
        out = self.transcode_ok(cached_input("in.mp3", DUR), DUR, ladder_name="hls-aac-lite",
                                args=["--config", cfg])
        self.assertEqual(h.dir_listing(out), LITE_RUNGS)

    def test_flag_beats_env_and_config(self):
        cfg = self.config('[transcode]\npipeline = "hls-aac-lite"\n')
        out = self.transcode_ok(cached_input("in.mp3", DUR), DUR, ladder_name="hls-aac",
                                args=["--config", cfg, "--pipeline", "hls-aac"],
                                env={"VESSEL_TRANSCODE_PIPELINE": "hls-aac-lite"}, decode=False)
        self.assertEqual(h.dir_listing(out), FULL_RUNGS)

    def test_bad_env_value_is_config_error(self):
        work = self.tmpdir()
        out = work / "out"
        res = self.vessel(["transcode", cached_input("in.mp3", DUR), out], cwd=work,
                          env={"VESSEL_TRANSCODE_STALL_TIMEOUT_S": "abc"}, timeout=60)
        self.assertErrorLine(res, 78)
        self.assertTrue(re.search(r"stall_timeout", res.stderr, re.I),
                        f"error should name the setting\n{h.describe_result(res)}")
        self.assertEqual(h.dir_listing(work), [], "OUTDIR or litter left after config error")


if __name__ == "__main__":
    unittest.main(verbosity=2)

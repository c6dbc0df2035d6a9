#!/usr/bin/env python3
"""`meson install` works: headers, libvessel-core + vessel-core.pc, plugins,
pipelines and the binary land under the prefix, and a tiny integrator app
compiles and links against the installed core through pkg-config."""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BUILD = Path(os.environ.get("VESSEL_TEST_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))

APP = r"""
#include <vessel/runtime.hpp>
#include <vessel/config.hpp>
#include <cstdio>
int main() {
  vessel::ConfigSchema schema = vessel::Runtime::coreSchema();
  auto cfg = vessel::Config::load(schema, std::nullopt, [](const std::string&) { return std::nullopt; });
  if (!cfg.ok()) return 1;
  std::printf("%s %s\n", vessel::versionString(), cfg.value().getString("transcode.pipeline").c_str());
  return 0;
}
"""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


class Install(unittest.TestCase):
    def test_install_and_link_an_app(self):
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "dest"
            r = run(["meson", "install", "-C", str(BUILD), "--destdir", str(dest), "--quiet"])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            files = [p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()]
            def has(suffix):
                return any(f.endswith(suffix) for f in files)
            for want in ["bin/vessel", "include/vessel/runtime.hpp", "include/vessel/plugin.hpp",
                         "pkgconfig/vessel-core.pc", "vessel/plugins/libvessel-storage-local.so",
                         "vessel/plugins/libvessel-codec-aac.so", "vessel/pipelines/hls-aac.toml"]:
                self.assertTrue(has(want), f"{want} not installed; got {sorted(files)[:40]}")
            pc = next(dest.rglob("vessel-core.pc"))
            # Point our .pc (only ours) at the staged prefix, as a packager would.
            text = pc.read_text()
            prefix = next(l.split("=", 1)[1] for l in text.splitlines() if l.startswith("prefix="))
            pcdir = Path(tmp) / "pkgconfig"
            pcdir.mkdir()
            (pcdir / "vessel-core.pc").write_text(
                text.replace(f"prefix={prefix}", f"prefix={dest}{prefix}", 1))
            env = dict(os.environ, PKG_CONFIG_PATH=str(pcdir))
            flags = run(["pkg-config", "--cflags", "--libs", "vessel-core"], env=env)
            self.assertEqual(flags.returncode, 0, flags.stderr)
            app = Path(tmp) / "app.cpp"
            app.write_text(APP)
            exe = Path(tmp) / "app"
            c = run(["c++", "-std=c++20", str(app), "-o", str(exe), *flags.stdout.split()])
            self.assertEqual(c.returncode, 0, c.stderr)
            libdir = next(dest.rglob("libvessel-core.so*")).parent
            out = run([str(exe)], env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"^\d+\.\d+\.\d+ hls-aac$")


if __name__ == "__main__":
    unittest.main(verbosity=2)

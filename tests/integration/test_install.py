#!/usr/bin/env python3
"""`meson install` works: headers, libvessel-core + vessel-core.pc,
libvessel-server + vessel-server.pc, plugins, pipelines and the binary land
under the prefix; a tiny integrator app compiles and links against the
installed core through pkg-config, and a second one starts the embedded
server from the installed library and answers HTTP."""

import os
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
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

SERVER_APP = r"""
#include <vessel/server.hpp>
#include <cstdio>
#include <iostream>
#include <string>
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  vessel::RuntimeOptions o;
  o.extra_fields = vessel::serverConfigFields();
  o.default_plugin_dirs = {argv[1]};
  o.default_pipeline_dirs = {argv[2]};
  auto rt = vessel::Runtime::create(o);
  if (!rt.ok()) { std::fprintf(stderr, "%s\n", rt.error().message.c_str()); return 1; }
  vessel::ServeOptions so;
  so.data_dir = argv[3];
  so.listen = "127.0.0.1:0";
  so.workers = 0;
  auto app = vessel::AppServer::start(*rt.value(), so);
  if (!app.ok()) { std::fprintf(stderr, "%s\n", app.error().message.c_str()); return 1; }
  std::printf("%s\n", app.value()->url().c_str());
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);  // the test closes stdin when done
  app.value()->stop();
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
                         "include/vessel/server.hpp", "pkgconfig/vessel-server.pc",
                         "vessel/plugins/libvessel-auth-local.so",
                         "pkgconfig/vessel-core.pc", "vessel/plugins/libvessel-storage-local.so",
                         "vessel/plugins/libvessel-codec-aac.so", "vessel/pipelines/hls-aac.toml"]:
                self.assertTrue(has(want), f"{want} not installed; got {sorted(files)[:40]}")
            # Point our .pc files (only ours) at the staged prefix, as a packager would.
            pcdir = Path(tmp) / "pkgconfig"
            pcdir.mkdir()
            for name in ["vessel-core.pc", "vessel-server.pc"]:
                text = next(dest.rglob(name)).read_text()
                prefix = next(l.split("=", 1)[1] for l in text.splitlines()
                              if l.startswith("prefix="))
                (pcdir / name).write_text(
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

            # The same server `vessel serve` runs, started from the installed library.
            sflags = run(["pkg-config", "--cflags", "--libs", "vessel-server"], env=env)
            self.assertEqual(sflags.returncode, 0, sflags.stderr)
            sapp = Path(tmp) / "server_app.cpp"
            sapp.write_text(SERVER_APP)
            sexe = Path(tmp) / "server_app"
            c = run(["c++", "-std=c++20", str(sapp), "-o", str(sexe), *sflags.stdout.split()])
            self.assertEqual(c.returncode, 0, c.stderr)
            plugin_dir = next(dest.rglob("libvessel-auth-local.so")).parent
            pipeline_dir = next(dest.rglob("hls-aac.toml")).parent
            data = Path(tmp) / "var"
            os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as `vessel` when root
            proc = subprocess.Popen([str(sexe), str(plugin_dir), str(pipeline_dir), str(data)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
            try:
                url = proc.stdout.readline().strip()
                self.assertTrue(url.startswith("http://127.0.0.1:"), url)
                with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
                    self.assertEqual(r.status, 200)
                with self.assertRaises(urllib.error.HTTPError) as ctx:
                    urllib.request.urlopen(url + "/api/v1/me", timeout=10)
                self.assertEqual(ctx.exception.code, 401)
            finally:
                proc.stdin.close()
                self.assertEqual(proc.wait(timeout=60), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""Build step of the web app: copy the assets into the build tree and stamp every
local reference with the referenced file's content hash, so that the server can
let browsers cache them for a year (`?v=<hash>`, see server/src/api_web.cpp).

    stamp.py OUTDIR FILE...

References rewritten: `src="[/assets/]x"` / `href="[/assets/]x"` in .html, `import … from './x.js'`
and `import('./x.js')` in .js, `url(x)` in .css, for files named on the command
line only. A file's hash covers the stamped text, so a change anywhere below a
module changes the URL of every module that imports it. The hash is the first
16 hex digits of SHA-256, the same the server computes (webAssetHash).
"""

import hashlib
import re
import shutil
import sys
from pathlib import Path

REFS = {
    ".html": re.compile(r"""(?P<pre>\b(?:src|href)="(?:/assets/)?)(?P<name>[A-Za-z0-9_.-]+)(?P<post>")"""),
    ".js": re.compile(r"""(?P<pre>\bfrom\s*'\./|\bimport\s*\(\s*'\./)(?P<name>[A-Za-z0-9_.-]+\.js)(?P<post>')"""),
    ".css": re.compile(r"""(?P<pre>\burl\()(?P<name>[A-Za-z0-9_.-]+)(?P<post>\))"""),
}


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    out = Path(sys.argv[1])
    sources = {Path(p).name: Path(p) for p in sys.argv[2:]}
    stamped: dict[str, bytes] = {}
    visiting: set[str] = set()

    def build(name: str) -> bytes:
        if name in stamped:
            return stamped[name]
        if name in visiting:
            raise SystemExit(f"stamp.py: import cycle through {name}")
        visiting.add(name)
        src = sources[name]
        pattern = REFS.get(src.suffix)
        if pattern is None:
            data = src.read_bytes()
        else:
            def repl(m: re.Match) -> str:
                ref = m.group("name")
                if ref not in sources:
                    return m.group(0)
                return f"{m.group('pre')}{ref}?v={content_hash(build(ref))}{m.group('post')}"
            data = pattern.sub(repl, src.read_text(encoding="utf-8")).encode("utf-8")
        visiting.discard(name)
        stamped[name] = data
        return data

    out.mkdir(parents=True, exist_ok=True)
    for name in sources:
        target = out / name
        data = build(name)
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        shutil.copymode(sources[name], tmp)
        tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

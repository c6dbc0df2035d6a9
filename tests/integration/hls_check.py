"""Independent checker for a Vessel HLS ladder, plus helpers for the integration tests.

Everything here measures the output with ffprobe/ffmpeg; our own playlists are only
parsed to find out what they *claim*, and every claim is compared with a measurement.

    failures = check_ladder(outdir, ladder_toml_path, source_duration_s)
    assert not failures, "\n".join(failures)

Stdlib only (Python >= 3.11 for tomllib).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest
import atexit
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("VESSEL_TEST_SOURCE_DIR", HERE.parent.parent))
PIPELINE_DIR = Path(os.environ.get("VESSEL_TEST_PIPELINE_DIR", SOURCE_DIR / "pipelines"))
DEFAULT_BIN = SOURCE_DIR / "build" / "server" / "vessel"

# Tolerances (spec values; see README.md).
SEGMENT_TOL_S = 0.5          # non-final segment duration vs ladder segment_duration_s
EXTINF_SUM_TOL_S = 0.1       # sum of EXTINF vs source duration
MEASURED_SUM_TOL_S = 0.15    # ffprobe-measured total vs source (AAC priming/padding: ~2 frames)
EXTINF_VS_MEASURED_TOL_S = 0.1  # each segment's EXTINF vs its ffprobe-measured duration
LEVEL_TOL_DB = 2.0           # decoded rung RMS level vs source RMS level (with source_path)
CONTINUITY_TOL_S = 0.050     # pts gap/overlap between consecutive segments
BANDWIDTH_TOL = 0.10         # BANDWIDTH vs measured peak, AVERAGE-BANDWIDTH vs measured average
AUDIO_BITRATE_TOL = 0.10     # packet-measured audio bit rate vs nominal
SEGMENT_NAME_RE = re.compile(r"^segment_(\d{3,})\.ts$")


# --------------------------------------------------------------------------- binaries

def vessel_bin() -> str:
    return os.environ.get("VESSEL_BIN", str(DEFAULT_BIN))


def run(cmd, timeout=120, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output captured; never inherits stdin."""
    return subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, **kw)


def run_vessel(args, env_extra=None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """Run vessel; inherited VESSEL_TRANSCODE_* overrides are dropped so tests are hermetic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESSEL_TRANSCODE_")}
    if env_extra:
        env.update(env_extra)
    return run([vessel_bin(), *args], timeout=timeout, env=env, cwd=cwd)


def describe_result(res: subprocess.CompletedProcess) -> str:
    err = res.stderr if len(res.stderr) < 2000 else res.stderr[:2000] + "...(truncated)"
    out = res.stdout if len(res.stdout) < 1000 else res.stdout[:1000] + "...(truncated)"
    return f"exit={res.returncode}\n--- stderr ---\n{err}--- stdout ---\n{out}"


def ffprobe_json(*args, timeout=60) -> dict:
    res = run(["ffprobe", "-v", "error", "-of", "json", *args], timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"ffprobe {' '.join(map(str, args))} failed: {res.stderr.strip()}")
    return json.loads(res.stdout or "{}")


# --------------------------------------------------------------------------- audio generation

_DEFAULT_CODEC = {
    ".mp3": ("libmp3lame", "192k"),
    ".wav": ("pcm_s16le", None),
    ".flac": ("flac", None),
    ".ogg": ("libvorbis", "160k"),
    ".opus": ("libopus", "128k"),
    ".m4a": ("aac", "192k"),
    ".aac": ("aac", "192k"),
    ".mka": ("flac", None),
}


def make_audio(path, duration_s, sample_rate=44100, channels=2, codec=None, bitrate=None,
               metadata=None, extra_args=(), noise_amplitude=0.25, gain_db=0.0):
    """Write a music-like test signal (two beeping/tremolo sines + pink noise, different
    per channel) of exactly duration_s to path. Codec/container default from the extension.
    Returns path. Raises RuntimeError if ffmpeg cannot make it (e.g. encoder missing)."""
    path = Path(path)
    ext = path.suffix.lower()
    dcodec, dbitrate = _DEFAULT_CODEC.get(ext, (None, None))
    codec = codec or dcodec
    bitrate = bitrate if bitrate is not None else dbitrate
    gen_rate = sample_rate
    d = f"{duration_s:.6f}"
    srcs = [
        f"sine=f=220:beep_factor=4:sample_rate={gen_rate}:d={d}",
        f"sine=f=331:sample_rate={gen_rate}:d={d},tremolo=f=2:d=0.6",
        f"anoisesrc=color=pink:amplitude={noise_amplitude}:seed=1:sample_rate={gen_rate}:d={d}",
        f"anoisesrc=color=pink:amplitude={noise_amplitude}:seed=2:sample_rate={gen_rate}:d={d}",
    ]
    graph = "[0][2]amix=inputs=2:normalize=0[l];[1][3]amix=inputs=2:normalize=0[r];" \
            "[l][r]amerge=inputs=2"
    if channels == 1:
        graph += ",pan=mono|c0=0.5*c0+0.5*c1"
    elif channels == 2:
        graph += ",pan=stereo|c0=c0|c1=c1"
    else:
        graph += f",aformat=channel_layouts={channels}c"
    graph += f",volume={gain_db:g}dB,alimiter=limit=0.9[out]"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for s in srcs:
        cmd += ["-f", "lavfi", "-i", s]
    cmd += ["-filter_complex", graph, "-map", "[out]", "-t", d]
    if codec:
        cmd += ["-c:a", codec]
    if bitrate:
        cmd += ["-b:a", str(bitrate)]
    if codec == "libopus":
        cmd += ["-ar", "48000"]  # opus only codes 8/12/16/24/48 kHz
    else:
        cmd += ["-ar", str(sample_rate)]
    for k, v in (metadata or {}).items():
        cmd += ["-metadata", f"{k}={v}"]
    cmd += [*extra_args, str(path)]
    res = run(cmd, timeout=300)
    if res.returncode != 0 or not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"ffmpeg could not make {path.name}: {res.stderr.strip()}")
    return path


def encoder_available(name: str) -> bool:
    res = run(["ffmpeg", "-hide_banner", "-encoders"])
    return any(line.split()[1:2] == [name] for line in res.stdout.splitlines() if line.strip())


def decoded_duration(path) -> float:
    """Duration of the first audio stream as the decoder sees it (packet pts span),
    robust against lying headers and truncated files."""
    pk = ffprobe_json("-select_streams", "a:0", "-show_entries",
                      "packet=pts_time,duration_time", str(path)).get("packets", [])
    pk = [p for p in pk if p.get("pts_time") not in (None, "N/A")]
    if not pk:
        return 0.0
    first = min(float(p["pts_time"]) for p in pk)
    last = max(pk, key=lambda p: float(p["pts_time"]))
    return float(last["pts_time"]) + float(last.get("duration_time") or 0) - first


# --------------------------------------------------------------------------- ladder / playlists

def ladder_path(name: str) -> Path:
    return PIPELINE_DIR / f"{name}.toml"


def load_ladder(path) -> dict:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    if "rungs" not in data or "segment_duration_s" not in data:
        raise ValueError(f"{path}: not a ladder (needs rungs and segment_duration_s)")
    return data


def parse_attributes(s: str) -> dict:
    """Parse an HLS attribute list (KEY=VALUE,KEY="quoted, value")."""
    attrs = {}
    for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', s):
        attrs[m.group(1)] = m.group(2)
    return attrs


@dataclass
class MediaPlaylist:
    lines: list
    tags: dict = field(default_factory=dict)      # tag -> list of values
    segments: list = field(default_factory=list)  # (extinf_s, uri)


def parse_media_playlist(text: str) -> MediaPlaylist:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pl = MediaPlaylist(lines=lines)
    pending = None
    for ln in lines:
        if ln.startswith("#"):
            tag, _, val = ln.partition(":")
            pl.tags.setdefault(tag, []).append(val)
            if tag == "#EXTINF":
                try:
                    pending = float(val.split(",")[0])
                except ValueError:
                    pending = float("nan")
        else:
            pl.segments.append((pending, ln))
            pending = None
    return pl


@dataclass
class SegmentMeasure:
    path: Path
    size: int
    packets: int
    first_pts: float
    end_pts: float          # last pts + last duration
    audio_bytes: int
    codec: str
    profile: str
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.end_pts - self.first_pts


def measure_segment(path) -> SegmentMeasure:
    d = ffprobe_json("-select_streams", "a:0", "-show_entries",
                     "packet=pts_time,duration_time,size:stream=codec_name,profile,sample_rate,channels",
                     str(path))
    pk = [p for p in d.get("packets", []) if p.get("pts_time") not in (None, "N/A")]
    st = (d.get("streams") or [{}])[0]
    if not pk:
        raise RuntimeError(f"{path}: no audio packets")
    first = min(float(p["pts_time"]) for p in pk)
    last = max(pk, key=lambda p: float(p["pts_time"]))
    return SegmentMeasure(
        path=Path(path), size=Path(path).stat().st_size, packets=len(pk),
        first_pts=first, end_pts=float(last["pts_time"]) + float(last.get("duration_time") or 0),
        audio_bytes=sum(int(p.get("size", 0)) for p in pk),
        codec=st.get("codec_name", "?"), profile=st.get("profile", "?"),
        sample_rate=int(st.get("sample_rate", 0) or 0), channels=int(st.get("channels", 0) or 0))


def ffmpeg_decode_errors(playlist) -> str | None:
    """Decode every audio stream reachable from playlist; None if clean, else a message."""
    res = run(["ffmpeg", "-nostdin", "-v", "error", "-allowed_extensions", "ALL",
               "-i", str(playlist), "-map", "0:a", "-f", "null", "-"], timeout=300)
    if res.returncode != 0 or res.stderr.strip():
        msg = " | ".join(ln.strip() for ln in res.stderr.strip().splitlines()[:4])
        return f"exit {res.returncode}: {msg[:400]}"
    return None


def rms_level_db(path) -> float | None:
    """Overall RMS level (dBFS) of the decoded audio of path (all channels), via astats."""
    res = run(["ffmpeg", "-nostdin", "-v", "info", "-i", str(path), "-map", "0:a:0", "-af",
               "astats=measure_perchannel=none:measure_overall=RMS_level", "-f", "null", "-"],
              timeout=300)
    m = re.findall(r"RMS level dB: (-?[\d.]+|-inf)", res.stderr)
    if res.returncode != 0 or not m:
        return None
    return float(m[-1])


def wire_kbps(rung_dir) -> float:
    """On-the-wire kbit/s of a rung: sum of .ts bytes * 8 / measured total duration."""
    segs = sorted(Path(rung_dir).glob("*.ts"))
    ms = [measure_segment(s) for s in segs]
    total = sum(m.duration for m in ms)
    return sum(m.size for m in ms) * 8 / total / 1000 if total > 0 else 0.0


# --------------------------------------------------------------------------- the checker

def _pmap(fn, items):
    """map over subprocess-bound work with a few threads (ffprobe per segment)."""
    items = list(items)
    if len(items) < 2:
        return [fn(x) for x in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 2) + 1)) as ex:
        return list(ex.map(fn, items))


def check_ladder(outdir, ladder_toml_path, source_duration_s, *, decode=True,
                 duration_tol_s=EXTINF_SUM_TOL_S, audio_bitrate_floor=True,
                 source_path=None) -> list[str]:
    """Return a list of human-readable failures (empty list = the ladder is good).

    With source_path (and decode=True), each rung's decoded RMS level must match the
    source's within LEVEL_TOL_DB: catches silent, clipped or wrongly-scaled output.

    decode=False skips the ffmpeg full-decode checks (faster). audio_bitrate_floor=False
    only checks that the audio bit rate is not ABOVE nominal+10%: for band-limited sources
    (e.g. 8 kHz telephone audio) an encoder legitimately spends fewer bits."""
    outdir = Path(outdir)
    fails: list[str] = []
    F = fails.append
    ladder = load_ladder(ladder_toml_path)
    seg_s = float(ladder["segment_duration_s"])
    rungs = ladder["rungs"]
    if not outdir.is_dir():
        return [f"{outdir}: output directory does not exist"]

    # Nothing but master.m3u8 and one directory per rung.
    expected = {"master.m3u8"} | {r["name"] for r in rungs}
    present = {p.name for p in outdir.iterdir()}
    for extra in sorted(present - expected):
        F(f"{extra}: unexpected entry in OUTDIR")

    measured = {}  # rung name -> dict(peak=, avg=)
    to_decode = []  # (label, playlist) decoded at the end, in parallel
    for rung in rungs:
        name = rung["name"]
        r = f"[{name}]"
        rdir = outdir / name
        plpath = rdir / "playlist.m3u8"
        if not plpath.is_file():
            F(f"{r} {plpath.relative_to(outdir)} missing")
            continue
        pl = parse_media_playlist(plpath.read_text(errors="replace"))

        # ---- playlist syntax
        if not pl.lines or pl.lines[0] != "#EXTM3U":
            F(f"{r} playlist does not start with #EXTM3U")
        if "#EXT-X-VERSION" not in pl.tags:
            F(f"{r} no #EXT-X-VERSION")
        td = pl.tags.get("#EXT-X-TARGETDURATION", [])
        target = None
        if len(td) != 1 or not re.fullmatch(r"\d+", td[0]):
            F(f"{r} #EXT-X-TARGETDURATION must appear once as an integer, got {td}")
        else:
            target = int(td[0])
            if target > math.ceil(seg_s + SEGMENT_TOL_S):
                F(f"{r} #EXT-X-TARGETDURATION:{target} too large for {seg_s} s segments")
        if pl.tags.get("#EXT-X-MEDIA-SEQUENCE") != ["0"]:
            F(f"{r} #EXT-X-MEDIA-SEQUENCE:0 expected, got {pl.tags.get('#EXT-X-MEDIA-SEQUENCE')}")
        if pl.tags.get("#EXT-X-PLAYLIST-TYPE") != ["VOD"]:
            F(f"{r} #EXT-X-PLAYLIST-TYPE:VOD expected, got {pl.tags.get('#EXT-X-PLAYLIST-TYPE')}")
        if "#EXT-X-ENDLIST" not in pl.tags:
            F(f"{r} no #EXT-X-ENDLIST")
        elif pl.lines[-1] != "#EXT-X-ENDLIST":
            F(f"{r} #EXT-X-ENDLIST is not the last line")
        if not pl.segments:
            F(f"{r} playlist lists no segments")
            continue

        # ---- segment names, order, existence, no strays
        listed = []
        ok_files = True
        for i, (extinf, uri) in enumerate(pl.segments):
            if extinf is None or not math.isfinite(extinf) or extinf <= 0:
                F(f"{r} {uri}: #EXTINF missing, unparsable or not > 0 ({extinf})")
                pl.segments[i] = (0.0, uri)
            m = SEGMENT_NAME_RE.match(uri)
            if not m:
                F(f"{r} segment URI {uri!r} is not segment_NNN.ts")
                ok_files = False
            elif int(m.group(1)) != i:
                F(f"{r} segment #{i} is {uri} (expected index {i:03d}, in order)")
                ok_files = False
            if not (rdir / uri).is_file():
                F(f"{r} listed segment {uri} does not exist")
                ok_files = False
            listed.append(uri)
        on_disk = {p.name for p in rdir.iterdir()}
        for stray in sorted(on_disk - set(listed) - {"playlist.m3u8"}):
            F(f"{r} file {stray} present but not listed in playlist")
        if not ok_files:
            continue

        extinfs = [e for e, _ in pl.segments]
        if target is not None:
            for (e, uri) in pl.segments:
                if math.floor(e + 0.5) > target:
                    F(f"{r} {uri}: EXTINF {e:.3f} rounds above TARGETDURATION {target}")

        # ---- measure every segment
        try:
            ms = _pmap(measure_segment, [rdir / uri for _, uri in pl.segments])
        except (RuntimeError, ValueError) as exc:
            F(f"{r} ffprobe failed: {exc}")
            continue
        n = len(ms)
        for i, ((e, uri), m) in enumerate(zip(pl.segments, ms)):
            if i < n - 1:
                if abs(e - seg_s) > SEGMENT_TOL_S:
                    F(f"{r} {uri}: EXTINF {e:.3f} s not {seg_s} ± {SEGMENT_TOL_S}")
                if abs(m.duration - seg_s) > SEGMENT_TOL_S:
                    F(f"{r} {uri}: measured {m.duration:.3f} s not {seg_s} ± {SEGMENT_TOL_S}")
            else:
                # The last segment may be short, never long (no tail merged into it).
                if e > seg_s + SEGMENT_TOL_S:
                    F(f"{r} {uri}: last segment EXTINF {e:.3f} s > {seg_s} + {SEGMENT_TOL_S}")
                if m.duration > seg_s + SEGMENT_TOL_S:
                    F(f"{r} {uri}: last segment measured {m.duration:.3f} s > "
                      f"{seg_s} + {SEGMENT_TOL_S}")
                if m.duration <= 0:
                    F(f"{r} {uri}: last segment has no duration")
            if abs(e - m.duration) > EXTINF_VS_MEASURED_TOL_S:
                F(f"{r} {uri}: EXTINF {e:.3f} s but ffprobe measures {m.duration:.3f} s")
            if m.codec != "aac" or m.profile != "LC":
                F(f"{r} {uri}: codec {m.codec}/{m.profile}, expected aac/LC")
            if m.sample_rate != int(rung["sample_rate_hz"]):
                F(f"{r} {uri}: sample rate {m.sample_rate}, expected {rung['sample_rate_hz']}")
            if m.channels != int(rung["channels"]):
                F(f"{r} {uri}: {m.channels} channels, expected {rung['channels']}")

        # ---- timestamp continuity
        for k in range(n - 1):
            gap = ms[k + 1].first_pts - ms[k].end_pts
            if abs(gap) > CONTINUITY_TOL_S:
                F(f"{r} pts discontinuity {pl.segments[k][1]} -> {pl.segments[k + 1][1]}: "
                  f"ends {ms[k].end_pts:.3f}, next starts {ms[k + 1].first_pts:.3f} "
                  f"(gap {gap * 1000:+.0f} ms)")

        # ---- durations
        extinf_sum = sum(extinfs)
        if abs(extinf_sum - source_duration_s) > duration_tol_s:
            F(f"{r} sum of EXTINF {extinf_sum:.3f} s != source {source_duration_s:.3f} s "
              f"± {duration_tol_s}")
        meas_sum = sum(m.duration for m in ms)
        span = ms[-1].end_pts - ms[0].first_pts
        meas_tol = max(MEASURED_SUM_TOL_S, duration_tol_s + 0.05)
        for label, v in (("measured sum", meas_sum), ("measured pts span", span)):
            if abs(v - source_duration_s) > meas_tol:
                F(f"{r} {label} {v:.3f} s != source {source_duration_s:.3f} s ± {meas_tol:.2f}")

        # ---- bit rates
        nominal = float(rung["bitrate_kbps"]) * 1000
        total_bytes = sum(m.size for m in ms)
        wire = total_bytes * 8 / meas_sum if meas_sum > 0 else float("inf")
        limit = max(nominal * 1.15, nominal + 12000)
        if wire > limit:
            F(f"{r} on-the-wire {wire / 1000:.1f} kbit/s > limit {limit / 1000:.1f} "
              f"(nominal {nominal / 1000:.0f})")
        audio = sum(m.audio_bytes for m in ms) * 8 / meas_sum if meas_sum > 0 else 0
        too_low = audio_bitrate_floor and audio < nominal * (1 - AUDIO_BITRATE_TOL)
        if too_low or audio > nominal * (1 + AUDIO_BITRATE_TOL):
            F(f"{r} audio bit rate {audio / 1000:.1f} kbit/s not within "
              f"{AUDIO_BITRATE_TOL:.0%} of nominal {nominal / 1000:.0f}")
        peak_set = [m for m in ms]
        if n > 1 and ms[-1].duration < seg_s / 2:
            peak_set = ms[:-1]
        peak = max(m.size * 8 / m.duration for m in peak_set if m.duration > 0)
        measured[name] = {"peak": peak, "avg": wire}

        if decode:
            to_decode.append((f"{r} ffmpeg decode of playlist.m3u8", plpath))

    # ---- master playlist
    mpath = outdir / "master.m3u8"
    if decode and mpath.is_file():
        to_decode.append(("ffmpeg decode of master.m3u8", mpath))
    for (label, _), err in zip(to_decode, _pmap(ffmpeg_decode_errors, [p for _, p in to_decode])):
        if err:
            F(f"{label} not clean: {err}")
    if decode and source_path is not None:
        rung_pls = [p for _, p in to_decode if p.name == "playlist.m3u8"]
        levels = _pmap(rms_level_db, [source_path, *rung_pls])
        src_db = levels[0]
        if src_db is None:
            F(f"could not measure the RMS level of source {source_path}")
        else:
            for pl_path, db in zip(rung_pls, levels[1:]):
                if db is None or abs(db - src_db) > LEVEL_TOL_DB:
                    F(f"[{pl_path.parent.name}] decoded RMS level {db} dB vs source "
                      f"{src_db:.1f} dB (tolerance {LEVEL_TOL_DB} dB)")
    if not mpath.is_file():
        F("master.m3u8 missing")
        return fails
    mlines = [ln.strip() for ln in mpath.read_text(errors="replace").splitlines() if ln.strip()]
    if not mlines or mlines[0] != "#EXTM3U":
        F("master.m3u8 does not start with #EXTM3U")
    if "#EXT-X-INDEPENDENT-SEGMENTS" not in mlines:
        F("master.m3u8 lacks #EXT-X-INDEPENDENT-SEGMENTS")
    variants = []  # (attrs, uri)
    for i, ln in enumerate(mlines):
        if ln.startswith("#EXT-X-STREAM-INF:"):
            uri = mlines[i + 1] if i + 1 < len(mlines) else ""
            if uri.startswith("#"):
                uri = ""
            variants.append((parse_attributes(ln.partition(":")[2]), uri))
    by_uri = {}
    for attrs, uri in variants:
        by_uri.setdefault(uri, []).append(attrs)
    for uri in sorted(set(by_uri) - {f"{r['name']}/playlist.m3u8" for r in rungs}):
        F(f"master.m3u8: variant URI {uri!r} matches no rung")
    for rung in rungs:
        name = rung["name"]
        uri = f"{name}/playlist.m3u8"
        entries = by_uri.get(uri, [])
        if len(entries) != 1:
            F(f"master.m3u8: {len(entries)} #EXT-X-STREAM-INF for {uri}, expected exactly 1")
            continue
        a = entries[0]
        if a.get("CODECS") != '"mp4a.40.2"':
            F(f"master.m3u8 [{name}]: CODECS={a.get('CODECS')}, expected \"mp4a.40.2\"")
        for key in ("BANDWIDTH", "AVERAGE-BANDWIDTH"):
            if not re.fullmatch(r"\d+", a.get(key, "")):
                F(f"master.m3u8 [{name}]: {key}={a.get(key)!r} missing or not an integer")
        if name not in measured:
            continue
        peak, avg = measured[name]["peak"], measured[name]["avg"]
        if re.fullmatch(r"\d+", a.get("BANDWIDTH", "")):
            bw = int(a["BANDWIDTH"])
            if not (peak * (1 - BANDWIDTH_TOL) <= bw <= peak * (1 + BANDWIDTH_TOL)):
                F(f"master.m3u8 [{name}]: BANDWIDTH {bw} not within {BANDWIDTH_TOL:.0%} of "
                  f"measured peak segment rate {peak:.0f}")
        if re.fullmatch(r"\d+", a.get("AVERAGE-BANDWIDTH", "")):
            ab = int(a["AVERAGE-BANDWIDTH"])
            if abs(ab - avg) > BANDWIDTH_TOL * avg:
                F(f"master.m3u8 [{name}]: AVERAGE-BANDWIDTH {ab} not within "
                  f"{BANDWIDTH_TOL:.0%} of measured average {avg:.0f}")
    # Players rank and switch rungs by BANDWIDTH: a higher declared bit rate must
    # come out higher (an encoder that does not fill the rate on simple signals,
    # such as libav's "fast" AAC coder, can invert two rungs).
    declared = []
    for rung in rungs:
        entries = by_uri.get(f"{rung['name']}/playlist.m3u8", [])
        if len(entries) == 1 and re.fullmatch(r"\d+", entries[0].get("BANDWIDTH", "")):
            declared.append((rung["bitrate_kbps"], int(entries[0]["BANDWIDTH"]), rung["name"]))
    declared.sort()
    for (kb_lo, bw_lo, lo), (kb_hi, bw_hi, hi) in zip(declared, declared[1:]):
        if kb_hi > kb_lo and bw_hi <= bw_lo:
            F(f"master.m3u8: {hi} ({kb_hi} kbit/s declared) has BANDWIDTH {bw_hi}, "
              f"not above {lo}'s {bw_lo}")
    return fails


def format_failures(fails: list[str], limit=25) -> str:
    shown = fails[:limit]
    more = f"\n  ... and {len(fails) - limit} more" if len(fails) > limit else ""
    return f"{len(fails)} ladder check failure(s):\n  " + "\n  ".join(shown) + more


# --------------------------------------------------------------------------- reference ladder

def ffmpeg_ladder(input_path, outdir, ladder_toml_path, *, write_master=True) -> Path:
    """Make a ladder with plain ffmpeg in the Vessel layout (used by the checker self-test
    and as a reference). BANDWIDTH/AVERAGE-BANDWIDTH are computed from measurements."""
    outdir = Path(outdir)
    ladder = load_ladder(ladder_toml_path)
    outdir.mkdir(parents=True, exist_ok=True)
    seg = ladder["segment_duration_s"]
    for rung in ladder["rungs"]:
        rdir = outdir / rung["name"]
        rdir.mkdir(exist_ok=True)
        res = run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", input_path, "-map", "0:a:0",
                   "-c:a", "aac", "-b:a", f"{rung['bitrate_kbps']}k",
                   "-ar", rung["sample_rate_hz"], "-ac", rung["channels"],
                   "-f", "hls", "-hls_time", seg, "-hls_playlist_type", "vod",
                   "-hls_segment_filename", str(rdir / "segment_%03d.ts"),
                   str(rdir / "playlist.m3u8")], timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"ffmpeg ladder failed: {res.stderr.strip()}")
    if write_master:
        write_master_playlist(outdir, ladder)
    return outdir


def write_master_playlist(outdir, ladder) -> None:
    outdir = Path(outdir)
    seg_s = float(ladder["segment_duration_s"])
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rung in ladder["rungs"]:
        rdir = outdir / rung["name"]
        segs = sorted(rdir.glob("segment_*.ts"))
        ms = [measure_segment(s) for s in segs]
        pk = ms[:-1] if len(ms) > 1 and ms[-1].duration < seg_s / 2 else ms
        peak = max(m.size * 8 / m.duration for m in pk)
        avg = sum(m.size for m in ms) * 8 / sum(m.duration for m in ms)
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={round(peak)},'
                     f'AVERAGE-BANDWIDTH={round(avg)},CODECS="mp4a.40.2"')
        lines.append(f"{rung['name']}/playlist.m3u8")
    (outdir / "master.m3u8").write_text("\n".join(lines) + "\n")


def dir_listing(path) -> list[str]:
    path = Path(path)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def have_tools() -> bool:
    return bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


# --------------------------------------------------------------------------- unittest glue

_INPUT_CACHE = None


def cached_input(filename, duration_s, **kw) -> Path:
    """make_audio into a per-process cache dir (removed at exit); inputs are read-only
    for the tests, every test writes its output into its own TemporaryDirectory."""
    global _INPUT_CACHE
    if _INPUT_CACHE is None:
        _INPUT_CACHE = tempfile.TemporaryDirectory(prefix="vessel-inputs-")
        atexit.register(_INPUT_CACHE.cleanup)
    key = "_".join(f"{k}-{v}" for k, v in sorted(kw.items()) if k != "metadata")
    if kw.get("metadata"):
        key += "_tags"
    p = Path(_INPUT_CACHE.name) / f"{Path(filename).stem}_{duration_s:g}s_{key}{Path(filename).suffix}"
    if not p.exists():
        make_audio(p, duration_s, **kw)
    return p


def require_vessel():
    """For setUpModule: fail loudly (not skip) if the binary is missing."""
    if not have_tools():
        raise unittest.SkipTest("ffmpeg/ffprobe not installed")
    b = vessel_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise RuntimeError(f"vessel binary not found at {b} (set VESSEL_BIN)")


class VesselCase(unittest.TestCase):
    maxDiff = None

    def tmpdir(self) -> Path:
        td = tempfile.TemporaryDirectory(prefix=f"vessel-{self._testMethodName}-")
        self.addCleanup(td.cleanup)
        return Path(td.name)

    def vessel(self, args, env=None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
        try:
            res = run_vessel(args, env_extra=env, cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"vessel {' '.join(map(str, args))} did not finish within {timeout} s")
        self.assertGreaterEqual(res.returncode, 0,
                                f"vessel killed by signal {-res.returncode}\n{describe_result(res)}")
        return res

    def assertLadder(self, outdir, ladder_name, source_duration_s, **kw):
        fails = check_ladder(outdir, ladder_path(ladder_name), source_duration_s, **kw)
        self.assertEqual(fails, [], f"ladder {ladder_name} in {outdir}: " + format_failures(fails))

    def assertErrorLine(self, res, code, *mentions):
        msg = describe_result(res)
        self.assertGreaterEqual(res.returncode, 0, f"killed by signal\n{msg}")
        self.assertEqual(res.returncode, code, f"expected exit {code}\n{msg}")
        lines = res.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"stderr must be exactly one line\n{msg}")
        self.assertTrue(lines[0].startswith("vessel: error: "),
                        f"stderr must start with 'vessel: error: '\n{msg}")
        for m in mentions:
            self.assertIn(str(m).lower(), lines[0].lower(), f"error should name {m!r}\n{msg}")

    def transcode_ok(self, src, source_duration_s, ladder_name="hls-aac", args=(), env=None,
                     outdir=None, check=True, **check_kw) -> Path:
        """Run `vessel transcode [args] src OUT` in a fresh temp dir and check the ladder."""
        parent = self.tmpdir()
        out = outdir or parent / "out"
        before = dir_listing(out.parent)
        res = self.vessel(["transcode", *args, src, out], env=env, cwd=parent, timeout=180)
        self.assertEqual(res.returncode, 0, describe_result(res))
        after = dir_listing(out.parent)
        self.assertEqual(sorted(set(after) - set(before) - {out.name}), [],
                         "temp files left beside OUTDIR")
        if check:
            check_kw.setdefault("source_path", src)
            self.assertLadder(out, ladder_name, source_duration_s, **check_kw)
        return out

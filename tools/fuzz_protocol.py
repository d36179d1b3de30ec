#!/usr/bin/env python3
"""Fuzz the wire protocol: protocol.c under ASan+UBSan, and the Python host codec against the C one.

  .venv/bin/python tools/fuzz_protocol.py --frames 1000000 [--jobs 2] [--seed 1] [--differential 100000]

1. tools/fuzz_protocol.c is built with `cc -fsanitize=address,undefined -fno-sanitize-recover=all` and run
   for --frames random and mutated frames (split over --jobs processes with distinct seeds); any sanitizer
   report or broken invariant makes it exit non-zero.
2. --differential N blocks (random, valid, mutated) are decoded by pipeline/serial/framing.py and by
   protocol.c (ctypes); both must accept and reject the same blocks and agree on type, seq and payload.
With clang installed, --libfuzzer SECONDS also runs a coverage-guided libFuzzer session.
Writes benchmarks/results/fuzz_protocol.json (atomic) unless --no-json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline._io import write_json  # noqa: E402
from pipeline.errors import ToolMissingError  # noqa: E402
from pipeline.serial import framing as fr  # noqa: E402
from pipeline.serial.native import PROTOCOL_C, PROTOCOL_DIR, cache_dir, find_cc  # noqa: E402

FUZZ_C = ROOT / "tools" / "fuzz_protocol.c"
SAN_FLAGS = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def build_fuzzer(extra: list[str] | None = None, cc: str | None = None) -> Path:
    cc = cc or find_cc()
    flags = SAN_FLAGS + (extra or [])
    import hashlib
    key = hashlib.sha256(FUZZ_C.read_bytes() + PROTOCOL_C.read_bytes() + (PROTOCOL_DIR / "protocol.h").read_bytes()
                         + repr((cc, flags)).encode()).hexdigest()[:16]
    out = cache_dir() / f"protocol_fuzz-{key}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".protocol_fuzz-", dir=out.parent)
    os.close(fd)
    try:
        r = subprocess.run([cc, *flags, "-I", str(PROTOCOL_DIR), str(FUZZ_C), str(PROTOCOL_C), "-o", tmp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ToolMissingError(f"building the fuzz driver failed:\n{r.stderr.strip()}",
                                   hint="a gcc or clang with AddressSanitizer (libasan) is needed")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def run_sanitized(frames: int, jobs: int, seed: int) -> dict:
    exe = build_fuzzer()
    per = [frames // jobs + (1 if i < frames % jobs else 0) for i in range(jobs)]
    t0 = time.monotonic()
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    procs = [subprocess.Popen([str(exe), str(seed + i), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i, n in enumerate(per) if n]
    results, crashes = [], []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            crashes.append({"args": p.args[1:], "returncode": p.returncode, "stderr": err[-4000:]})
        else:
            results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.monotonic() - t0
    total = {k: sum(r[k] for r in results) for k in ("frames", "valid_frames", "bytes", "replies", "invokes",
                                                      "profiles")}
    return {"frames": total["frames"], "crashes": len(crashes), "crash_reports": crashes, "wall_s": round(wall, 2),
            "frames_per_s": round(total["frames"] / wall) if wall else None, "detail": total,
            "jobs": jobs, "seed": seed, "sanitizers": "address,undefined", "binary": str(exe)}


def _mutate(rng, b: bytearray) -> bytearray:
    for _ in range(int(rng.integers(1, 4))):
        op, pos = int(rng.integers(0, 5)), int(rng.integers(0, len(b) + 1))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            b.insert(pos, int(rng.integers(0, 256)))
        elif op == 2 and b and pos < len(b):
            del b[pos]
        elif op == 3:
            del b[pos:]
        else:
            b.insert(pos, 0)
    return b


def run_differential(n: int, seed: int) -> dict:
    """Python host decoder vs protocol.c decoder on the same blocks."""
    import numpy as np
    from pipeline.serial import native

    rng = np.random.default_rng(seed)
    agree = accepted = 0
    mismatches = []
    t0 = time.monotonic()
    for i in range(n):
        kind = rng.integers(0, 3)
        if kind == 0:
            block = bytes(rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8))
        else:
            payload = bytes(rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8))
            wire = bytearray(fr.encode_frame(int(rng.integers(0, 256)), int(rng.integers(0, 256)), payload)[:-1])
            block = bytes(_mutate(rng, wire) if kind == 2 else wire)
        block = block.split(b"\x00")[0]  # what a decoder sees between delimiters
        py = fr.decode_frame(block) if block else fr.BadFrame(fr.E_FRAMING, b"")
        rc, t, s, p = native.c_decode_frame(block) if block else (fr.E_FRAMING, 0, 0, b"")
        same = (isinstance(py, fr.Frame) and rc == 0 and (py.type, py.seq, py.payload) == (t, s, p)) or \
               (isinstance(py, fr.BadFrame) and rc != 0)
        agree += same
        accepted += rc == 0
        if not same and len(mismatches) < 5:
            mismatches.append({"block": block.hex(), "python": repr(py), "c": [rc, t, s, p.hex()]})
    return {"blocks": n, "agree": agree, "accepted": accepted, "mismatches": mismatches,
            "wall_s": round(time.monotonic() - t0, 2)}


def run_libfuzzer(seconds: int) -> dict | None:
    clang = shutil.which("clang")
    if not clang:
        return None
    exe = build_fuzzer(["-DOFA_LIBFUZZER", "-fsanitize=fuzzer"], cc=clang)
    r = subprocess.run([str(exe), f"-max_total_time={seconds}", "-print_final_stats=1"], capture_output=True,
                       text=True)
    return {"seconds": seconds, "returncode": r.returncode, "tail": r.stderr[-2000:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--differential", type=int, default=100_000, help="blocks for the Python-vs-C check")
    ap.add_argument("--libfuzzer", type=int, default=0, metavar="SECONDS", help="also run libFuzzer (clang)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_protocol.json"))
    args = ap.parse_args(argv)

    san = run_sanitized(args.frames, max(1, args.jobs), args.seed)
    print(f"sanitized fuzz: {san['frames']:,} frames ({san['detail']['valid_frames']:,} well-formed before "
          f"mutation), {san['crashes']} crashes, {san['wall_s']} s ({san['frames_per_s']:,} frames/s)")
    for c in san["crash_reports"]:
        print(f"CRASH {c['args']} rc={c['returncode']}\n{c['stderr']}", file=sys.stderr)
    diff = run_differential(args.differential, args.seed) if args.differential else None
    if diff:
        print(f"differential: {diff['agree']:,}/{diff['blocks']:,} blocks decoded alike by Python and C "
              f"({diff['accepted']:,} accepted), {diff['wall_s']} s")
    lf = run_libfuzzer(args.libfuzzer) if args.libfuzzer else None
    if args.libfuzzer and lf is None:
        print("libFuzzer: clang not installed, skipped")
    targets = [{"metric": "protocol.c frames fuzzed under ASan+UBSan with zero crashes", "baseline": None,
                "measured": san["frames"], "target": 1_000_000, "ratio": None,
                "met": san["crashes"] == 0 and san["frames"] >= 1_000_000}]
    if diff:
        targets.append({"metric": "blocks decoded alike by the Python host and protocol.c", "baseline": None,
                        "measured": diff["agree"], "target": diff["blocks"], "ratio": None,
                        "met": diff["agree"] == diff["blocks"]})
    result = {"sanitized": san, "differential": diff, "libfuzzer": lf, "targets": targets,
              "machine": platform.machine(), "nproc": os.cpu_count(), "torch_threads": None,
              "note": "no torch in this tool", "cc": find_cc(), "date": time.strftime("%Y-%m-%d")}
    if not args.no_json:
        write_json(args.out, result)
    ok = san["crashes"] == 0 and san["frames"] == args.frames and (diff is None or diff["agree"] == diff["blocks"])
    ok = ok and (lf is None or lf["returncode"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

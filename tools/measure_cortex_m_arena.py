#!/usr/bin/env python3
"""Check the arena margin rule on an emulated Cortex-M: the smallest tensor arena the generated firmware
(CMSIS-NN kernels, 32-bit TFLite Micro) runs with in QEMU, against the 64-bit host measurement and the
size `ofa-mcu codegen` writes into model_settings.h.

    TFLM_DIR=... .venv/bin/python tools/measure_cortex_m_arena.py --model model_int8.tflite \
        [--board qemu-mps2-an386] [--out benchmarks/results/cortex_m_arena.json]

Bisection over `make ARENA_BYTES=N` builds (16-byte steps); each probe boots the image in
qemu-system-arm and runs HELLO, one input and INVOKE through the host ProtocolClient (a too-small arena
makes the firmware answer INVOKE with an error). Needs arm-none-eabi-gcc, qemu-system-arm and a TFLM tree.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.codegen.qemu import invoke_once  # noqa: E402


def _build(fw: Path, tflm: str, arena: int | None) -> Path:
    for stale in (fw / "build" / "main.o", fw / "app.elf"):
        stale.unlink(missing_ok=True)  # ARENA_BYTES is a compile-time define: rebuild main.o
    args = ["make", "-C", str(fw), f"TFLM_DIR={tflm}", "app.elf"] + ([f"ARENA_BYTES={arena}"] if arena else [])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    return fw / "app.elf"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--report", help="export_report.json with the measured 64-bit arena (else measured now)")
    ap.add_argument("--board", default="qemu-mps2-an386")
    ap.add_argument("--tflm-dir", default=os.environ.get("TFLM_DIR"))
    ap.add_argument("--out", help="write the figures as JSON (atomically)")
    args = ap.parse_args()
    if not args.tflm_dir:
        ap.error("--tflm-dir or TFLM_DIR is required")

    from pipeline._io import read_json, write_json
    from pipeline.boards import load_board
    from pipeline.codegen import generate_firmware

    board = load_board(args.board)
    if not board.qemu_machine:
        ap.error(f"{board.id} has no QEMU machine")
    if args.report:
        report = read_json(args.report)
    else:
        from pipeline.export import measure_arena
        report = {"arena": {"min_arena_bytes": measure_arena(args.model).min_arena_bytes}}
    measured64 = report["arena"]["min_arena_bytes"]
    with tempfile.TemporaryDirectory(prefix="ofa-arena-") as tmp:
        fw = generate_firmware(args.model, board, Path(tmp) / "fw", report=report)
        generated = read_json(fw / "firmware.json")["arena_bytes"]
        if not invoke_once(_build(fw, args.tflm_dir, None), board.qemu_machine):
            print(f"the generated arena ({generated} B) is TOO SMALL on {board.id}")
            return 1
        lo, hi = 0, generated // 16  # in 16-byte units: lo fails (or is 0), hi works
        probes = 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok = invoke_once(_build(fw, args.tflm_dir, mid * 16), board.qemu_machine)
            probes += 1
            print(f"  arena {mid * 16:>8} B: {'runs' if ok else 'fails'}", flush=True)
            lo, hi = (lo, mid) if ok else (mid, hi)
        minimum32 = hi * 16
    result = {"model": str(args.model), "board": board.id, "core": board.core,
              "kernels": "cmsis_nn", "cortex_m_min_arena_bytes": minimum32,
              "host64_min_arena_bytes": measured64, "generated_arena_bytes": generated,
              "generated_over_cortex_m_min": round(generated / minimum32, 4),
              "host64_over_cortex_m_min": round(measured64 / minimum32, 4), "probes": probes,
              "machine": {"nproc": os.cpu_count(), "platform": platform.platform()}}
    print(f"{board.id}: Cortex-M minimum {minimum32} B (16-byte resolution), host 64-bit minimum {measured64} B, "
          f"generated {generated} B ({generated / minimum32:.3f}x the minimum)")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check the arena margin rule on an emulated Cortex-M: the smallest tensor arena the generated firmware
(CMSIS-NN kernels, 32-bit TFLite Micro) runs with in QEMU, against the 64-bit host measurement and the
size `ofa-mcu codegen` writes into model_settings.h.

    TFLM_DIR=... .venv/bin/python tools/measure_cortex_m_arena.py --model model_int8.tflite \
        [--board qemu-mps2-an386] [--out benchmarks/results/cortex_m_arena.json]

Bisection over `make ARENA_BYTES=N` builds (16-byte steps, pipeline.codegen.qemu.min_arena_on_target);
each probe boots the image in qemu-system-arm and runs HELLO, one input and INVOKE through the host
ProtocolClient (a too-small arena makes the firmware answer INVOKE with an error). Needs arm-none-eabi-gcc,
qemu-system-arm and a TFLM tree. benchmarks/bench_firmware_arena.py runs it over several models and cores.
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

from pipeline.codegen.qemu import min_arena_on_target  # noqa: E402


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
        manifest = read_json(fw / "firmware.json")
        generated = manifest["arena_bytes"]
        predicted = manifest.get("arena_base_bytes")
        minimum32, probes = min_arena_on_target(fw, board.qemu_machine, args.tflm_dir, generated,
                                                log=lambda m: print(m, flush=True))
    result = {"model": str(args.model), "board": board.id, "core": board.core,
              "kernels": "cmsis_nn", "cortex_m_min_arena_bytes": minimum32,
              "host64_min_arena_bytes": measured64, "generated_arena_bytes": generated,
              "predicted_cortex_m_min_bytes": predicted, "slack_bytes": generated - minimum32,
              "generated_over_cortex_m_min": round(generated / minimum32, 4),
              "host64_over_cortex_m_min": round(measured64 / minimum32, 4), "probes": probes,
              "machine": {"nproc": os.cpu_count(), "platform": platform.platform()}}
    print(f"{board.id}: Cortex-M minimum {minimum32} B in QEMU (16-byte resolution), host 64-bit minimum "
          f"{measured64} B, predicted {predicted} B, reserved {generated} B (slack {generated - minimum32} B)")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

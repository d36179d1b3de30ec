"""The tensor arena the firmware reserves against the true minimum on the target (issue 12.7).

For every (emulated board, model): generate the firmware (its arena: codegen's predicted 32-bit Cortex-M
minimum plus the fixed slack), then find the smallest arena the real firmware (TFLite Micro + CMSIS-NN)
runs the model in, in QEMU, to 16 bytes (pipeline.codegen.qemu.min_arena_on_target: `make ARENA_BYTES=N`
rebuilds only arena.cc; each probe boots the ELF and asks for one inference). Target: minimum <= reserved
and reserved - minimum <= slack (<= max(256 B, 1%)).

    TFLM_DIR=... .venv/bin/python benchmarks/bench_firmware_arena.py [--tflm-dir DIR] \
        [--boards qemu-mps2-an386 qemu-mps2-an500] [--models extra.tflite ...] \
        [--out benchmarks/results/bench_firmware_arena.json]

Models: three tiny int8 models built in code (8x8x1 digits, 16x16x3, a MobileNetV2 block with a 5x5
depthwise) plus any --models (e.g. TFLM's person_detect.tflite, MLPerf Tiny's kws_ref_model.tflite and
pretrainedResnet_quant.tflite; never committed).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from pipeline._io import read_json, write_json  # noqa: E402

SLACK_LIMIT_BYTES, SLACK_LIMIT_FRACTION = 256, 0.01


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflm-dir", default=os.environ.get("TFLM_DIR"))
    ap.add_argument("--boards", nargs="+", default=["qemu-mps2-an386", "qemu-mps2-an500"])
    ap.add_argument("--models", nargs="*", default=[], help="more .tflite files (int8, NHWC image input)")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_firmware_arena.json"))
    args = ap.parse_args()
    if not args.tflm_dir:
        ap.error("--tflm-dir or TFLM_DIR is required (a TensorFlow Lite Micro tree)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench_firmware_flash import tiny_models

    from pipeline.boards import load_board
    from pipeline.codegen import generate_firmware
    from pipeline.codegen.qemu import min_arena_on_target

    rows = []
    with tempfile.TemporaryDirectory(prefix="ofa-arena-") as tmp:
        tmp = Path(tmp)
        models = tiny_models(tmp) + [Path(m) for m in args.models]
        for board_id in args.boards:
            board = load_board(board_id)
            for model in models:
                t0 = time.monotonic()
                fw = generate_firmware(model, board, tmp / f"{board_id}-{model.stem}")
                manifest = read_json(fw / "firmware.json")
                reserved, predicted = manifest["arena_bytes"], manifest.get("arena_base_bytes")
                minimum, probes = min_arena_on_target(fw, board.qemu_machine, args.tflm_dir, reserved)
                limit = max(SLACK_LIMIT_BYTES, int(SLACK_LIMIT_FRACTION * minimum))
                row = {"board": board_id, "core": board.core, "model": model.name,
                       "arena_source": manifest.get("arena_source"), "predicted_min_bytes": predicted,
                       "reserved_bytes": reserved, "qemu_min_bytes": minimum, "slack_bytes": reserved - minimum,
                       "slack_limit_bytes": limit, "fits": minimum <= reserved,
                       "slack_ok": minimum <= reserved and reserved - minimum <= limit + 16,
                       "predicted_minus_min_bytes": None if predicted is None else predicted - minimum,
                       "probes": probes, "seconds": round(time.monotonic() - t0, 1)}
                rows.append(row)
                print(f"{board_id:<16} {model.name:<26} min in QEMU {minimum:>7} B, predicted {predicted} B, "
                      f"reserved {reserved:>7} B, slack {reserved - minimum:>6} B "
                      f"({'ok' if row['slack_ok'] else 'over'} <= {limit}), {probes} probes", flush=True)
    result = {"rows": rows, "models": len({r["model"] for r in rows}), "boards": args.boards,
              "all_fit": all(r["fits"] for r in rows), "all_slack_ok": all(r["slack_ok"] for r in rows),
              "max_slack_bytes": max(r["slack_bytes"] for r in rows),
              "measured_on": "firmware in QEMU (TFLite Micro + CMSIS-NN, 32-bit), bisected to 16 B",
              "machine": {"nproc": os.cpu_count(), "platform": platform.platform()}}
    print(f"all fit: {result['all_fit']}; slack within the limit: {result['all_slack_ok']} "
          f"(max slack {result['max_slack_bytes']} B)")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MLPerf Tiny reference models through codegen and `check`: board outputs equal to the host's.

Takes the .tflite files as arguments (they are not part of this repository; mlcommons/tiny has them under
benchmark/training/*/trained_models/: kws_ref_model.tflite, vww_96_int8.tflite, pretrainedResnet_quant.tflite,
ad01_int8.tflite). For each: seeded synthetic npz data shaped and typed like the model input (labels for a
classifier, none for the autoencoder), `ofa-mcu codegen`, then `check` on the virtual board over the binary
and the EEMBC protocol; with --qemu (needs TFLM_DIR, arm-none-eabi-gcc, qemu-system-arm) also the real
firmware in QEMU (binary protocol, and EEMBC through a PROTOCOL=BOTH build).

    python benchmarks/bench_mlperf_tiny.py M/kws_ref_model.tflite M/vww_96_int8.tflite M/ad01_int8.tflite ...
    TFLM_DIR=/path/to/tflite-micro python benchmarks/bench_mlperf_tiny.py --qemu --limit 10 M/*.tflite

Baseline: none (the property is exactness: share of samples whose outputs equal the host TFLite Micro's).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
RESULTS = HERE / "results" / "bench_mlperf_tiny.json"
BOARD = "qemu-mps2-an386"


def synthetic_npz(model, path: Path, n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    dt = {"INT8": np.int8, "INT16": np.int16}[model.input.dtype]
    info = np.iinfo(dt)
    x = rng.integers(info.min, info.max + 1, size=(n, *model.input.shape[1:]), dtype=dt)
    arrays = {"x": x}
    outputs = model.output.num_elements
    if outputs != model.input.num_elements:  # a classifier: labels and the class count
        arrays["y"] = rng.integers(0, outputs, size=n)
        arrays["class_names"] = np.array([str(i) for i in range(outputs)])
    np.savez(path, **arrays)
    return f"npz:{path}"


def _row(rep: dict) -> dict:
    a = rep["agreement"]
    return {"metric": rep["metric"], "samples": rep["samples"], "exact": a["exact_logits"],
            "agreeing": a["samples_agreeing"], "latency_ms_median": rep["latency"]["ms"].get("median"),
            "latency_source": rep["latency"]["source"], "passed": rep["gate"]["passed"]}


def main() -> int:
    from pipeline.codegen import generate_firmware
    from pipeline.serial import check
    from pipeline.serial.sim import SimOptions
    from pipeline.tflite.model_info import inspect_tflite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path, help="the .tflite files (none: nothing to run)")
    ap.add_argument("--limit", type=int, default=20, help="samples per model (default 20)")
    ap.add_argument("--qemu", action="store_true", help="also build the firmware and check it in QEMU")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.models:  # run_all.py calls every benchmark without arguments
        print("bench_mlperf_tiny: skipped, pass the MLPerf Tiny .tflite files as arguments "
              "(they are not part of this repository)")
        return 0
    quiet = dict(progress=False, log=lambda *a, **k: None)
    work = Path(tempfile.mkdtemp(prefix="ofa-mcu-mlperf-"))
    results, targets = {}, []
    for path in args.models:
        model = inspect_tflite(path)
        name = path.stem
        spec = synthetic_npz(model, work / f"{name}.npz", args.limit)
        fw = generate_firmware(path, BOARD, work / name / "fw")
        res = {"input": [list(model.input.shape), model.input.dtype], "output": [list(model.output.shape),
                                                                               model.output.dtype]}
        for proto in ("binary", "eembc"):
            rep = check("sim", path, spec, out_dir=work / name / f"sim-{proto}", gate=1.0, protocol=proto,
                        sim_options=SimOptions(baud=921600), **quiet)
            res[f"virtual board, {proto}"] = _row(rep)
        if args.qemu:
            from firmware_helpers import start_qemu, stop_qemu
            import serial

            r = subprocess.run(["make", "-C", str(fw), f"TFLM_DIR={os.environ['TFLM_DIR']}", "PROTOCOL=BOTH",
                                "-j2"], capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"{name}: make failed\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
            for proto in ("binary", "eembc"):
                proc, pty = start_qemu(fw / "app.elf", "mps2-an386")
                try:
                    port = serial.Serial(pty, baudrate=115200, timeout=0.05)
                    proc.stdin.write("cont\n")
                    proc.stdin.flush()
                    rep = check(port, path, spec, out_dir=work / name / f"qemu-{proto}", board=BOARD, gate=1.0,
                                timeout_s=5.0, protocol=proto, **quiet)
                finally:
                    stop_qemu(proc)
                res[f"firmware in QEMU, {proto}"] = _row(rep)
        results[name] = res
        for where, row in res.items():
            if isinstance(row, dict):
                print(f"{name:24s} {where:28s} {row['metric']:4s} exact {row['exact']:.2%} "
                      f"agreeing {row['agreeing']:.2%} ({row['samples']} samples)")
                targets.append({"metric": f"{name}: outputs equal to host TFLM, {where}", "baseline": None,
                                "measured": row["exact"], "target": ">= 1.0", "ratio": None,
                                "met": row["exact"] >= 1.0})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"models": results, "targets": targets, "limit": args.limit,
                                    "when": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Keyword spotting end to end in one `ofa-mcu deploy`: a supernet on 49x40 spectrograms of the
espeak-ng keyword dataset (builtin:keywords: 10 keywords + silence + unknown, TFLite Micro's audio frontend),
search for the emulated Cortex-M4 board, int8 export, codegen, check on the board's virtual twin.

    python benchmarks/bench_kws.py                          # builtin:keywords, default schedule
    python benchmarks/bench_kws.py --data builtin:keywords-small --schedule tiny.json
    python benchmarks/bench_kws.py --from-run runs/kws --wall-s 1234   # read a finished deploy run

Reports: wall time per stage, test accuracy of the largest and smallest subnet (host float, after BN
re-calibration), the deployed subnet's float / int8 (TFLite Micro on the host) accuracy and int8 drop, and
the board check's agreement. Baseline: none in the same run (chance level, 1 / classes, is printed for
scale). Measured where each figure says: host runtime (train, export), virtual board (check).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_kws.json"
BOARD = "qemu-mps2-an386"


def _stages(run: Path) -> dict:
    out = {}
    for f in (run / "stages.json", run / "boards" / BOARD / "stages.json"):
        if f.exists():
            for k, v in json.loads(f.read_text()).items():
                out[k] = round(v["seconds"], 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin:keywords")
    ap.add_argument("--schedule", help="training schedule JSON (default: the built-in one)")
    ap.add_argument("--from-run", type=Path)
    ap.add_argument("--wall-s", type=float)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    if args.from_run:
        run, wall = args.from_run, args.wall_s
    else:
        run = Path(tempfile.mkdtemp(prefix="ofa-mcu-kws-")) / "kws"
        cmd = [sys.executable, "-m", "pipeline.cli", "deploy", "--board", BOARD, "--data", args.data,
               "--run", str(run), "--quiet"] + (["--schedule", args.schedule] if args.schedule else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=HERE.parent, env=dict(os.environ, OMP_NUM_THREADS="1"))
        wall = time.perf_counter() - t0
    summary = json.loads((run / "supernet" / "summary.json").read_text())
    export = json.loads((run / "boards" / BOARD / "export_report.json").read_text())
    check = json.loads((run / "boards" / BOARD / "check_report.json").read_text())
    classes = summary["dataset"]["num_classes"]
    acc = export["accuracy"]
    result = {
        "data": summary["data"], "classes": classes, "input": summary["dataset"]["native_resolution"],
        "samples": summary["dataset"]["num_samples"], "epochs": summary["epochs"],
        "threads": summary["threads"], "wall_s": round(wall, 1) if wall else None, "stages_s": _stages(run),
        "largest": summary["final"]["largest"], "smallest": summary["final"]["smallest"],
        "chance": round(1 / classes, 4),
        "deployed": {"arch": export["arch"]["id"], "float": acc["float"], "int8_tflm": acc["int8_tflm"],
                     "int8_drop_points": acc["drop_points"], "argmax_agreement_float_int8": acc["argmax_agreement"]},
        "board_check": check["summary"],
        "where": {"train/export accuracy": "host runtime (PyTorch float, TFLite Micro int8)",
                  "check": "virtual board (TFLite Micro reference kernels, simulated latency)"},
        "machine": {"cpus": os.cpu_count(), "load_avg_before": round(load_before, 2), "python": platform.python_version()},
        "run": str(run),
    }
    big, small = summary["final"]["largest"]["test_acc"], summary["final"]["smallest"]["test_acc"]
    result["targets"] = [
        {"metric": f"ofa-mcu deploy end to end on {summary['data']} (s, {summary['threads']} thread)",
         "baseline": None, "measured": result["wall_s"], "target": None, "ratio": None, "met": None},
        {"metric": "KWS supernet test acc after BN recal, largest (host float)", "baseline": result["chance"],
         "measured": big, "target": "> chance", "ratio": round(big / result["chance"], 2),
         "met": big > result["chance"]},
        {"metric": "KWS supernet test acc after BN recal, smallest (host float)", "baseline": result["chance"],
         "measured": small, "target": "> chance", "ratio": round(small / result["chance"], 2),
         "met": small > result["chance"]},
        {"metric": "KWS deployed subnet int8 drop (points, TFLM host vs float)", "baseline": None,
         "measured": acc["drop_points"], "target": "<= 2", "ratio": None, "met": acc["drop_points"] <= 2},
        {"metric": "KWS board check: argmax agreement with host int8 (virtual board)", "baseline": None,
         "measured": check["agreement"]["argmax"], "target": ">= 0.99", "ratio": None,
         "met": check["agreement"]["argmax"] >= 0.99},
    ]
    rows = [("wall time (s)", result["wall_s"]), ("train (s)", result["stages_s"].get("train")),
            ("largest test acc (host float)", summary["final"]["largest"]["test_acc"]),
            ("smallest test acc (host float)", summary["final"]["smallest"]["test_acc"]),
            ("chance", result["chance"]),
            ("deployed float acc", acc["float"]), ("deployed int8 acc (TFLM host)", acc["int8_tflm"]),
            ("int8 drop (points)", acc["drop_points"])]
    for name, value in rows:
        print(f"{name:34s} {value}")
    print(check["summary"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

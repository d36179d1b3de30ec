"""Predicted arena of third-party models (`ofa-mcu inspect`) vs the true minimum.

For every .tflite in --models DIR (e.g. the MLPerf Tiny reference models IC/KWS/VWW/AD from
github.com/mlcommons/tiny and TFLM's person_detect, micro_speech and hello_world examples):
  - 64-bit host runtime: predicted (`pipeline.costs.predict_arena`) vs the true minimum, bisected to the
    byte with `pipeline.export.measure_arena` (the `tflite_micro` Python runtime, one child process per
    probe, outputs checked bit for bit against a generous arena);
  - 32-bit Cortex-M with CMSIS-NN: predicted for --core; the true minimum when a JSON written by
    tools/measure_cortex_m_arena.py (firmware in QEMU) is given for that model with --cortex-m FILE...,
    otherwise the figure is marked model-derived.
Target: predicted within 1 % of the true minimum and never under. Writes
benchmarks/results/bench_inspect_arena.json.

    python benchmarks/bench_inspect_arena.py --models DIR [--core cortex-m4] [--cortex-m kws_m4.json ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline._io import write_json  # noqa: E402
from pipeline.costs import predict_arena  # noqa: E402
from pipeline.export import measure_arena  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_inspect_arena.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True)
    ap.add_argument("--core", default="cortex-m4")
    ap.add_argument("--cortex-m", nargs="*", default=[], metavar="JSON",
                    help="results of tools/measure_cortex_m_arena.py (firmware in QEMU)")
    args = ap.parse_args()
    qemu = {}
    for f in args.cortex_m:
        d = json.loads(Path(f).read_text())
        qemu[(Path(d["model"]).name, d["core"])] = d
    rows = []
    for path in sorted(Path(args.models).glob("*.tflite")):
        pred = predict_arena(path, args.core)
        true = measure_arena(path).min_arena_bytes
        q = qemu.get((path.name, args.core))
        row = {"model": path.name, "host_predicted_bytes": pred.host_bytes, "host_true_min_bytes": true,
               "host_ratio": round(pred.host_bytes / true, 4), "host_under": pred.host_bytes < true,
               "cortex_m_core": args.core, "cortex_m_predicted_bytes": pred.cortex_m_bytes,
               "cortex_m_true_min_bytes": q["cortex_m_min_arena_bytes"] if q else None,
               "cortex_m_where": "firmware in QEMU" if q else "model-derived (no QEMU measurement given)"}
        if q:
            row["cortex_m_ratio"] = round(pred.cortex_m_bytes / q["cortex_m_min_arena_bytes"], 4)
        rows.append(row)
        print(f"{path.name:32} host predicted {pred.host_bytes:>7} true {true:>7} ({row['host_ratio']:.4f})"
              f"   {args.core} predicted {pred.cortex_m_bytes:>7}"
              + (f" true {q['cortex_m_min_arena_bytes']:>7} ({row['cortex_m_ratio']:.4f})" if q else " (model-derived)"),
              flush=True)
    worst = max(r["host_ratio"] for r in rows)
    under = sum(r["host_under"] for r in rows)
    within = all(1.0 <= r["host_ratio"] <= 1.01 for r in rows)
    print(f"host: worst ratio {worst:.4f}, under-predictions {under}/{len(rows)}, all within [1, 1.01]: {within}")
    targets = [{"metric": f"host arena predicted / true minimum, {len(rows)} third-party models (worst)",
                "measured": worst, "target": "[1.0, 1.01]", "met": within}]
    cm = [r for r in rows if r.get("cortex_m_ratio") is not None]
    if cm:
        ok = all(1.0 <= r["cortex_m_ratio"] <= 1.01 for r in cm)
        targets.append({"metric": f"Cortex-M arena predicted / true minimum in QEMU, {len(cm)} models (worst)",
                        "measured": max(r["cortex_m_ratio"] for r in cm), "target": "[1.0, 1.01]", "met": ok})
    write_json(RESULTS, {"rows": rows, "targets": targets,
                         "where": "host: tflite_micro Python runtime (x86-64); Cortex-M: firmware in QEMU when given",
                         "machine": {"nproc": os.cpu_count(), "threads": 1, "platform": platform.platform()}})
    print(f"wrote {RESULTS}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the export stage on N seeded random archs of a trained supernet.

Per arch: export time (whole stage: BN re-calibration, ONNX, onnx2tf, int8 quantization, crosscheck,
arena probing), int8 accuracy drop, TFLM-vs-TFLite bit-exactness, the measured minimum arena against
the baseline of the analytic floor (arena / floor), and model bytes.

    .venv/bin/python benchmarks/bench_export.py --supernet runs/digits/supernet [--n 20] [--seed 0]

Targets (issue 4): bit-exact 100 %; mean drop <= 0.5 point; arena / floor <= 1.15; <= 30 s per subnet.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline._io import read_json, write_json  # noqa: E402
from pipeline.errors import AccuracyGateError  # noqa: E402
from pipeline.export import export_subnet, tool_versions  # noqa: E402
from pipeline.export.stage import REPORT_NAME  # noqa: E402
from pipeline.supernet import load_supernet, macs  # noqa: E402

TARGETS = {"bit_exact_rate": 1.0, "mean_drop_points": 0.5, "arena_over_floor": 1.15, "export_s": 30.0}


def run(supernet: Path, n: int, seed: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    space = load_supernet(supernet).space
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for i, arch in enumerate(archs):
            out = Path(tmp) / f"{i:02d}"
            t = time.perf_counter()
            try:
                rep = export_subnet(supernet, arch, out, seed=seed)
            except AccuracyGateError:
                rep = read_json(out / REPORT_NAME)  # written before the gate raised
            wall = time.perf_counter() - t
            a, acc, cc = rep["arena"], rep["accuracy"], rep["crosscheck"]
            rows.append({
                "arch": str(arch), "resolution": arch.resolution, "macs": macs(space, arch),
                "export_s": round(wall, 2), "convert_s": round(rep["timings_s"]["tflite_convert"], 2),
                "float_acc": acc["float"], "int8_acc": acc["int8_tflm"], "drop_points": acc["drop_points"],
                "agreement": acc["argmax_agreement"], "bit_exact": cc["mismatches"] == 0,
                "bit_exact_samples": cc["bit_exact_samples"], "samples": cc["num_samples"],
                "arena_bytes": a["min_arena_bytes"], "head_bytes": a["head_bytes"], "tail_bytes": a["tail_bytes"],
                "recorded_total_bytes": a["recorded_total_bytes"], "floor_bytes": a["floor_bytes"],
                "arena_over_floor": a["arena_over_floor"], "head_over_floor": a["head_over_floor"],
                "arena_probes": len(a["probes"]), "model_bytes": rep["model_bytes"], "passed": rep["passed"]})
            r = rows[-1]
            print(f"[{i + 1:2d}/{n}] {r['arch']:<58} {r['export_s']:5.1f}s drop {r['drop_points']:+5.2f} "
                  f"arena {r['arena_bytes']:>7} floor {r['floor_bytes']:>7} ({r['arena_over_floor']:.3f}, "
                  f"head {r['head_over_floor']:.3f}) {r['model_bytes']:>7} B", flush=True)

    col = lambda k: np.array([r[k] for r in rows], dtype=float)  # noqa: E731
    summary = {
        "n": n, "bit_exact_rate": float(np.mean([r["bit_exact"] for r in rows])),
        "mean_drop_points": float(col("drop_points").mean()), "max_drop_points": float(col("drop_points").max()),
        "gate_failures": int(sum(not r["passed"] for r in rows)),
        "mean_arena_over_floor": float(col("arena_over_floor").mean()),
        "max_arena_over_floor": float(col("arena_over_floor").max()),
        "mean_head_over_floor": float(col("head_over_floor").mean()),
        "max_head_over_floor": float(col("head_over_floor").max()),
        "mean_tail_share": float((col("tail_bytes") / col("arena_bytes")).mean()),
        "recorded_total_vs_min_max_shortfall_bytes": int((col("arena_bytes") - col("recorded_total_bytes")).max()),
        "mean_export_s": float(col("export_s").mean()), "max_export_s": float(col("export_s").max()),
        "mean_model_bytes": float(col("model_bytes").mean()),
        "mean_float_acc": float(col("float_acc").mean()), "mean_int8_acc": float(col("int8_acc").mean()),
    }
    summary["targets"] = {
        "bit_exact_rate": {"target": ">= 1.0", "value": summary["bit_exact_rate"],
                           "met": summary["bit_exact_rate"] >= TARGETS["bit_exact_rate"]},
        "mean_drop_points": {"target": "<= 0.5", "value": summary["mean_drop_points"],
                             "met": summary["mean_drop_points"] <= TARGETS["mean_drop_points"]},
        "arena_over_floor (whole arena, max)": {"target": "<= 1.15", "value": summary["max_arena_over_floor"],
                                                "met": summary["max_arena_over_floor"] <= TARGETS["arena_over_floor"]},
        "head_over_floor (planned activations, max)": {
            "target": "<= 1.15", "value": summary["max_head_over_floor"],
            "met": summary["max_head_over_floor"] <= TARGETS["arena_over_floor"]},
        "export_s (max)": {"target": "<= 30", "value": summary["max_export_s"],
                           "met": summary["max_export_s"] <= TARGETS["export_s"]},
    }
    sn_summary = supernet / "summary.json"
    return {"benchmark": "bench_export", "baseline": "analytic activation floor (MCUNet peak-SRAM rule)",
            "supernet": str(supernet), "supernet_summary": read_json(sn_summary) if sn_summary.exists() else None,
            "seed": seed, "torch_threads": torch.get_num_threads(), "nproc": os.cpu_count(),
            "loadavg_start": None, "machine": platform.platform(), "python": platform.python_version(),
            "tool_versions": tool_versions(), "summary": summary, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", type=Path, default=Path("runs/digits/supernet"))
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_export.json")
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    t = time.perf_counter()
    result = run(args.supernet, args.n, args.seed, args.threads)
    result["loadavg_start"] = [round(v, 2) for v in load0]
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - t, 1)
    write_json(args.out, result)
    s = result["summary"]
    print(f"\n{'metric':<44} {'value':>10}  target   met")
    for k, v in s["targets"].items():
        print(f"{k:<44} {v['value']:>10.3f}  {v['target']:<8} {'yes' if v['met'] else 'NO'}")
    print(f"{'mean arena / floor (whole arena)':<44} {s['mean_arena_over_floor']:>10.3f}")
    print(f"{'mean head / floor (planned activations)':<44} {s['mean_head_over_floor']:>10.3f}")
    print(f"{'mean tail share of the arena':<44} {s['mean_tail_share']:>10.3f}")
    print(f"{'mean export time (s)':<44} {s['mean_export_s']:>10.1f}")
    print(f"{'mean float / int8 accuracy':<44} {s['mean_float_acc']:>5.3f} / {s['mean_int8_acc']:.3f}")
    print(f"wrote {args.out} (torch threads {result['torch_threads']}, nproc {result['nproc']}, "
          f"load {result['loadavg_start']} -> {result['loadavg_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

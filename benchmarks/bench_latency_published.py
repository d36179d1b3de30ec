"""Latency model vs published latencies: estimate / published for every (model, board, TFLM-based runtime).

The published figures and the fitted coefficients are data in pipeline/costs/latency_published.yaml
(sources there). This script
  1. recomputes each reference model's work per latency class from the .tflite files in --models DIR
     (the MLPerf Tiny reference models: pretrainedResnet_quant.tflite, kws_ref_model.tflite,
     vww_96_int8.tflite, ad01_int8.tflite, from github.com/mlcommons/tiny) and checks it against the
     YAML's `models` section (with --update, rewrites nothing there: it says what differs);
  2. refits the coefficients from the YAML (`fit_published`) and checks they equal the committed ones
     (with --update, writes them);
  3. estimates every TFLM-based measurement on a shipped board with `inspect_model` (the per-op function
     the search uses) at the published clock, prints estimate / published, the leave-one-out ratios,
     and the cross-core cycle factors; writes benchmarks/results/bench_latency_published.json.

    python benchmarks/bench_latency_published.py --models /tmp/mlperf_tiny_models [--update]
Pure Python, single-threaded, about a second.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline._io import write_json  # noqa: E402
from pipeline.boards import list_boards  # noqa: E402
from pipeline.costs.graph import graph_from_tflite  # noqa: E402
from pipeline.costs.latency import (DEFAULT_COEFFICIENTS, fit_published, op_class, op_work,  # noqa: E402
                                    published_data, write_published_fit)
from pipeline.costs.model_costs import inspect_model  # noqa: E402
from pipeline.tflite import inspect_tflite  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_latency_published.json"
LO, HI = 0.67, 1.5


def class_work(path: Path) -> dict[str, list[int]]:
    g = graph_from_tflite(inspect_tflite(path))
    out: dict[str, list[int]] = {}
    for op in g.ops:
        c = op_class(g, op)
        n, w = out.get(c, [0, 0])
        out[c] = [n + 1, w + op_work(g, op)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="folder with the MLPerf Tiny reference .tflite files")
    ap.add_argument("--update", action="store_true", help="write a fresh fit into latency_published.yaml")
    args = ap.parse_args()
    data = published_data()
    models_dir = Path(args.models)

    work_ok = True
    for key, m in data["models"].items():
        path = models_dir / Path(m["file"]).name
        if not path.exists():
            print(f"missing {path}: pass the folder holding {Path(m['file']).name}")
            return 2
        got = class_work(path)
        want = {c: list(v) for c, v in m["classes"].items()}
        if got != want:
            work_ok = False
            print(f"{key}: work per class in the YAML {want} differs from the file {got}: update the YAML")

    fit = fit_published(data)
    committed = {c: {k: tuple(v) for k, v in t.items()} for c, t in DEFAULT_COEFFICIENTS.items()}
    fresh = {c: {k: tuple(v) for k, v in t.items()} for c, t in fit["coefficients"].items()}
    if fresh != committed:
        if args.update:
            write_published_fit(fit)
            print("wrote the fresh fit into pipeline/costs/latency_published.yaml")
        else:
            print("the committed coefficients differ from a fresh fit: rerun with --update")
            return 1

    boards = {b.id: b for b in list_boards()}
    rows, unshipped = [], []
    for m in data["measurements"]:
        if not m["tflm_based"]:
            continue
        shipped = m["board"] in boards
        # A part without a board file is estimated as a board of the same core (only core and clock
        # matter for latency); the published run's clock is used, not the board file's.
        board = boards[m["board"]] if shipped else next(b for b in boards.values() if b.core == m["core"])
        at_clock = replace(board, clock_hz=m["clock_hz"])
        c = inspect_model(models_dir / Path(data["models"][m["model"]]["file"]).name, at_clock)
        ratio = c.latency_ms / m["latency_ms"]
        row = {"model": m["model"], "board": m["board"], "mcu": m["mcu"], "core": board.core,
               "clock_hz": m["clock_hz"], "runtime": m["runtime"], "round": m["round"], "path": m["path"],
               "published_ms": m["latency_ms"], "estimate_ms": round(c.latency_ms, 3),
               "ratio": round(ratio, 4), "in_target": LO <= ratio <= HI}
        if shipped:
            row["leave_one_out_ratio"] = next(r["ratio"] for r in fit["leave_one_out"] if r["model"] == m["model"])
            rows.append(row)
        else:
            unshipped.append(row)

    print(f"{'model':<5} {'board':<15} {'core':<10} {'MHz':>4} {'runtime':<22} {'published':>10} {'estimate':>10} "
          f"{'ratio':>6} {'LOO':>6}")
    for r in rows:
        print(f"{r['model']:<5} {r['board']:<15} {r['core']:<10} {r['clock_hz'] / 1e6:>4.0f} {r['runtime']:<22} "
              f"{r['published_ms']:>8.2f}ms {r['estimate_ms']:>8.2f}ms {r['ratio']:>6.3f} {r['leave_one_out_ratio']:>6.3f}")
    if unshipped:
        print("out-of-sample: TFLM-based figures on parts without a board file (not fitted)")
        for r in unshipped:
            print(f"{r['model']:<5} {r['board']:<15} {r['core']:<10} {r['clock_hz'] / 1e6:>4.0f} {r['runtime']:<22} "
                  f"{r['published_ms']:>8.2f}ms {r['estimate_ms']:>8.2f}ms {r['ratio']:>6.3f}")
    per_mac = {core: t["pw"][1] for core, t in fit["coefficients"].items()}
    print("cycles per MAC (pointwise) per core:", {k: per_mac[k] for k in sorted(per_mac, key=per_mac.get)})
    print("core factors (cycles vs Cortex-M4, other runtimes):", fit["core_factor"])
    m7_over_m4 = per_mac["cortex-m4"] / per_mac["cortex-m7"]
    all_in = all(r["in_target"] for r in rows)
    loo_in = sum(LO <= r["leave_one_out_ratio"] <= HI for r in rows)
    print(f"every ratio within [{LO}, {HI}]: {'yes' if all_in else 'NO'}; leave-one-out within: {loo_in}/{len(rows)}; "
          f"M4 / M7 cycles per MAC: {m7_over_m4:.2f}")
    result = {
        "rows": rows, "out_of_sample_rows": unshipped, "fit": {k: v for k, v in fit.items() if k != "coefficients"},
        "coefficients": fit["coefficients"], "work_per_class_matches_yaml": work_ok,
        "fitted_points": fit["m4_fit"]["points"], "validated_points_leave_one_out": len(rows),
        "where": "published MLPerf Tiny measurements on hardware; estimates are pure Python",
        "machine": {"nproc": os.cpu_count(), "threads": 1, "platform": platform.platform()},
        "targets": [
            {"metric": f"estimate / published, {len(rows)} TFLM pairs on shipped boards (worst)",
             "measured": max(rows, key=lambda r: abs(r["ratio"] - 1))["ratio"], "target": f"[{LO}, {HI}]",
             "met": all_in},
            {"metric": "leave-one-out estimate / published (worst)",
             "measured": max(rows, key=lambda r: abs(r["leave_one_out_ratio"] - 1))["leave_one_out_ratio"],
             "target": f"[{LO}, {HI}]", "met": loo_in == len(rows)},
            {"metric": f"estimate / published, {len(unshipped)} TFLM figures on parts without a board file "
                       "(out of sample, worst)",
             "measured": max(unshipped, key=lambda r: abs(r["ratio"] - 1))["ratio"] if unshipped else None,
             "target": f"[{LO}, {HI}]", "met": all(r["in_target"] for r in unshipped)},
            {"metric": "cycles per MAC, Cortex-M4 / Cortex-M7", "measured": round(m7_over_m4, 3),
             "target": "> 1 (about 1.5)", "met": m7_over_m4 > 1.0},
        ]}
    write_json(RESULTS, result)
    print(f"wrote {RESULTS}")
    return 0 if all_in and work_ok else 1


if __name__ == "__main__":
    sys.exit(main())

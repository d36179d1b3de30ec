"""Training-step cost: a supernet step on a sampled subnet vs a plain static step of the same arch.

The supernet step is what progressive shrinking pays per subnet: set_active, a forward through the
dynamic layers (weight slicing, kernel transforms), backward and an SGD step over the supernet's
parameters. The baseline is the extracted static module (standard layers only) doing the same step,
in the faster of the two memory formats. Target: ratio <= 1.5.

    .venv/bin/python benchmarks/bench_step_cost.py [--repeats 9] [--batch 64]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline._io import write_json  # noqa: E402
from pipeline.supernet import SearchSpace, build_supernet, macs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_step_cost.json"


def _step_fn(model, params, x, y, before=None):
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step():
        if before is not None:
            before()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _time(step, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = SearchSpace()
    rng = np.random.default_rng(args.seed)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    archs += [(f"random{i}", space.sample(rng)) for i in range(3)]
    g = torch.Generator().manual_seed(args.seed)
    rows = []
    load_before = os.getloadavg()
    for name, arch in archs:
        sn = build_supernet(space, seed=args.seed).train()
        r = arch.resolution
        x = torch.rand(args.batch, space.in_channels, r, r, generator=g)
        y = torch.randint(0, space.num_classes, (args.batch,), generator=g)
        static = sn.extract(arch).train()
        static_cl = sn.extract(arch).train().to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        steps = {
            "supernet": _step_fn(sn, list(sn.parameters()), x, y, before=lambda: sn.set_active(arch)),
            "static_nchw": _step_fn(static, list(static.parameters()), x, y),
            "static_channels_last": _step_fn(static_cl, list(static_cl.parameters()), x_cl, y),
        }
        for fn in steps.values():  # warm-up: oneDNN primitive caches, allocator
            fn()
            fn()
        times = {k: [] for k in steps}
        for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
            for k, fn in steps.items():
                times[k] += _time(fn, 1)
        med = {k: statistics.median(v) for k, v in times.items()}
        best_static = min(med["static_nchw"], med["static_channels_last"])
        rows.append({"name": name, "arch": str(arch), "macs": macs(space, arch),
                     "supernet_ms": round(med["supernet"] * 1e3, 2),
                     "static_nchw_ms": round(med["static_nchw"] * 1e3, 2),
                     "static_channels_last_ms": round(med["static_channels_last"] * 1e3, 2),
                     "ratio": round(med["supernet"] / best_static, 3)})
    ratios = [r["ratio"] for r in rows]
    result = {"benchmark": "bench_step_cost", "baseline": "extracted static module, faster memory format",
              "target": "ratio <= 1.5", "batch": args.batch, "repeats": args.repeats,
              "torch_threads": torch.get_num_threads(), "nproc": os.cpu_count(),
              "loadavg_before": [round(v, 2) for v in load_before],
              "loadavg_after": [round(v, 2) for v in os.getloadavg()],
              "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
              "rows": rows, "mean_ratio": round(float(np.mean(ratios)), 3),
              "max_ratio": round(float(np.max(ratios)), 3),
              "geomean_ratio": round(float(np.exp(np.mean(np.log(ratios)))), 3)}
    result["targets"] = [{"metric": "train step time, supernet / static (mean of 5 subnets)",
                          "baseline": 1.0, "measured": result["mean_ratio"], "target": "<= 1.5",
                          "ratio": result["mean_ratio"], "met": result["mean_ratio"] <= 1.5}]
    head = f"{'subnet':<9} {'MACs':>9} {'supernet ms':>12} {'static NCHW':>12} {'static CL':>10} {'ratio':>6}"
    print(head)
    for r in rows:
        print(f"{r['name']:<9} {r['macs'] / 1e6:>8.2f}M {r['supernet_ms']:>12.1f} {r['static_nchw_ms']:>12.1f} "
              f"{r['static_channels_last_ms']:>10.1f} {r['ratio']:>6.2f}")
    print(f"mean ratio {result['mean_ratio']:.2f} (max {result['max_ratio']:.2f}); target <= 1.5; "
          f"threads {result['torch_threads']}, nproc {result['nproc']}, load {result['loadavg_before']}")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Progressive shrinking vs training from scratch, per subnet.

PS: the subnet's accuracy taken straight from the trained supernet after BN re-calibration on the
holdout split (no fine-tuning). Scratch: the same arch as a static module, initialised like the
supernet, trained alone with the same recipe (optimizer, augmentation, batch, cosine lr) for as many
epochs as the largest net got in the supernet's first phase. Both measured on the test split.
Archs: smallest, largest and 3 random (seeded; `--random N` for more). Target: PS mean >= scratch mean.

    .venv/bin/python benchmarks/bench_ps_vs_scratch.py [--supernet runs/digits/supernet]
(without --supernet it trains the default schedule into runs/bench-ps/ first, or reuses it)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline._io import read_json, write_json  # noqa: E402
from pipeline.data import load_dataset  # noqa: E402
from pipeline.supernet import load_supernet, macs  # noqa: E402
from pipeline.train import Schedule, TrainConfig, calibrated_subnet, evaluate, train_supernet  # noqa: E402
from pipeline.train.scratch import train_scratch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_ps_vs_scratch.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path, help="trained supernet dir (default: train runs/bench-ps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", type=int, default=3, help="random archs besides smallest and largest")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sn_dir = args.supernet
    if sn_dir is None:
        sn_dir = ROOT / "runs" / "bench-ps" / "supernet"
        if not (sn_dir / "summary.json").exists():
            train_supernet(TrainConfig(out=sn_dir.parent, threads=args.threads,
                                       resume=(sn_dir / "checkpoints").exists()))
    summary = read_json(sn_dir / "summary.json")
    config = read_json(sn_dir.parent / "config.json")
    schedule = Schedule.from_dict(read_json(sn_dir / "schedule.json"))
    supernet = load_supernet(sn_dir)
    space = supernet.space
    ds = load_dataset(summary["data"], seed=summary["data_seed"])
    epochs = schedule.phases[0].epochs
    rng = np.random.default_rng(args.seed)
    archs = [("smallest", space.smallest()), ("largest", space.largest())]
    archs += [(f"random{i}", space.sample(rng)) for i in range(args.random)]
    rows = []
    load_before = os.getloadavg()
    for name, arch in archs:
        test = ds.split("test", arch.resolution)
        ps = evaluate(calibrated_subnet(supernet, arch, ds, seed=args.seed), test.x, test.y)
        scratch, secs = train_scratch(space, arch, ds, schedule, epochs, config["batch_size"], args.seed)
        rows.append({"name": name, "arch": str(arch), "macs": macs(space, arch), "ps_acc": round(ps, 4),
                     "scratch_acc": round(scratch, 4), "ratio": round(ps / max(scratch, 1e-9), 4),
                     "scratch_train_s": round(secs, 1)})
        print(f"{name:<9} ps {ps:.4f}  scratch {scratch:.4f}  ({secs:.0f} s)", file=sys.stderr)
    ps_mean = float(np.mean([r["ps_acc"] for r in rows]))
    sc_mean = float(np.mean([r["scratch_acc"] for r in rows]))
    result = {"benchmark": "bench_ps_vs_scratch", "baseline": f"same arch trained alone for {epochs} epochs",
              "target": "PS mean >= scratch mean", "num_archs": len(rows), "supernet": str(sn_dir), "data": summary["data"],
              "supernet_epochs_total": schedule.total_epochs, "supernet_wall_time_s": summary.get("wall_time_s"),
              "scratch_epochs": epochs, "torch_threads": torch.get_num_threads(), "nproc": os.cpu_count(),
              "loadavg_before": [round(v, 2) for v in load_before],
              "loadavg_after": [round(v, 2) for v in os.getloadavg()],
              "machine": platform.machine(), "torch": torch.__version__, "rows": rows,
              "ps_mean": round(ps_mean, 4), "scratch_mean": round(sc_mean, 4),
              "mean_ratio": round(float(np.mean([r["ratio"] for r in rows])), 4),
              "ratio_of_means": round(ps_mean / sc_mean, 4)}
    result["targets"] = [{"metric": f"mean test acc of {len(rows)} subnets, PS (BN recal, no fine-tune) vs scratch",
                          "baseline": result["scratch_mean"], "measured": result["ps_mean"],
                          "target": ">= scratch", "ratio": result["ratio_of_means"],
                          "met": ps_mean >= sc_mean}]
    print(f"{'subnet':<9} {'MACs':>8} {'PS acc':>7} {'scratch':>8} {'ratio':>6}  arch")
    for r in rows:
        print(f"{r['name']:<9} {r['macs'] / 1e6:>7.2f}M {r['ps_acc']:>7.4f} {r['scratch_acc']:>8.4f} "
              f"{r['ratio']:>6.3f}  {r['arch']}")
    print(f"mean: PS {ps_mean:.4f} vs scratch {sc_mean:.4f} (mean ratio {result['mean_ratio']:.3f}); "
          f"target PS >= scratch; threads {result['torch_threads']}, nproc {result['nproc']}")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Progressive shrinking vs training from scratch, per subnet, on the hard built-in data (or any folder).

For >= 8 archs spanning the space (the smallest, the largest, and archs at evenly spaced MAC quantiles of
a seeded sample), on the test split:
  PS       the subnet straight from the supernet, BN re-calibrated on the holdout split, no fine-tune;
  PS+FT    the same subnet fine-tuned with KD from the largest subnet (pipeline.train.finetune) for
           --finetune-fraction (default 10%) of the supernet's total epochs;
  scratch  the same arch as a static module, initialised like the supernet, trained alone with the same
           recipe (optimizer, augmentation, batch, cosine lr) for the SAME number of epochs as the whole
           supernet schedule, then BN re-calibrated the same way.
Targets (issue 11): PS mean >= scratch mean - 1 point and no arch below scratch - 3; PS+FT mean >= scratch.

    .venv/bin/python benchmarks/bench_ps_vs_scratch.py                      # builtin:shapes, --budget 30
    .venv/bin/python benchmarks/bench_ps_vs_scratch.py --data ~/cifar10-folder --budget 20
    .venv/bin/python benchmarks/bench_ps_vs_scratch.py --supernet runs/x/supernet   # a trained supernet

Without --supernet it trains `ofa-mcu train --budget EPOCHS` into runs/bench-ps-<data>-b<EPOCHS>/ (or
resumes/reuses it). Rows are written to the JSON as each arch finishes, and a rerun with the same options
skips finished archs, so an interrupted run loses at most one arch. Everything runs on this host's CPU.

The scratch trainings do not need the supernet, so a second process can run them at the same time:
`... --only scratch` (same options) trains them largest first into RUN/scratch/<arch>.json, and the main
run takes each finished one from there (an arch being trained by the other process is waited for).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline._io import read_json, write_json  # noqa: E402
from pipeline.data import load_dataset  # noqa: E402
from pipeline.supernet import load_supernet, macs  # noqa: E402
from pipeline.train import Schedule, TrainConfig, calibrated_subnet, evaluate, train_supernet  # noqa: E402
from pipeline.train.finetune import finetune_subnet  # noqa: E402
from pipeline.train.scratch import train_scratch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def data_spec(text: str) -> str:
    """A dataset spec; a bare path to a folder is an image folder."""
    if ":" not in text and os.path.isdir(os.path.expanduser(text)):
        return f"folder:{os.path.expanduser(text)}"
    return text


def spanning_archs(space, count: int, seed: int, pool: int = 400):
    """The smallest, the largest and `count - 2` archs at evenly spaced MAC quantiles of a seeded sample."""
    rng = np.random.default_rng(seed)
    sample = sorted({str(a): a for a in (space.sample(rng) for _ in range(pool))}.values(),
                    key=lambda a: macs(space, a))
    picks = [("smallest", space.smallest())]
    for i in range(1, count - 1):
        a = sample[int(round(i / (count - 1) * (len(sample) - 1)))]
        picks.append((f"q{i}", a))
    picks.append(("largest", space.largest()))
    seen, out = set(), []
    for name, a in picks:
        if str(a) not in seen:
            seen.add(str(a))
            out.append((name, a))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:shapes", help="dataset spec or image folder path (default builtin:shapes)")
    ap.add_argument("--budget", type=int, default=30, help="supernet budget in epochs (default 30)")
    ap.add_argument("--supernet", type=Path, help="a trained supernet dir instead of training one")
    ap.add_argument("--archs", type=int, default=8, help="archs compared, smallest to largest MACs (default 8)")
    ap.add_argument("--finetune-fraction", type=float, default=0.1,
                    help="fine-tune epochs as a fraction of the supernet's total epochs (default 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/bench_ps_vs_scratch[_NAME].json)")
    ap.add_argument("--only", choices=["scratch"], help="only the scratch trainings (a second process; see above)")
    ap.add_argument("--names", help="with --only scratch: only these archs, e.g. smallest,q3 (names as in the table)")
    args = ap.parse_args(argv)
    if args.archs < 2 or args.budget < 5 or not 0 <= args.finetune_fraction <= 1:
        ap.error("--archs >= 2, --budget >= 5 and --finetune-fraction in [0, 1]")
    torch.set_num_threads(args.threads)
    spec = data_spec(args.data)
    tag = re.sub(r"[^A-Za-z0-9]+", "-", spec.split(":", 1)[-1].rstrip("/").split("/")[-1]).strip("-")
    sn_dir = args.supernet
    if args.only == "scratch":
        return scratch_only(spec, tag, args)
    if sn_dir is None:
        sn_dir = ROOT / "runs" / f"bench-ps-{tag}-b{args.budget}" / "supernet"
        if not (sn_dir / "summary.json").exists():
            train_supernet(TrainConfig(data=spec, out=sn_dir.parent, budget=str(args.budget), threads=args.threads,
                                       resume=(sn_dir / "checkpoints" / "last.pt").exists()))
    out = args.out or RESULTS / ("bench_ps_vs_scratch.json" if spec == "builtin:shapes"
                                 else f"bench_ps_vs_scratch_{tag}.json")
    summary = read_json(sn_dir / "summary.json")
    config = read_json(sn_dir.parent / "config.json")
    schedule = Schedule.from_dict(read_json(sn_dir / "schedule.json"))
    supernet = load_supernet(sn_dir)
    space = supernet.space
    ds = load_dataset(summary["data"], seed=summary["data_seed"])
    epochs = schedule.total_epochs
    # Fine-tune for that fraction of the supernet's epochs (a fractional epoch runs that share of its steps).
    ft_epochs = round(args.finetune_fraction * epochs, 3)
    archs = spanning_archs(space, args.archs, args.seed)
    previous = read_json(out) if out.exists() else {}
    same_run = (previous.get("supernet") == str(sn_dir) and previous.get("scratch_epochs") == epochs
                and previous.get("finetune_epochs") == ft_epochs and previous.get("seed") == args.seed)
    done = {r["arch"]: r for r in previous.get("rows", [])} if same_run else {}
    rows = []
    scratch_dir = sn_dir.parent / "scratch"
    load_before = os.getloadavg()
    result = {"benchmark": "bench_ps_vs_scratch", "measured_on": "host CPU (this machine), torch",
              "data": summary["data"], "dataset": ds.describe(), "supernet": str(sn_dir), "seed": args.seed,
              "supernet_budget": config.get("budget"),
              "supernet_phases": [{"name": p.name, "epochs": p.epochs} for p in schedule.phases],
              "supernet_epochs_total": epochs, "supernet_wall_time_s": summary.get("wall_time_s"),
              "supernet_final": summary.get("final"),
              "scratch_epochs": epochs, "finetune_epochs": ft_epochs,
              "baseline": f"same arch trained alone for {epochs} epochs (= the whole supernet schedule), "
                          "same optimizer, augmentation and batch",
              "torch_threads": torch.get_num_threads(), "nproc": os.cpu_count(),
              "machine": platform.machine(), "torch": torch.__version__}
    todo = [(n, a) for n, a in archs if str(a) not in done]
    deferred = []
    for name, arch in archs:
        if str(arch) in done:
            continue
        if _claimed(scratch_dir, arch) and _scratch_row(scratch_dir, arch, epochs, args.seed) is None:
            deferred.append((name, arch))   # the other process is training it: do the rest first
            continue
        todo.remove((name, arch))
        todo.append((name, arch))
    todo = [t for t in todo if t not in deferred] + deferred
    for name, arch in archs:
        if str(arch) in done:
            rows.append(done[str(arch)])
    for name, arch in todo:
        test = ds.split("test", arch.resolution)
        ps = evaluate(calibrated_subnet(supernet, arch, ds, seed=args.seed), test.x, test.y)
        ft = ft_s = None
        if ft_epochs:
            model, info = finetune_subnet(supernet, arch, ds, ft_epochs, schedule=schedule,
                                          batch_size=config["batch_size"], seed=args.seed)
            ft, ft_s = evaluate(model, test.x, test.y), info.seconds
        got = _wait_scratch(scratch_dir, arch, epochs, args.seed)
        if got is None:
            _claim(scratch_dir, arch)
            scratch, secs = train_scratch(space, arch, ds, schedule, epochs, config["batch_size"], args.seed)
            _save_scratch(scratch_dir, arch, epochs, args.seed, scratch, secs)
        else:
            scratch, secs = got
        row = {"name": name, "arch": str(arch), "macs": macs(space, arch), "ps_acc": round(ps, 4),
               "ps_ft_acc": None if ft is None else round(ft, 4), "scratch_acc": round(scratch, 4),
               "ps_minus_scratch_points": round(100 * (ps - scratch), 2),
               "ps_ft_minus_scratch_points": None if ft is None else round(100 * (ft - scratch), 2),
               "finetune_s": None if ft_s is None else round(ft_s, 1), "scratch_train_s": round(secs, 1)}
        rows.append(row)
        print(f"{name:<9} ps {ps:.4f}  ps+ft {ft if ft is not None else float('nan'):.4f}  scratch {scratch:.4f}  "
              f"({secs:.0f} s scratch)", file=sys.stderr, flush=True)
        write_json(out, {**result, "rows": rows, "complete": False})
    order = {str(a): i for i, (_, a) in enumerate(archs)}
    rows.sort(key=lambda r: order.get(r["arch"], len(order)))
    d_ps = [r["ps_minus_scratch_points"] for r in rows]
    d_ft = [r["ps_ft_minus_scratch_points"] for r in rows if r["ps_ft_minus_scratch_points"] is not None]
    mean = lambda k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 4)  # noqa: E731
    by_macs = sorted(rows, key=lambda r: r["macs"])
    result.update({
        "rows": rows, "complete": True, "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "ps_mean": mean("ps_acc"), "ps_ft_mean": mean("ps_ft_acc") if d_ft else None,
        "scratch_mean": mean("scratch_acc"),
        "ps_minus_scratch_mean_points": round(float(np.mean(d_ps)), 2),
        "ps_minus_scratch_min_points": round(float(np.min(d_ps)), 2),
        "ps_ft_minus_scratch_mean_points": round(float(np.mean(d_ft)), 2) if d_ft else None,
        "ps_ft_minus_scratch_min_points": round(float(np.min(d_ft)), 2) if d_ft else None,
        "largest_minus_smallest_points": {
            k: round(100 * (by_macs[-1][k] - by_macs[0][k]), 2) for k in ("ps_acc", "scratch_acc")},
    })
    n, sc = len(rows), result["scratch_mean"]
    ratio = lambda v: None if v is None or not sc else round(v / sc, 4)  # noqa: E731
    result["targets"] = [
        {"metric": f"mean test acc of {n} subnets, PS (BN recal, no fine-tune) vs scratch ({epochs} epochs)",
         "baseline": sc, "measured": result["ps_mean"], "target": ">= baseline - 1 point",
         "ratio": ratio(result["ps_mean"]), "met": result["ps_minus_scratch_mean_points"] >= -1},
        {"metric": f"worst of {n} subnets, PS - scratch (points)", "baseline": None,
         "measured": result["ps_minus_scratch_min_points"], "target": ">= -3", "ratio": None,
         "met": result["ps_minus_scratch_min_points"] >= -3},
        {"metric": f"mean test acc of {n} subnets, PS + {ft_epochs}-epoch KD fine-tune vs scratch",
         "baseline": sc, "measured": result["ps_ft_mean"], "target": ">= baseline",
         "ratio": ratio(result["ps_ft_mean"]), "met": bool(d_ft) and result["ps_ft_minus_scratch_mean_points"] >= 0},
        {"metric": "scratch test acc, largest - smallest arch (points; hard data when >= 10)", "baseline": None,
         "measured": result["largest_minus_smallest_points"]["scratch_acc"], "target": ">= 10", "ratio": None,
         "met": result["largest_minus_smallest_points"]["scratch_acc"] >= 10},
    ]
    print(f"{'subnet':<9} {'MACs':>7} {'PS':>7} {'PS+FT':>7} {'scratch':>8} {'PS-sc':>6} {'FT-sc':>6}  arch")
    for r in rows:
        ftv = "-" if r["ps_ft_acc"] is None else f"{r['ps_ft_acc']:.4f}"
        ftd = "-" if r["ps_ft_minus_scratch_points"] is None else f"{r['ps_ft_minus_scratch_points']:+.2f}"
        print(f"{r['name']:<9} {r['macs'] / 1e6:>6.2f}M {r['ps_acc']:>7.4f} {ftv:>7} {r['scratch_acc']:>8.4f} "
              f"{r['ps_minus_scratch_points']:>+6.2f} {ftd:>6}  {r['arch']}")
    print(f"PS - scratch: mean {result['ps_minus_scratch_mean_points']:+.2f}, min "
          f"{result['ps_minus_scratch_min_points']:+.2f} points; PS+FT ({ft_epochs} ep) - scratch: mean "
          f"{result['ps_ft_minus_scratch_mean_points']} points; scratch {epochs} epochs; supernet "
          f"{summary.get('wall_time_s')} s; host CPU, {result['torch_threads']} thread(s)")
    for t in result["targets"]:
        print(f"target {t['metric']}: {t['measured']} ({t['target']}) {'met' if t['met'] else 'NOT met'}")
    write_json(out, result)
    return 0


# -- scratch trainings, shareable with a second process -------------------------------------------
def _scratch_path(d: Path, arch) -> Path:
    return d / f"{arch}.json"


def _claimed(d: Path, arch) -> bool:
    return (d / f"{arch}.claim").exists()


def _claim(d: Path, arch) -> bool:
    """Atomically claim `arch` for this process; False when another process has it."""
    d.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(d / f"{arch}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _scratch_row(d: Path, arch, epochs: int, seed: int):
    p = _scratch_path(d, arch)
    if not p.exists():
        return None
    r = json.loads(p.read_text())
    return (r["test_acc"], r["seconds"]) if r.get("epochs") == epochs and r.get("seed") == seed else None


def _save_scratch(d: Path, arch, epochs, seed, acc, secs) -> None:
    write_json(_scratch_path(d, arch), {"arch": str(arch), "epochs": epochs, "seed": seed, "test_acc": acc,
                                        "seconds": secs, "measured_on": "host CPU, 1 process"})


def _wait_scratch(d: Path, arch, epochs: int, seed: int):
    """The finished scratch result; waits while another live process holds the claim; None: train it here."""
    while True:
        got = _scratch_row(d, arch, epochs, seed)
        if got is not None or not _claimed(d, arch):
            return got
        try:
            pid = int((d / f"{arch}.claim").read_text() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            (d / f"{arch}.claim").unlink(missing_ok=True)   # its process is gone: train it here
            return None
        if pid == os.getpid():
            return None
        time.sleep(10)


def scratch_only(spec: str, tag: str, args) -> int:
    """Train the scratch baselines alone (largest first), for a main run started with the same options."""
    from pipeline.train.loop import resolve_schedule, resolve_space

    if args.supernet is not None:
        run = args.supernet.parent
        space = load_supernet(args.supernet).space
        schedule = Schedule.from_dict(read_json(args.supernet / "schedule.json"))
        batch = int(read_json(run / "config.json")["batch_size"])
        ds = load_dataset(read_json(args.supernet / "summary.json")["data"])
    else:
        run = ROOT / "runs" / f"bench-ps-{tag}-b{args.budget}"
        ds = load_dataset(spec)
        space = resolve_space(None, ds)
        schedule = resolve_schedule(None, space, args.budget)
        batch = 64
    epochs = schedule.total_epochs
    names = None if not args.names else set(args.names.split(","))
    for name, arch in reversed(spanning_archs(space, args.archs, args.seed)):
        if names is not None and name not in names:
            continue
        if _scratch_row(run / "scratch", arch, epochs, args.seed) is not None or not _claim(run / "scratch", arch):
            continue
        acc, secs = train_scratch(space, arch, ds, schedule, epochs, batch, args.seed)
        _save_scratch(run / "scratch", arch, epochs, args.seed, acc, secs)
        print(f"{name:<9} scratch {acc:.4f} ({secs:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ofa-mcu search`: the most accurate subnet (predicted) that fits a board's SRAM, flash and latency."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, metavar="DIR", help="trained supernet directory (runs/NAME/supernet)")
    p.add_argument("--board", required=True, metavar="ID", help="board id (`ofa-mcu boards` lists them)")
    p.add_argument("--latency-ms", type=float, metavar="N", help="latency budget in milliseconds")
    p.add_argument("--sram-kb", type=float, metavar="N", help="SRAM budget in KiB (default: the board's usable SRAM)")
    p.add_argument("--flash-kb", type=float, metavar="N", help="flash budget in KiB (default: the board's usable flash)")
    p.add_argument("--out", metavar="FILE", help="write the result as JSON (e.g. runs/NAME/boards/ID/search.json)")
    p.add_argument("--seed", type=int, default=0, help="search and predictor seed (default 0)")
    p.add_argument("--calibration", metavar="FILE", help="per-board latency calibration JSON (from `ofa-mcu profile`)")
    p.add_argument("--samples", type=int, default=300,
                   help="subnets measured to train the accuracy predictor on first use (default 300; cached)")
    p.add_argument("--population", type=int, default=100,
                   help="population size (default 100); parents, mutants and crossovers keep OFA's 25/50/50 ratio")
    p.add_argument("--generations", type=int, default=40, help="generations (default 40)")
    p.add_argument("--quiet", action="store_true", help="no progress (bar on a terminal, lines on stderr otherwise)")
    p.add_argument("--objective", default="accuracy", choices=("accuracy", "latency", "energy"),
                   help="accuracy: the most accurate arch that fits (default); latency / energy: the fastest / "
                        "least energy per inference within --tolerance points of the most accurate")
    p.add_argument("--tolerance", type=float, metavar="POINTS",
                   help="accuracy points the latency/energy objective may give up against the most accurate "
                        "arch (default 1.0)")
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="fine-tune the chosen subnet N epochs with distillation from the largest subnet when it is exported; recorded in the --out JSON, which `ofa-mcu export --arch` reads (default 0)")
    p.add_argument("--patches", default="off", metavar="off|auto|RxC[@bK]", help="patch-based inference as a search dimension: an arch too big for the SRAM is costed "
                        "again with its early stages run on patches (stock TFLite ops, identical outputs); "
                        "off, auto or a fixed RxC[@bK] (default off)")


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def _label_images(sn) -> str:
    """What the predictor's labels rest on, from its report (e.g. "labels on 1200 holdout+calibration images")."""
    from .. import artifacts
    from ..errors import ArtifactError
    from ..search.predictor import predictor_dir
    try:
        lab = artifacts.read("predictor report", predictor_dir(sn)).get("labels") or {}
    except ArtifactError:
        lab = {}
    if not lab:
        return "predictor labels"
    return f"labels on {lab['label_images']} {'+'.join(lab['label_splits'])} images"


def run(args) -> int:
    import sys
    from pathlib import Path

    from .._io import write_json
    from ..boards import load_board
    from ..errors import UsageError
    from ..search.evolution import search
    from ..search.predictor import get_predictor
    from ..supernet.space import SearchSpace

    import torch
    torch.set_num_threads(1)   # tiny MLP and BN calibration: more threads only contend
    board = load_board(args.board)
    sn = Path(args.supernet)
    if not (sn / "space.json").exists():
        from ..errors import ArtifactError
        raise ArtifactError(f"{sn}: no space.json, not a supernet directory",
                            hint="pass the supernet directory written by `ofa-mcu train` (runs/NAME/supernet)")
    for name in ("sram_kb", "flash_kb", "latency_ms"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {v:g}")
    space = SearchSpace.load(sn / "space.json")
    if args.tolerance is not None and args.objective == "accuracy":
        raise UsageError("--tolerance needs --objective latency or energy",
                         hint="e.g. --objective latency --tolerance 1: the fastest arch within 1 point")
    tty = sys.stderr.isatty()
    predictor = get_predictor(sn, num_samples=args.samples, seed=args.seed, progress=not args.quiet)

    bar = None
    if not args.quiet and tty:
        from tqdm import tqdm
        phases = 1 if args.objective == "accuracy" else 2
        bar = tqdm(total=args.generations * phases, desc=f"search {board.id}", unit="gen")

    def progress(gen: int, total: int, best: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{100 * best:.2f}%" if best >= 0 else f"{-best:.2f}")

    res = search(space, board, predictor=predictor, latency_ms=args.latency_ms,
                 sram_bytes=None if args.sram_kb is None else int(args.sram_kb * 1024),
                 flash_bytes=None if args.flash_kb is None else int(args.flash_kb * 1024),
                 population=args.population, generations=args.generations, seed=args.seed,
                 parents=max(1, args.population // 4), n_mutate=max(1, args.population // 2),
                 n_crossover=max(1, args.population // 2),
                 calibration=args.calibration, progress=progress, patches=args.patches,
                 objective=args.objective, tolerance=args.tolerance,
                 progress_lines=not args.quiet and not tty)
    if bar is not None:
        bar.close()
    b, c, m = res.budget, res.best.costs, res.margins
    print(f"board    {board.id} ({board.core}, {board.clock_mhz:g} MHz)")
    print(f"arch     {res.best.arch}" + (f"  (patches {res.best.patches})" if res.best.patches != "off" else ""))
    from ..search.predictor import heldout_accuracy
    heldout = heldout_accuracy(sn, res.best.arch, seed=args.seed)  # the predictor's figure for its pick runs high
    if heldout is not None:
        print(f"accuracy {100 * heldout:.2f}% measured on held-out images (float, {_label_images(sn)}; the "
              f"predictor's {100 * res.best.predicted_acc:.2f}% ranks, and runs high for the arch it rates best; "
              f"the int8 figure is measured at export)")
    else:
        print(f"accuracy {100 * res.best.predicted_acc:.2f}% predicted (float, {_label_images(sn)}; "
              f"the int8 figure is measured at export)")
    ref = res.params.get("most_accurate")
    if ref:
        unit = "ms" if args.objective == "latency" else "uJ"
        mine = c.latency_ms if args.objective == "latency" else c.latency_ms * board.active_power_mw
        print(f"objective {args.objective} within {res.params['tolerance_points']:g} points: {mine:.2f} {unit} vs "
              f"{ref[args.objective]:.2f} {unit} for the most accurate {ref['arch']} "
              f"({100 * ref['predicted_acc']:.2f}% predicted; {ref['within_tolerance']} archs within tolerance)")
    print(f"SRAM     {_kib(res.best.sram_bytes)} of {_kib(b.sram_bytes)}  (margin {_kib(m['sram_bytes'])}; "
          f"arena {_kib(c.firmware_arena_bytes)} firmware, {_kib(c.arena_bytes)} 32-bit need)")
    print(f"flash    {_kib(c.flash_bytes)} of {_kib(b.flash_bytes)}  (margin {_kib(m['flash_bytes'])}; "
          f"model {_kib(c.model_bytes)})")
    lat = f"{c.latency_ms:.2f} ms predicted"
    if b.latency_ms is not None:
        lat += f" of {b.latency_ms:g} ms  (margin {m['latency_ms']:.2f} ms)"
    print(f"latency  {lat}  ({c.macs / 1e6:.2f} M MACs, {res.params['latency_model']} coefficients)")
    print(f"search   {res.evaluated} archs evaluated in {res.seconds:.1f} s; Pareto front {len(res.pareto)} archs")
    if args.finetune_epochs:
        print(f"finetune {args.finetune_epochs} epoch(s) with KD from the largest subnet at export "
              f"(`ofa-mcu export --arch {args.out or 'SEARCH.json'}` reads it)")
    if args.out:
        write_json(args.out, {**res.to_dict(), "heldout_acc": heldout, "finetune_epochs": args.finetune_epochs})
        print(f"wrote    {args.out}")
    return 0

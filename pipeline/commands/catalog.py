"""`ofa-mcu catalog`: the best verified model for every board: catalog.json/.md/.html, Pareto plots, compute account."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, metavar="DIR", help="trained supernet directory (runs/NAME/supernet)")
    p.add_argument("--boards", default="all", metavar="all|ID,ID", help="boards to cover (default: all)")
    p.add_argument("--latency-ms", dest="latency_budgets", metavar="N[,N...]",
                   help="latency budget(s) in ms applied to every board, comma-separated (e.g. 20,50,200; "
                        "`none` for no latency budget): each (board, budget) is one deployment of the catalog")
    p.add_argument("--objective", default="accuracy", choices=("accuracy", "latency", "energy"),
                   help="accuracy: the most accurate subnet that fits (default); latency / energy: the fastest / "
                        "least energy per inference within --tolerance points of the most accurate")
    p.add_argument("--tolerance", type=float, metavar="POINTS",
                   help="accuracy points the latency/energy objective may give up (default 1.0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (exports are cached there)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patches", default="off", metavar="off|auto|RxC[@bK]", help="patch-based inference as a search dimension: an arch too big for the SRAM is costed "
                        "again with its early stages run on patches (stock TFLite ops, identical outputs); "
                        "off, auto or a fixed RxC[@bK] (default off)")
    p.add_argument("--samples", type=int, default=300, help="accuracy-predictor samples (default 300; cached)")
    p.add_argument("--max-candidates", type=int, default=5,
                   help="candidates exported per board before giving up (default 5)")
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="fine-tune each board's subnet N epochs with distillation from the largest subnet before export; counted in the compute account (default 0)")
    p.add_argument("--scratch", type=int, default=2, metavar="N",
                   help="catalog archs trained from scratch for the compute comparison (default 2; cached)")


def parse_latency_budgets(text: str | None) -> list[float | None] | None:
    """`--latency-ms 20,50,200` -> [20.0, 50.0, 200.0]; `none` -> no latency budget; None -> None."""
    import math

    from ..errors import UsageError
    if text is None:
        return None
    out: list[float | None] = []
    for part in str(text).split(","):
        p = part.strip()
        if p.lower() == "none":
            out.append(None)
            continue
        try:
            v = float(p)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v <= 0:
            raise UsageError(f"--latency-ms: {p[:40]!r} is not a positive number of milliseconds",
                             hint="give budgets such as 20,50,200 (or none for no latency budget)")
        out.append(v)
    if len(set(out)) != len(out):
        raise UsageError("--latency-ms lists a budget twice", hint="give each budget once, e.g. 20,50,200")
    return out


def run(args) -> int:
    from pathlib import Path

    from ..boards import list_boards, load_board
    from ..errors import UsageError
    from ..catalog import build_catalog

    import torch
    torch.set_num_threads(1)
    from ..supernet.patches import PatchSpec
    PatchSpec.parse(args.patches)
    budgets = parse_latency_budgets(args.latency_budgets)
    if args.tolerance is not None and args.objective == "accuracy":
        raise UsageError("--tolerance needs --objective latency or energy",
                         hint="e.g. --objective latency --tolerance 1: the fastest subnet within 1 point")
    ids = [s.strip() for s in args.boards.split(",") if s.strip()]
    if not ids:
        raise UsageError("--boards is empty", hint="give `all` or a comma-separated list of board ids")
    boards = list_boards() if ids == ["all"] else [load_board(i) for i in ids]
    data = build_catalog(args.supernet, boards, args.out, latency_ms=budgets, seed=args.seed,
                         num_samples=args.samples, max_candidates=args.max_candidates, scratch_count=args.scratch,
                         log=print, progress=True, patches=args.patches,
                         objective=args.objective, tolerance=args.tolerance, finetune_epochs=args.finetune_epochs)
    out = Path(args.out)
    ok = sum(1 for r in data["boards"] if r.get("fits"))
    pe = data.get("predictor_error") or {}
    if pe.get("picks"):
        print(f"predictor: mean |predicted - int8 measured| {pe['mean_abs_points']:.2f} points over {pe['picks']} "
              f"picks (mean predicted - measured {pe['mean_points']:+.2f}; per pick in catalog.md)")
    print(f"catalog: {ok}/{len(data['boards'])} deployments with a verified model, {data['distinct_archs']} distinct "
          f"archs, {data['seconds']:.0f} s -> {out / 'catalog.md'}, {out / 'catalog.html'}")
    if data.get("compute"):
        ratio = data["compute"]["rows"]["amortization ratio (scratch / ofa-mcu)"]["value"]
        print(f"compute: one supernet + {len(boards)} searches vs {len(boards)} trainings from scratch: "
              f"{ratio}x (estimated; see catalog.md)")
    return 0 if ok == len(data["boards"]) else 8

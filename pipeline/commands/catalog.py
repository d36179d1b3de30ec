"""`ofa-mcu catalog`: the best verified model for every board: catalog.json/.md/.html, Pareto plots, compute account."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, metavar="DIR", help="trained supernet directory (runs/NAME/supernet)")
    p.add_argument("--boards", default="all", metavar="all|ID,ID", help="boards to cover (default: all)")
    p.add_argument("--latency-ms", type=float, metavar="N", help="latency budget applied to every board")
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


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..boards import list_boards, load_board
    from ..errors import UsageError
    from ..catalog import build_catalog

    import torch
    torch.set_num_threads(1)
    from ..supernet.patches import PatchSpec
    PatchSpec.parse(args.patches)
    if args.latency_ms is not None and args.latency_ms <= 0:
        raise UsageError(f"--latency-ms must be positive, got {args.latency_ms:g}")
    ids = [s.strip() for s in args.boards.split(",") if s.strip()]
    if not ids:
        raise UsageError("--boards is empty", hint="give `all` or a comma-separated list of board ids")
    boards = list_boards() if ids == ["all"] else [load_board(i) for i in ids]
    data = build_catalog(args.supernet, boards, args.out, latency_ms=args.latency_ms, seed=args.seed,
                         num_samples=args.samples, max_candidates=args.max_candidates, scratch_count=args.scratch,
                         log=print, progress=sys.stderr.isatty(), patches=args.patches,
                         finetune_epochs=args.finetune_epochs)
    out = Path(args.out)
    ok = sum(1 for r in data["boards"] if r.get("fits"))
    print(f"catalog: {ok}/{len(data['boards'])} boards with a verified model, {data['distinct_archs']} distinct "
          f"archs, {data['seconds']:.0f} s -> {out / 'catalog.md'}, {out / 'catalog.html'}")
    if data.get("compute"):
        ratio = data["compute"]["rows"]["amortization ratio (scratch / ofa-mcu)"]["value"]
        print(f"compute: one supernet + {len(boards)} searches vs {len(boards)} trainings from scratch: "
              f"{ratio}x (estimated; see catalog.md)")
    return 0 if ok == len(data["boards"]) else 8

"""`ofa-mcu deploy`: search -> export -> codegen -> build -> flash -> check -> report, resumable."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="board id (see `ofa-mcu boards`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--supernet", metavar="DIR", help="a trained supernet (runs/NAME/supernet)")
    src.add_argument("--data", metavar="SPEC", help="train a supernet on this dataset first")
    p.add_argument("--run", metavar="DIR", help="run directory (default: the supernet's run, or runs/deploy)")
    p.add_argument("--schedule", metavar="FILE", help="training schedule JSON, with --data")
    p.add_argument("--budget", metavar="EPOCHS|Nm", help="training budget with --data, in epochs or minutes "
                                                         "(e.g. 30m); see `ofa-mcu train --budget`")
    p.add_argument("--space", metavar="FILE", help="search space JSON, with --data")
    p.add_argument("--latency-ms", type=float, help="latency budget")
    p.add_argument("--sram-kb", type=float, help="tighter SRAM budget than the board's usable SRAM")
    p.add_argument("--flash-kb", type=float, help="tighter flash budget than the board's usable flash")
    p.add_argument("--port", help="serial port for the check: a device, auto, qemu (the firmware on an emulated "
                                  "board) or sim (a virtual board: the host runtime, not the firmware). Default: "
                                  "qemu on emulated boards when a cross-compiler, TFLM_DIR and QEMU are here, "
                                  "else sim")
    p.add_argument("--limit", type=int, help="check only the first N test samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="fine-tune the chosen subnet N epochs with distillation from the largest subnet before export (default 0)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--patches", default="off", metavar="off|auto|RxC[@bK]", help="patch-based inference as a search dimension: an arch too big for the SRAM is costed "
                        "again with its early stages run on patches (stock TFLite ops, identical outputs); "
                        "off, auto or a fixed RxC[@bK] (default off)")


def run(args) -> int:
    from ..deploy import DeployOptions, deploy
    from ..errors import UsageError
    from ..train.loop import parse_budget

    if args.budget is not None:
        if not args.data:
            raise UsageError("--budget needs --data (it sets how long the supernet trains)",
                             hint="drop --budget when deploying an existing --supernet")
        parse_budget(args.budget)  # a malformed budget fails before any work

    if args.run:
        run_dir = Path(args.run)
    elif args.supernet:
        run_dir = Path(args.supernet).resolve().parent
    else:
        run_dir = Path("runs/deploy")
    report = deploy(DeployOptions(
        board=args.board, run_dir=run_dir, supernet=Path(args.supernet) if args.supernet else None,
        data=args.data, schedule=args.schedule, budget=args.budget, space=args.space, latency_ms=args.latency_ms,
        sram_kb=args.sram_kb, flash_kb=args.flash_kb, port=args.port, seed=args.seed, check_limit=args.limit,
        quiet=args.quiet, patches=args.patches, finetune_epochs=args.finetune_epochs))
    print(f"deploy: {report['board']}: {report['arch']}; report {run_dir / 'boards' / report['board'] / 'report.md'}")
    return 0

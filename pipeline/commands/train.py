"""`ofa-mcu train`: progressive-shrinking training of an OFA supernet.

Runs unchanged under `torchrun --nproc_per_node=N` (DDP: gloo on CPU, NCCL on GPU; rank 0 writes).
"""
from __future__ import annotations

import argparse

from .. import artifacts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="builtin:digits", help="dataset spec (default: builtin:digits)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory, e.g. runs/digits")
    p.add_argument("--space", metavar="FILE", help="search space JSON (default: built-in space for the data)")
    p.add_argument("--schedule", metavar="FILE",
                   help="progressive-shrinking schedule JSON (default: the budget recipe, docs/TRAINING.md)")
    p.add_argument("--budget", metavar="EPOCHS|Nm",
                   help="one training budget, in epochs (e.g. 40) or minutes of wall time (e.g. 30m); the phase "
                        "lengths are fixed shares of it: full network 45%%, kernel 10%%, depth 10%%, expand 15%%, "
                        "width 20%% (default: 30 epochs; not with --schedule)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1: small convs run fastest single-threaded)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
    p.add_argument("--bn-shards", type=int, default=None,
                   help="BN statistics are per shard of the global batch (default: the number of ranks); "
                        "a 1-process run with --bn-shards N reproduces an N-rank run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from ..train import TrainConfig, final_summary_line, train_supernet
    from ..train.loop import parse_budget

    if args.budget is not None:
        parse_budget(args.budget)  # a malformed budget fails before any work

    cfg = TrainConfig(data=args.data, out=args.out, space=args.space, schedule=args.schedule, budget=args.budget,
                      seed=args.seed, threads=args.threads, batch_size=args.batch_size,
                      bn_shards=args.bn_shards, resume=args.resume, quiet=args.quiet)
    sn_dir = train_supernet(cfg)
    if artifacts.exists("train summary", sn_dir) and _is_main():
        print(final_summary_line(sn_dir))
    return 0


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0
